//! WeaveDrive (`__asyncjs__weavedrive_{open,read,close}`): linked so that modules built with it
//! instantiate, and answering as the reference glue does on a node without WeaveDrive: `open` returns
//! NULL (aos's `fopen` then falls back to the in-memory file system), so nothing is ever read. `read` and
//! `close` cannot be reached without a descriptor from `open`; if a module calls them anyway the message
//! fails with "WeaveDrive is not available".
//!
//! The reference performs `open` as an Asyncify suspension even when it returns NULL, and that is visible
//! to the module (the gas of the re-executed code in `-metering` formats, the 40 MiB data area that grows
//! memory), so ao-cu emulates it exactly: `malloc` the data area (header + 40 MiB), write its header,
//! `asyncify_start_unwind`; after `handle` returns, `asyncify_stop_unwind`, `asyncify_start_rewind` and
//! re-enter `handle` (see `process::call_handle`); when `open` is called again, `asyncify_stop_rewind`,
//! `free` the area and return NULL. Modules without the Asyncify exports get NULL directly.

use wasmtime::{Caller, Val};

use super::{HostFn, HostTrap, Mem, call_int, set_result};
use crate::state::{Asyncify, HostState};

/// The glue's `Asyncify.StackSize`.
pub const ASYNCIFY_STACK_SIZE: u64 = 41_943_040;

pub(super) fn lookup(name: &str) -> Option<HostFn> {
    Some(match name {
        // NULL: no WeaveDrive on this node (through an emulated Asyncify suspension).
        "__asyncjs__weavedrive_open" => open,
        // Traps: there is no WeaveDrive descriptor to read or close.
        "__asyncjs__weavedrive_read" | "__asyncjs__weavedrive_close" => {
            |_, _, _| Err(HostTrap::WeaveDriveUnavailable.into())
        }
        _ => return None,
    })
}

fn open(caller: &mut Caller<'_, HostState>, _: &[Val], results: &mut [Val]) -> wasmtime::Result<()> {
    const NULL: i64 = 0;
    let exports = caller.data().exports;
    let (Some(asyncify), Some(malloc), Some(free)) = (
        exports.and_then(|e| e.asyncify),
        exports.and_then(|e| e.malloc),
        exports.and_then(|e| e.free),
    ) else {
        set_result(results, NULL);
        return Ok(());
    };
    let [start_unwind, _, _, stop_rewind] = asyncify;
    match caller.data().asyncify {
        Asyncify::Normal => {
            let wasm64 = caller.data().format.is_wasm64();
            let header = if wasm64 { 24 } else { 12 };
            let data = call_int(&mut *caller, &malloc, &[header + ASYNCIFY_STACK_SIZE])?;
            {
                let mut mem = Mem::of(caller)?;
                let (stack, end) = (data + header, data + header + ASYNCIFY_STACK_SIZE);
                if wasm64 {
                    mem.set_i64(data, stack as i64)?;
                    mem.set_i64(data + 8, end as i64)?;
                    // The rewind function id: `handle`, the first and only export that suspends.
                    mem.set_i32(data + 16, 0)?;
                } else {
                    mem.set_i32(data, stack as i32)?;
                    mem.set_i32(data + 4, end as i32)?;
                    mem.set_i32(data + 8, 0)?;
                }
            }
            call_int(&mut *caller, &start_unwind, &[data])?;
            caller.data_mut().asyncify = Asyncify::Unwinding { data, value: NULL };
            set_result(results, NULL);
        }
        Asyncify::Rewinding { data, value } => {
            caller.data_mut().asyncify = Asyncify::Normal;
            call_int(&mut *caller, &stop_rewind, &[])?;
            call_int(&mut *caller, &free, &[data])?;
            set_result(results, value);
        }
        Asyncify::Unwinding { .. } => {
            return Err(HostTrap::Abort("Aborted(invalid state: 1)".into()).into());
        }
    }
    Ok(())
}
