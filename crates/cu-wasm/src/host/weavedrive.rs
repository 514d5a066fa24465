//! The WeaveDrive imports `__asyncjs__weavedrive_{open,read,close}`, as the reference glue and the aos
//! extension `@permaweb/weavedrive` answer them (the rules and the data are in [`crate::drive`]).
//!
//! - `open(path, mode)`: `/data/<id>` creates the data file after the admissibility check (the size
//!   from the source), `/tx/<id>` and `/block/<height>` create in-memory files holding the header text;
//!   a path that already exists is opened again without a check; any other path answers 0 (NULL, which
//!   aos's `fopen` returns, as for `require`'s search). Without WeaveDrive (`Module.WeaveDrive` unset) it
//!   always answers 0.
//! - `read(fd, dst, len)`: a header file copies its text from the start (at most `len` bytes) and answers
//!   `len`; a data file follows the extension's position, cache and ranged fetch
//!   ([`crate::drive::plan_read`]).
//! - `close(fd)`: closes the descriptor, answers 0.
//!
//! Every call is an `Asyncify.handleAsync` suspension in the reference, and that is visible to the
//! module (the gas of the re-executed code in `-metering` formats, the 40 MiB data area that may grow
//! memory), so each is emulated exactly: `malloc` the data area (header + 40 MiB), write its header,
//! `asyncify_start_unwind`; after `handle` returns, `asyncify_stop_unwind`, `asyncify_start_rewind` and
//! re-enter `handle` (see `process::call_handle`); when the import is called again,
//! `asyncify_stop_rewind`, `free` the area and return the answer. The work itself is done on the first
//! call (before the unwind): it reads the module's arguments and writes only the destination buffer,
//! which neither the allocation nor the unwind touch, so the memory is the same as the reference's.
//! Modules without the Asyncify exports get the answer directly.

use wasmtime::{Caller, Val};

use super::fs::{DriveCursor, DriveFile, Node};
use super::{Args, HostFn, HostTrap, Mem, call_int, set_result};
use crate::drive::{Drive, plan_read, tx_file};
use crate::state::{Asyncify, HostState};

/// The glue's `Asyncify.StackSize`.
pub const ASYNCIFY_STACK_SIZE: u64 = 41_943_040;

/// The extension's answer when data cannot be had (it throws this in `weavedrive_open`).
const NOT_FOUND: &str = "HALT: FILE NOT FOUND";

pub(super) fn lookup(name: &str) -> Option<HostFn> {
    Some(match name {
        "__asyncjs__weavedrive_open" => |caller, args, results| {
            let (path, mode) = (args.u(0), args.u(1));
            suspend(caller, results, move |c| open(c, path, mode))
        },
        "__asyncjs__weavedrive_read" => |caller, args, results| {
            let (fd, dst, len) = (args.s(0), args.u(1), args.u(2));
            suspend(caller, results, move |c| read(c, fd, dst, len))
        },
        "__asyncjs__weavedrive_close" => |caller, args, results| {
            let fd = args.s(0);
            suspend(caller, results, move |c| close(c, fd))
        },
        _ => return None,
    })
}

/// Runs `work` as `Asyncify.handleAsync` runs an async import: its answer is returned after an unwind
/// and rewind of the module's stack.
fn suspend(
    caller: &mut Caller<'_, HostState>,
    results: &mut [Val],
    work: impl FnOnce(&mut Caller<'_, HostState>) -> wasmtime::Result<i64>,
) -> wasmtime::Result<()> {
    let exports = caller.data().exports;
    let (Some(asyncify), Some(malloc), Some(free)) = (
        exports.and_then(|e| e.asyncify),
        exports.and_then(|e| e.malloc),
        exports.and_then(|e| e.free),
    ) else {
        let value = work(caller)?;
        set_result(results, value);
        return Ok(());
    };
    let [start_unwind, _, _, stop_rewind] = asyncify;
    match caller.data().asyncify {
        Asyncify::Normal => {
            let value = work(caller)?;
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
            caller.data_mut().asyncify = Asyncify::Unwinding { data, value };
            set_result(results, 0);
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

fn halt(reason: impl Into<String>) -> wasmtime::Error {
    HostTrap::Halt(reason.into()).into()
}

/// `weavedrive_open(path, mode)`: a descriptor, or 0.
fn open(caller: &mut Caller<'_, HostState>, path: u64, _mode: u64) -> wasmtime::Result<i64> {
    let Some(drive) = caller.data().drive.clone() else {
        return Ok(0);
    };
    let filename = Mem::of(caller)?.c_string(path)?;
    let mut parts = filename.split('/');
    let category = parts.nth(1).unwrap_or_default().to_string();
    // `filename.split('/')[2]`, `undefined` when absent (as the extension then fetches it).
    let id = parts.next().unwrap_or("undefined").to_string();
    let state = caller.data_mut();
    match category.as_str() {
        "tx" | "block" => {
            let dir = format!("/{category}");
            state.glue.fs.create_path(&dir);
            let file = format!("{dir}/{id}");
            if !state.glue.fs.nodes.contains_key(&filename) {
                let text = if category == "tx" {
                    let header = drive
                        .source
                        .tx(&id)
                        .map_err(|e| halt(format!("WeaveDrive /tx/{id}: {e}")))?
                        .ok_or_else(|| halt(format!("WeaveDrive: the gateway has no transaction {id}")))?;
                    tx_file(header).map_err(|e| halt(format!("WeaveDrive /tx/{id}: {e}")))?
                } else {
                    drive
                        .source
                        .block(&id)
                        .map_err(|e| halt(format!("WeaveDrive /block/{id}: {e}")))?
                        .ok_or_else(|| halt(format!("WeaveDrive: the gateway has no block at height {id}")))?
                };
                state.glue.fs.nodes.insert(file.clone(), Node::File(text));
                return open_existing(state, &file);
            }
            open_existing(state, &filename)
        }
        "data" => {
            if state.glue.fs.nodes.contains_key(&filename) {
                return open_existing(state, &filename);
            }
            let block_height = crate::process::block_height_text(&state.msg);
            let size = admit(&drive, &id, &block_height)?;
            state.glue.fs.create_path("/data");
            let file = format!("/data/{id}");
            state.glue.fs.nodes.insert(
                file.clone(),
                Node::Drive(DriveFile {
                    id,
                    size,
                    cache: Default::default(),
                }),
            );
            open_existing(state, &file)
        }
        // `headers` is "not implemented yet" in the extension; anything else is not a WeaveDrive path.
        _ => Ok(0),
    }
}

/// The admissibility check and the size of `id`'s data; a halt when either fails.
fn admit(drive: &Drive, id: &str, block_height: &str) -> wasmtime::Result<u64> {
    match drive.admissible(id, block_height) {
        Ok(true) => {}
        Ok(false) => {
            return Err(halt(format!(
                "{NOT_FOUND}: WeaveDrive data {id} is not admissible for this process at block height {block_height} \
                 (no attestation by its Scheduler or Attestor tags)"
            )));
        }
        Err(reason) => return Err(halt(format!("WeaveDrive: {reason}"))),
    }
    drive
        .source
        .data_size(id)
        .map_err(|e| halt(format!("WeaveDrive /data/{id}: {e}")))?
        .ok_or_else(|| halt(format!("{NOT_FOUND}: the gateway has no data for {id}")))
}

/// `FS.open(path, 'r')`: a new descriptor on an existing node.
fn open_existing(state: &mut HostState, path: &str) -> wasmtime::Result<i64> {
    let fd = state
        .glue
        .fs
        .open(path, 0)
        .map_err(|errno| halt(format!("WeaveDrive: opening {path} failed with errno {errno}")))?;
    if let (Some(Node::Drive(_)), Some(file)) =
        (state.glue.fs.nodes.get(path), state.glue.fs.open.get_mut(&fd))
    {
        file.drive = Some(DriveCursor::default());
    }
    Ok(fd)
}

/// `weavedrive_read(fd, dst, len)`: the bytes copied (`len` for a header file).
fn read(caller: &mut Caller<'_, HostState>, fd: i64, dst: u64, len: u64) -> wasmtime::Result<i64> {
    let state = caller.data();
    let bad_fd = || HostTrap::WeaveDrive(format!("WeaveDrive: read on descriptor {fd}, which is not open"));
    let file = state.glue.fs.open.get(&fd).cloned().ok_or_else(bad_fd)?;
    match state.glue.fs.nodes.get(&file.path).cloned() {
        Some(Node::File(text)) if file.path.contains("/block") || file.path.contains("/tx") => {
            let n = (len as usize).min(text.len());
            Mem::of(caller)?.write(dst, &text[..n])?;
            Ok(len as i64)
        }
        Some(Node::Drive(data)) => {
            let drive = state.drive.clone().ok_or_else(bad_fd)?;
            let cursor = file.drive.clone().unwrap_or_default();
            let plan = plan_read(
                data.size,
                &cursor.position,
                cursor.last_read.as_ref(),
                data.cache,
                len,
            );
            for (at, offset, n) in &plan.copies {
                let bytes = drive
                    .source
                    .read(&data.id, *offset, *n)
                    .map_err(|e| halt(format!("WeaveDrive /data/{}: {e}", data.id)))?;
                if bytes.len() as u64 != *n {
                    return Err(halt(format!(
                        "WeaveDrive /data/{}: the source answered {} bytes at offset {offset}, not {n}",
                        data.id,
                        bytes.len()
                    )));
                }
                Mem::of(caller)?.write(dst + at, &bytes)?;
            }
            let fs = &mut caller.data_mut().glue.fs;
            if let Some(f) = fs.open.get_mut(&fd) {
                f.drive = Some(DriveCursor {
                    position: plan.position,
                    last_read: Some(plan.last_read),
                });
            }
            if let Some(Node::Drive(d)) = fs.nodes.get_mut(&file.path) {
                d.cache = plan.cache;
            }
            Ok(plan.returned as i64)
        }
        _ => Err(HostTrap::WeaveDrive(format!(
            "WeaveDrive: read on descriptor {fd} ({}), which is not a WeaveDrive file",
            file.path
        ))
        .into()),
    }
}

/// `weavedrive_close(fd)`: 0.
fn close(caller: &mut Caller<'_, HostState>, fd: i64) -> wasmtime::Result<i64> {
    match caller.data_mut().glue.fs.open.remove(&fd) {
        Some(_) => Ok(0),
        None => Err(
            HostTrap::WeaveDrive(format!("WeaveDrive: close on descriptor {fd}, which is not open")).into(),
        ),
    }
}
