//! Gas: `metering.usegas(amount)` (pre-metered binaries and the `-metering` formats) and
//! `metering_gasUsed()`. Gas is summed in a double exactly as the glue's `Module.gas.use` does; going past
//! the limit traps with `out of gas!`.

use wasmtime::{Caller, FuncType, Linker, ValType};

use super::{HostFn, HostTrap, set_result};
use crate::error::WasmError;
use crate::state::HostState;

pub(super) fn lookup(name: &str) -> Option<HostFn> {
    Some(match name {
        // The gas used so far in this call, as an integer (the glue returns `gas.used`).
        "metering_gasUsed" => |caller, _, results| {
            set_result(results, caller.data().gas.used as i64);
            Ok(())
        },
        _ => return None,
    })
}

fn charge(caller: &mut Caller<'_, HostState>, amount: f64) -> wasmtime::Result<()> {
    let gas = &mut caller.data_mut().gas;
    gas.used += amount;
    if gas.used > gas.limit {
        Err(HostTrap::OutOfGas.into())
    } else {
        Ok(())
    }
}

/// Defines `metering.usegas` with the module's declared parameter type, as a typed (fast) host function:
/// pre-metered modules call it once per basic block.
pub fn define_usegas(linker: &mut Linker<HostState>, ty: &FuncType) -> Result<(), WasmError> {
    let params: Vec<ValType> = ty.params().collect();
    let bad = || WasmError::UnsupportedImport {
        module: "metering".into(),
        name: "usegas".into(),
        reason: format!("expected usegas(i32) or usegas(i64), found {ty}"),
    };
    if ty.results().len() != 0 {
        return Err(bad());
    }
    let result = match params.as_slice() {
        [ValType::I32] => linker
            .func_wrap(
                "metering",
                "usegas",
                |mut caller: Caller<'_, HostState>, amount: i32| charge(&mut caller, amount as f64),
            )
            .map(|_| ()),
        [ValType::I64] => linker
            .func_wrap(
                "metering",
                "usegas",
                |mut caller: Caller<'_, HostState>, amount: i64| charge(&mut caller, amount as f64),
            )
            .map(|_| ()),
        _ => return Err(bad()),
    };
    result.map_err(|e| WasmError::Link(e.to_string()))
}
