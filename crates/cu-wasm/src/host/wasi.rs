//! The `wasi_snapshot_preview1` imports the Emscripten glue provides: descriptors (`fd_*`) over the
//! in-memory file system, and the environment. WASI calls return a positive errno (0 on success).

use wasmtime::{Caller, Val};

use super::fs::{self, errno};
use super::{Args, HostFn, Mem, set_result};
use crate::state::HostState;

pub(super) fn lookup(name: &str) -> Option<HostFn> {
    Some(match name {
        // Gathers the iovecs and writes them; stdout/stderr are captured. Returns 0 and the count.
        "fd_write" => fd_write,
        // Scatters a read into the iovecs. 52 (ENOSYS) in the minified format, which has no file system.
        "fd_read" => fd_read,
        // Closes a descriptor. 52 in the minified format.
        "fd_close" => |caller, args, results| {
            let state = caller.data_mut();
            let ret = if !state.format.has_filesystem() {
                errno::ENOSYS
            } else if state.glue.fs.open.remove(&args.s(0)).is_some() || (0..=2).contains(&args.s(0)) {
                0
            } else {
                errno::EBADF
            };
            set_result(results, ret);
            Ok(())
        },
        // Moves the offset and stores it at `newOffset`. 70 (ESPIPE) in the minified format.
        "fd_seek" => fd_seek,
        "fd_sync" => |_, _, results| {
            set_result(results, 0);
            Ok(())
        },
        // Writes the file type (2 = character device, 3 = directory, 4 = regular file), no rights.
        "fd_fdstat_get" => |caller, args, results| {
            let fd = args.s(0);
            let kind: u8 = match fd {
                0..=2 => 2,
                _ => match caller
                    .data()
                    .glue
                    .fs
                    .open
                    .get(&fd)
                    .and_then(|f| caller.data().glue.fs.nodes.get(&f.path))
                {
                    Some(fs::Node::Dir) => 3,
                    Some(fs::Node::File(_) | fs::Node::Drive(_)) => 4,
                    Some(fs::Node::Device(_)) => 2,
                    None => {
                        set_result(results, errno::EBADF);
                        return Ok(());
                    }
                },
            };
            let mut stat = [0u8; 24];
            stat[0] = kind;
            Mem::of(caller)?.write(args.u(1), &stat)?;
            set_result(results, 0);
            Ok(())
        },
        // The glue's environment: USER, LOGNAME, PATH, PWD, HOME, LANG and `_` (argv[0]).
        "environ_sizes_get" => |caller, args, results| {
            let strings = environment(caller.data());
            let total: usize = strings.iter().map(|s| s.len() + 1).sum();
            let mut mem = Mem::of(caller)?;
            mem.set_ptr(args.u(0), strings.len() as u64)?;
            mem.set_ptr(args.u(1), total as u64)?;
            set_result(results, 0);
            Ok(())
        },
        "environ_get" => |caller, args, results| {
            let strings = environment(caller.data());
            let mut mem = Mem::of(caller)?;
            let (environ, mut buf) = (args.u(0), args.u(1));
            for (i, s) in strings.iter().enumerate() {
                mem.set_ptr(environ + i as u64 * mem.ptr_size, buf)?;
                let mut bytes = s.as_bytes().to_vec();
                bytes.push(0);
                mem.write(buf, &bytes)?;
                buf += bytes.len() as u64;
            }
            set_result(results, 0);
            Ok(())
        },
        _ => return None,
    })
}

/// The environment strings of the glue, in its order (none in formats 4/wasm64).
pub fn environment(state: &HostState) -> Vec<String> {
    if !state.format.has_environment() {
        return Vec::new();
    }
    let this_program = &state.this_program;
    vec![
        "USER=web_user".into(),
        "LOGNAME=web_user".into(),
        "PATH=/".into(),
        "PWD=/".into(),
        "HOME=/home/web_user".into(),
        "LANG=C.UTF-8".into(),
        format!("_={this_program}"),
    ]
}

fn iovecs(mem: &Mem<'_>, iov: u64, count: u64) -> wasmtime::Result<Vec<(u64, u64)>> {
    let step = mem.ptr_size * 2;
    (0..count)
        .map(|i| Ok((mem.ptr(iov + i * step)?, mem.ptr(iov + i * step + mem.ptr_size)?)))
        .collect()
}

fn fd_write(caller: &mut Caller<'_, HostState>, args: &[Val], results: &mut [Val]) -> wasmtime::Result<()> {
    let (fd, iov, count, pnum) = (args.s(0), args.u(1), args.u(2), args.u(3));
    let data = {
        let mem = Mem::of(caller)?;
        let mut data = Vec::new();
        for (ptr, len) in iovecs(&mem, iov, count)? {
            data.extend_from_slice(mem.bytes(ptr, len)?);
        }
        data
    };
    let state = caller.data_mut();
    let ret = if state.format.has_filesystem() {
        fs::write_fd(state, fd, &data)
    } else {
        state.capture_stdout(&data);
        Ok(data.len())
    };
    match ret {
        Ok(n) => {
            Mem::of(caller)?.set_ptr(pnum, n as u64)?;
            set_result(results, 0);
        }
        Err(e) => set_result(results, e),
    }
    Ok(())
}

fn fd_read(caller: &mut Caller<'_, HostState>, args: &[Val], results: &mut [Val]) -> wasmtime::Result<()> {
    if !caller.data().format.has_filesystem() {
        set_result(results, errno::ENOSYS);
        return Ok(());
    }
    let (fd, iov, count, pnum) = (args.s(0), args.u(1), args.u(2), args.u(3));
    if fs::is_drive_file(caller.data(), fd) {
        // MEMFS reads `node.contents`, which the extension leaves null: a TypeError in the reference.
        return Err(super::HostTrap::WeaveDrive(
            "TypeError: Cannot read properties of null (reading 'subarray')".into(),
        )
        .into());
    }
    let vecs = iovecs(&Mem::of(caller)?, iov, count)?;
    let mut total = 0u64;
    for (ptr, len) in vecs {
        match fs::read_fd(caller.data_mut(), fd, len as usize) {
            Ok(bytes) => {
                Mem::of(caller)?.write(ptr, &bytes)?;
                total += bytes.len() as u64;
                if (bytes.len() as u64) < len {
                    break;
                }
            }
            Err(e) => {
                set_result(results, e);
                return Ok(());
            }
        }
    }
    Mem::of(caller)?.set_ptr(pnum, total)?;
    set_result(results, 0);
    Ok(())
}

fn fd_seek(caller: &mut Caller<'_, HostState>, args: &[Val], results: &mut [Val]) -> wasmtime::Result<()> {
    if !caller.data().format.has_filesystem() {
        set_result(results, errno::ESPIPE);
        return Ok(());
    }
    // `(fd, offset_low, offset_high, whence, newOffset)` in wasm32, `(fd, offset, whence, newOffset)` in wasm64.
    let (fd, offset, whence, out) = if args.len() == 5 {
        (
            args.s(0),
            (args.s(2) << 32) | (args.u(1) & 0xffff_ffff) as i64,
            args.s(3),
            args.u(4),
        )
    } else {
        (args.s(0), args.s(1), args.s(2), args.u(3))
    };
    match fs::seek_fd(caller.data_mut(), fd, offset, whence) {
        Ok(pos) => {
            Mem::of(caller)?.set_i64(out, pos as i64)?;
            set_result(results, 0);
        }
        Err(e) => set_result(results, e),
    }
    Ok(())
}
