//! The Emscripten runtime imports: heap growth, setjmp/longjmp, abort and exit, `system`, the dynamic
//! linker stubs and `tempRet0`. Each function says what it does and how it traps.

use wasmtime::{Caller, Val, ValType};

use super::{Args, HostFn, HostTrap, Mem, call_int, set_result};
use crate::state::HostState;

/// `ENOSYS`, as the glue's `setErrNo(52)`.
pub const ENOSYS: i32 = 52;

pub(super) fn lookup(name: &str) -> Option<HostFn> {
    Some(match name {
        // Traps with the glue's text: `Aborted(native code called abort())`, or `Aborted(). Build with
        // -sASSERTIONS for more info.` in the minified format.
        "abort" | "_abort_js" => |caller, _, _| {
            let text = if caller.data().format.is_minified() {
                "Aborted(). Build with -sASSERTIONS for more info."
            } else {
                "Aborted(native code called abort())"
            };
            Err(HostTrap::Abort(text.into()).into())
        },
        // Traps with the assertion text, as the glue's `abort('Assertion failed: ...')`.
        "__assert_fail" => assert_fail,
        // A C++ throw: the reference throws the exception pointer; aos never throws, so we trap.
        "__cxa_throw" => |_, _, _| Err(HostTrap::Abort("Aborted(C++ exception)".into()).into()),
        // Traps with `Program terminated with exit(status)`.
        "exit" => |_, args, _| Err(HostTrap::Exit(args.s(0) as i32).into()),
        // Raises the longjmp sentinel that the nearest `invoke_*` catches.
        "_emscripten_throw_longjmp" => |_, _, _| Err(HostTrap::Longjmp.into()),
        // `memmove(dest, src, n)` done by the host; traps on out-of-bounds ranges.
        "emscripten_memcpy_big" | "emscripten_memcpy_js" | "_emscripten_memcpy_js" => memcpy,
        // Grows linear memory with the glue's policy; returns 1 on success, 0 on failure.
        "emscripten_resize_heap" => resize_heap,
        // The format's heap maximum.
        "emscripten_get_heap_max" => |caller, _, results| {
            set_result(results, caller.data().format.heap_max() as i64);
            Ok(())
        },
        // Always 1, as the glue.
        "_emscripten_get_now_is_monotonic" => |_, _, results| {
            set_result(results, 1);
            Ok(())
        },
        "getTempRet0" => |caller, _, results| {
            set_result(results, caller.data().glue.temp_ret0 as i64);
            Ok(())
        },
        "setTempRet0" | "_emscripten_tempret_set" => |caller, args, _| {
            caller.data_mut().glue.temp_ret0 = args.s(0) as i32;
            Ok(())
        },
        // No shell: `system(NULL)` is 0, anything else sets errno to ENOSYS and returns -1.
        "system" => system,
        "_emscripten_system" => emscripten_system,
        // No dynamic linking: `_dlinit` does nothing, `_dlopen_js`/`_dlsym_js` abort as in the glue.
        "_dlinit" => |_, _, _| Ok(()),
        "_dlopen_js" | "_dlsym_js" => |_, _, _| {
            Err(HostTrap::Abort("Aborted(To use dlopen, you need enable dynamic linking)".into()).into())
        },
        // No file-backed mappings: `mmap` of a file fails with ENOSYS, `munmap` succeeds.
        "_mmap_js" => |_, _, results| {
            set_result(results, -(ENOSYS as i64));
            Ok(())
        },
        "_munmap_js" => |_, _, results| {
            set_result(results, 0);
            Ok(())
        },
        _ => return None,
    })
}

fn assert_fail(caller: &mut Caller<'_, HostState>, args: &[Val], _: &mut [Val]) -> wasmtime::Result<()> {
    let mem = Mem::of(caller)?;
    let text = |p: u64, default: &str| {
        if p == 0 {
            Ok(default.to_string())
        } else {
            mem.c_string(p)
        }
    };
    let message = format!(
        "Aborted(Assertion failed: {}, at: {},{},{})",
        text(args.u(0), "")?,
        text(args.u(1), "unknown filename")?,
        args.s(2),
        text(args.u(3), "unknown function")?
    );
    Err(HostTrap::Abort(message).into())
}

fn memcpy(caller: &mut Caller<'_, HostState>, args: &[Val], _: &mut [Val]) -> wasmtime::Result<()> {
    let (dest, src, n) = (args.u(0), args.u(1), args.u(2));
    let mem = Mem::of(caller)?;
    let len = mem.data.len() as u64;
    if src.checked_add(n).is_none_or(|e| e > len) || dest.checked_add(n).is_none_or(|e| e > len) {
        return Err(HostTrap::OutOfBounds.into());
    }
    mem.data
        .copy_within(src as usize..(src + n) as usize, dest as usize);
    Ok(())
}

/// The glue's `emscripten_resize_heap`: over-grow by 20% (then 10%, 5%) capped at 96 MiB past the request,
/// aligned to 64 KiB, never past the heap maximum. Done in doubles, as JavaScript does it.
pub fn heap_growth_candidates(old_size: u64, requested: u64, heap_max: u64) -> Option<[u64; 3]> {
    if requested > heap_max {
        return None;
    }
    let align_up = |x: f64, m: f64| x + (m - x % m) % m;
    let mut out = [0u64; 3];
    for (i, cut_down) in [1.0f64, 2.0, 4.0].into_iter().enumerate() {
        let mut over = old_size as f64 * (1.0 + 0.2 / cut_down);
        over = over.min(requested as f64 + 100_663_296.0);
        let new_size = (heap_max as f64).min(align_up((requested as f64).max(over), 65536.0));
        out[i] = new_size as u64;
    }
    Some(out)
}

fn resize_heap(
    caller: &mut Caller<'_, HostState>,
    args: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let requested = if caller.data().format.is_wasm64() {
        args.u(0)
    } else {
        args.u(0) & 0xffff_ffff
    };
    let memory = super::memory(caller)?;
    let old_size = memory.data_size(&*caller) as u64;
    let format = caller.data().format;
    if requested <= old_size && !format.is_minified() {
        // The glue asserts `requestedSize > oldSize` (the minified glue has no assertion and grows anyway).
        return Err(HostTrap::Abort("Aborted(Assertion failed)".into()).into());
    }
    let heap_max = format.heap_max();
    let Some(candidates) = heap_growth_candidates(old_size, requested, heap_max) else {
        set_result(results, 0);
        return Ok(());
    };
    for new_size in candidates {
        // `(size - byteLength + 65535) / 65536` pages, truncated by `memory.grow`.
        let pages = new_size.saturating_sub(old_size).div_ceil(65536);
        if memory.grow(&mut *caller, pages).is_ok() {
            set_result(results, 1);
            return Ok(());
        }
    }
    set_result(results, 0);
    Ok(())
}

fn system(caller: &mut Caller<'_, HostState>, args: &[Val], results: &mut [Val]) -> wasmtime::Result<()> {
    if args.u(0) == 0 {
        set_result(results, 0);
        return Ok(());
    }
    set_errno(caller, ENOSYS)?;
    set_result(results, -1);
    Ok(())
}

/// `_emscripten_system`: 0 for a NULL command, otherwise `-ENOSYS` (libc sets errno). The reference's
/// emscripten4 glue runs the command in a host shell instead; a deterministic CU must not.
fn emscripten_system(
    _: &mut Caller<'_, HostState>,
    args: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    set_result(results, if args.u(0) == 0 { 0 } else { -(ENOSYS as i64) });
    Ok(())
}

/// Writes `errno` through the module's `__errno_location`, when it exports one.
pub fn set_errno(caller: &mut Caller<'_, HostState>, value: i32) -> wasmtime::Result<()> {
    let Some(func) = caller.data().exports.and_then(|e| e.errno_location) else {
        return Ok(());
    };
    let ptr = call_int(&mut *caller, &func, &[])?;
    Mem::of(caller)?.set_i32(ptr, value)
}

/// Checks that an `invoke_<sig>` import has the signature its name spells (`v`/`i`/`j`/`f`/`d`).
pub fn check_invoke_signature(sig: &str, ty: &wasmtime::FuncType) -> Result<(), String> {
    let letter = |t: &ValType| match t {
        ValType::I32 => Some('i'),
        ValType::I64 => Some('j'),
        ValType::F32 => Some('f'),
        ValType::F64 => Some('d'),
        _ => None,
    };
    let mut chars = sig.chars();
    let ret = chars.next().ok_or("empty invoke signature")?;
    let results: Vec<_> = ty.results().collect();
    match (ret, results.as_slice()) {
        ('v', []) => {}
        (r, [t]) if letter(t) == Some(r) => {}
        _ => return Err(format!("invoke_{sig} has a mismatched result type")),
    }
    let params: Vec<_> = ty.params().collect();
    // The first parameter is the table index (i32, or i64 in wasm64 modules).
    let (first, rest) = params.split_first().ok_or("invoke without a table index")?;
    if !matches!(first, ValType::I32 | ValType::I64) {
        return Err("invoke table index must be an integer".into());
    }
    let spelled: Vec<char> = chars.collect();
    if spelled.len() != rest.len() || spelled.iter().zip(rest).any(|(c, t)| letter(t) != Some(*c)) {
        return Err(format!("invoke_{sig} has mismatched parameter types"));
    }
    Ok(())
}

/// `invoke_<sig>(index, args...)`: calls table entry `index` (through the module's `dynCall_<sig>` where the
/// glue does) with the stack saved; a longjmp raised inside restores the stack and calls `setThrew(1, 0)`,
/// any other trap propagates.
pub fn invoke(caller: &mut Caller<'_, HostState>, args: &[Val], results: &mut [Val]) -> wasmtime::Result<()> {
    let exports = caller.data().exports.ok_or(HostTrap::MissingExport("memory"))?;
    let sp = match exports.stack_save {
        Some(save) => Some(call_int(&mut *caller, &save, &[])?),
        None => None,
    };
    let outcome = call_table_entry(caller, args, results);
    match outcome {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.downcast_ref::<HostTrap>(), Some(HostTrap::Longjmp)) => {
            if let Some(sp) = sp {
                let restore = exports
                    .stack_restore
                    .ok_or(HostTrap::MissingExport("stackRestore"))?;
                call_int(&mut *caller, &restore, &[sp])?;
            }
            let threw = exports.set_threw.ok_or(HostTrap::MissingExport("setThrew"))?;
            call_int(&mut *caller, &threw, &[1, 0])?;
            for r in results.iter_mut() {
                *r = match r {
                    Val::I64(_) => Val::I64(0),
                    Val::F64(_) => Val::F64(0),
                    Val::F32(_) => Val::F32(0),
                    _ => Val::I32(0),
                };
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn call_table_entry(
    caller: &mut Caller<'_, HostState>,
    args: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let index = args.u(0);
    let format = caller.data().format;
    let uses_dyncall = !matches!(
        format,
        cu_types::ModuleFormat::Emscripten1 | cu_types::ModuleFormat::Emscripten2
    );
    if uses_dyncall {
        let sig = dyncall_name(args, results);
        if let Some(dyncall) = super::export_func(caller, &sig) {
            let mut call_args = Vec::with_capacity(args.len());
            let first = dyncall.ty(&*caller).params().next();
            call_args.push(match first {
                Some(ValType::I64) => Val::I64(index as i64),
                _ => Val::I32(index as i32),
            });
            call_args.extend_from_slice(&args[1..]);
            return dyncall.call(&mut *caller, &call_args, results);
        }
    }
    let table = caller
        .data()
        .exports
        .and_then(|e| e.table)
        .ok_or(HostTrap::MissingExport("__indirect_function_table"))?;
    let entry = table
        .get(&mut *caller, index)
        .and_then(|r| r.as_func().flatten().copied())
        .ok_or_else(|| wasmtime::Error::msg("RuntimeError: table index is out of bounds"))?;
    entry.call(&mut *caller, &args[1..], results)
}

fn dyncall_name(args: &[Val], results: &[Val]) -> String {
    let letter = |v: &Val| match v {
        Val::I64(_) => 'j',
        Val::F32(_) => 'f',
        Val::F64(_) => 'd',
        _ => 'i',
    };
    let mut name = String::from("dynCall_");
    name.push(results.first().map(letter).unwrap_or('v'));
    name.extend(args[1..].iter().map(letter));
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_follows_the_glue() {
        // 16 MiB heap asking for one more byte: +20% rounded up to 64 KiB.
        let [a, b, c] = heap_growth_candidates(16 << 20, (16 << 20) + 1, 524_288_000).unwrap();
        assert_eq!(a, 20_185_088);
        assert_eq!(a % 65536, 0);
        assert!(b < a && c < b && c > (16 << 20));
        // A big request is capped at request + 96 MiB, and at the heap maximum.
        let [a, _, _] = heap_growth_candidates(400 << 20, 450 << 20, 524_288_000).unwrap();
        assert_eq!(a, 503_316_480);
        let [a, _, _] = heap_growth_candidates(480 << 20, 500 << 20, 524_288_000).unwrap();
        assert_eq!(a, 524_288_000);
        assert!(heap_growth_candidates(1 << 20, 524_288_001, 524_288_000).is_none());
    }

    #[test]
    fn invoke_signatures_are_checked() {
        let engine = wasmtime::Engine::default();
        let ty = wasmtime::FuncType::new(&engine, [ValType::I32, ValType::I32, ValType::I32], []);
        assert!(check_invoke_signature("vii", &ty).is_ok());
        assert!(check_invoke_signature("vi", &ty).is_err());
        assert!(check_invoke_signature("iii", &ty).is_err());
        let ty64 = wasmtime::FuncType::new(&engine, [ValType::I64, ValType::I64, ValType::I64], []);
        assert!(check_invoke_signature("vjj", &ty64).is_ok());
    }
}
