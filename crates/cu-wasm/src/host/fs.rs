//! The in-memory file system (the glue's MEMFS, as far as aos and its libraries use one) and the
//! `__syscall_*` imports. Syscalls return `-errno` with Emscripten's (WASI) errno numbers; paths that do
//! not exist give `-ENOENT`, so Lua's `require` search and `io.open` behave as under the reference.
//!
//! The tree starts with `/tmp`, `/home/web_user`, `/dev/{null,tty,random,urandom,shm}` and `/proc/self/fd`,
//! plus `/data` for the formats whose loader creates it. File contents live here, outside linear memory,
//! and are saved in snapshots. `/dev/random` and `/dev/urandom` read the deterministic random sequence.
//! The `stat` family writes the `struct stat` layout of the format's Emscripten (3.1.6 for formats 1/2,
//! 3.1.59 for 3/4) and answers `-ENOSYS` for wasm64 modules, whose layout we have not verified.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasmtime::{Caller, Val};

use super::{Args, HostFn, Mem, set_result};
use crate::drive::{CacheRange, JsPos};
use crate::state::HostState;

/// Emscripten errno values used here.
pub mod errno {
    /// Bad file descriptor.
    pub const EBADF: i64 = 8;
    /// File exists.
    pub const EEXIST: i64 = 20;
    /// Invalid argument.
    pub const EINVAL: i64 = 28;
    /// Is a directory.
    pub const EISDIR: i64 = 31;
    /// No such file or directory.
    pub const ENOENT: i64 = 44;
    /// Function not implemented.
    pub const ENOSYS: i64 = 52;
    /// Not a directory.
    pub const ENOTDIR: i64 = 54;
    /// Directory not empty.
    pub const ENOTEMPTY: i64 = 55;
    /// Not a terminal.
    pub const ENOTTY: i64 = 59;
    /// Illegal seek.
    pub const ESPIPE: i64 = 70;
}
use errno::*;

const AT_FDCWD: i64 = -100;
const O_ACCMODE: i64 = 3;
const O_CREAT: i64 = 0o100;
const O_EXCL: i64 = 0o200;
const O_TRUNC: i64 = 0o1000;
const O_APPEND: i64 = 0o2000;
const O_DIRECTORY: i64 = 0o200000;
const AT_REMOVEDIR: i64 = 0x200;

/// One node of the tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Node {
    /// A directory (its children are the paths below it).
    Dir,
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A character device.
    Device(Device),
    /// A WeaveDrive data file (`/data/<id>`, see [`crate::drive`]): its bytes stay with the drive's
    /// source; the node keeps its size and the extension's read-ahead cache.
    Drive(DriveFile),
}

/// A WeaveDrive data file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriveFile {
    /// The transaction or data item id.
    pub id: String,
    /// Its data size (the gateway's `Content-Length`).
    pub size: u64,
    /// The read-ahead cache (`node.cache`), shared by every descriptor of the file.
    #[serde(default)]
    pub cache: CacheRange,
}

/// Where a descriptor of a WeaveDrive data file stands, as the extension's JavaScript keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriveCursor {
    /// `stream.position`.
    pub position: JsPos,
    /// `stream.lastReadPosition` (`None`: never read).
    pub last_read: Option<JsPos>,
}

/// The devices under `/dev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Device {
    /// Reads nothing, swallows writes.
    Null,
    /// The terminal: writes are captured like stdout.
    Tty,
    /// Deterministic random bytes.
    Random,
}

/// An open file description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenFile {
    /// Absolute path of the node.
    pub path: String,
    /// Current offset.
    pub position: u64,
    /// `open` flags.
    pub flags: i64,
    /// For a WeaveDrive data file, its position as the extension keeps it (`position` is unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive: Option<DriveCursor>,
}

/// The file system of one process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemFs {
    /// Every node by absolute path.
    pub nodes: BTreeMap<String, Node>,
    /// Open descriptors from 3 up (0, 1, 2 are the standard streams).
    pub open: BTreeMap<i64, OpenFile>,
}

impl MemFs {
    /// The initial tree of the glue (empty for the minified format, which has no file system).
    pub fn new(enabled: bool) -> Self {
        let mut nodes = BTreeMap::new();
        if enabled {
            for dir in [
                "/",
                "/tmp",
                "/home",
                "/home/web_user",
                "/dev",
                "/dev/shm",
                "/dev/shm/tmp",
                "/proc",
                "/proc/self",
                "/proc/self/fd",
            ] {
                nodes.insert(dir.to_string(), Node::Dir);
            }
            for (path, dev) in [
                ("/dev/null", Device::Null),
                ("/dev/tty", Device::Tty),
                ("/dev/tty1", Device::Tty),
                ("/dev/random", Device::Random),
                ("/dev/urandom", Device::Random),
                ("/dev/stdin", Device::Tty),
                ("/dev/stdout", Device::Tty),
                ("/dev/stderr", Device::Tty),
            ] {
                nodes.insert(path.to_string(), Node::Device(dev));
            }
        }
        MemFs {
            nodes,
            open: BTreeMap::new(),
        }
    }

    /// Creates a directory and its parents (`FS_createPath`).
    pub fn create_path(&mut self, path: &str) {
        let mut current = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            current.push('/');
            current.push_str(part);
            self.nodes.entry(current.clone()).or_insert(Node::Dir);
        }
    }

    fn parent_is_dir(&self, path: &str) -> Result<(), i64> {
        let parent = match path.rfind('/') {
            Some(0) => "/",
            Some(i) => &path[..i],
            None => return Err(ENOENT),
        };
        match self.nodes.get(parent) {
            Some(Node::Dir) => Ok(()),
            Some(_) => Err(ENOTDIR),
            None => Err(ENOENT),
        }
    }

    fn has_children(&self, path: &str) -> bool {
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        self.nodes
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    fn next_fd(&self) -> i64 {
        (3..).find(|fd| !self.open.contains_key(fd)).unwrap_or(3)
    }

    /// `open(path, flags)`: a new descriptor or `Err(errno)`.
    pub fn open(&mut self, path: &str, flags: i64) -> Result<i64, i64> {
        let exists = self.nodes.contains_key(path);
        if exists && flags & O_CREAT != 0 && flags & O_EXCL != 0 {
            return Err(EEXIST);
        }
        if !exists {
            if flags & O_CREAT == 0 {
                return Err(ENOENT);
            }
            self.parent_is_dir(path)?;
            self.nodes.insert(path.to_string(), Node::File(Vec::new()));
        }
        match self.nodes.get_mut(path) {
            Some(Node::Dir) if flags & O_ACCMODE != 0 => return Err(EISDIR),
            Some(Node::File(_)) if flags & O_DIRECTORY != 0 => return Err(ENOTDIR),
            Some(Node::File(data)) if flags & O_TRUNC != 0 && flags & O_ACCMODE != 0 => data.clear(),
            _ => {}
        }
        let fd = self.next_fd();
        // MEMFS keeps the flags without O_EXCL, O_TRUNC and O_NOFOLLOW.
        let flags = flags & !(O_EXCL | O_TRUNC | 0o400000);
        self.open.insert(
            fd,
            OpenFile {
                path: path.to_string(),
                position: 0,
                flags,
                drive: None,
            },
        );
        Ok(fd)
    }

    /// Removes a file (`unlink`) or an empty directory (`rmdir`).
    pub fn remove(&mut self, path: &str, directory: bool) -> Result<(), i64> {
        match self.nodes.get(path) {
            None => Err(ENOENT),
            Some(Node::Dir) if !directory => Err(EISDIR),
            Some(Node::Dir) if self.has_children(path) => Err(ENOTEMPTY),
            Some(Node::File(_) | Node::Device(_)) if directory => Err(ENOTDIR),
            Some(_) => {
                self.nodes.remove(path);
                Ok(())
            }
        }
    }

    /// Renames a node and everything below it.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), i64> {
        if !self.nodes.contains_key(from) {
            return Err(ENOENT);
        }
        self.parent_is_dir(to)?;
        let prefix = format!("{from}/");
        let moved: Vec<String> = self
            .nodes
            .keys()
            .filter(|k| *k == from || k.starts_with(&prefix))
            .cloned()
            .collect();
        for old in moved {
            if let Some(node) = self.nodes.remove(&old) {
                self.nodes.insert(format!("{to}{}", &old[from.len()..]), node);
            }
        }
        Ok(())
    }
}

/// Resolves `path` against the working directory `/` (only `AT_FDCWD` and absolute paths are supported).
fn resolve(dirfd: i64, path: &str) -> Result<String, i64> {
    if path.is_empty() {
        return Err(ENOENT);
    }
    if !path.starts_with('/') && dirfd != AT_FDCWD {
        return Err(EBADF);
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

pub(super) fn lookup(name: &str) -> Option<HostFn> {
    Some(match name {
        // Opens (and with O_CREAT creates) a file; returns the descriptor or -errno.
        "__syscall_openat" => openat,
        // Removes a file, or a directory with AT_REMOVEDIR.
        "__syscall_unlinkat" => unlinkat,
        "__syscall_rmdir" => |caller, args, results| {
            let ret = path_arg(caller, AT_FDCWD, args.u(0))
                .and_then(|p| caller.data_mut().glue.fs.remove(&p, true));
            set_status(results, ret);
            Ok(())
        },
        "__syscall_renameat" => renameat,
        "__syscall_mkdirat" => mkdirat,
        // `stat` family: 0 or -errno.
        "__syscall_stat64" | "__syscall_lstat64" => |caller, args, results| {
            let ret = path_arg(caller, AT_FDCWD, args.u(0)).and_then(|p| stat(caller, &p, args.u(1)));
            set_status(results, ret);
            Ok(())
        },
        "__syscall_newfstatat" => |caller, args, results| {
            let ret = path_arg(caller, args.s(0), args.u(1)).and_then(|p| stat(caller, &p, args.u(2)));
            set_status(results, ret);
            Ok(())
        },
        "__syscall_fstat64" => |caller, args, results| {
            let ret = fd_path(caller, args.s(0)).and_then(|p| stat(caller, &p, args.u(1)));
            set_status(results, ret);
            Ok(())
        },
        // Checks that a path exists.
        "__syscall_faccessat" => |caller, args, results| {
            let ret = path_arg(caller, args.s(0), args.u(1)).and_then(|p| {
                if caller.data().glue.fs.nodes.contains_key(&p) {
                    Ok(())
                } else {
                    Err(ENOENT)
                }
            });
            set_status(results, ret);
            Ok(())
        },
        // The working directory is always `/`.
        "__syscall_getcwd" => |caller, args, results| {
            let (buf, size) = (args.u(0), args.u(1));
            if size < 2 {
                set_result(results, -EINVAL);
                return Ok(());
            }
            Mem::of(caller)?.write(buf, b"/\0")?;
            set_result(results, 2);
            Ok(())
        },
        // Permission and ownership changes, timestamps and fcntl: accepted without effect.
        // `fcntl`: F_GETFL (3) returns the open flags; the other commands succeed without effect.
        "__syscall_fcntl64" => |caller, args, results| {
            let (fd, cmd) = (args.s(0), args.s(1));
            let ret = match cmd {
                3 => match fd {
                    0 => 0,
                    1 | 2 => 1,
                    _ => caller
                        .data()
                        .glue
                        .fs
                        .open
                        .get(&fd)
                        .map(|f| f.flags)
                        .unwrap_or(-EBADF),
                },
                _ => 0,
            };
            set_result(results, ret);
            Ok(())
        },
        "__syscall_chmod" | "__syscall_fchmod" | "__syscall_fchown32" | "__syscall_utimensat" => {
            |_, _, results| {
                set_result(results, 0);
                Ok(())
            }
        }
        // Truncates an open file to a length.
        "__syscall_ftruncate64" => |caller, args, results| {
            let fd = args.s(0);
            let len = if args.len() >= 3 {
                (args.s(2) << 32) | (args.u(1) & 0xffff_ffff) as i64
            } else {
                args.s(1)
            };
            let ret = fd_path(caller, fd).and_then(|p| match caller.data_mut().glue.fs.nodes.get_mut(&p) {
                Some(Node::File(data)) => {
                    data.resize(len.max(0) as usize, 0);
                    Ok(())
                }
                _ => Err(EINVAL),
            });
            set_status(results, ret);
            Ok(())
        },
        // No terminal control: -ENOTTY, which makes libc treat stdout as fully buffered.
        "__syscall_ioctl" => |_, _, results| {
            set_result(results, -ENOTTY);
            Ok(())
        },
        // Duplicating descriptors and symbolic links are not supported.
        "__syscall_dup3" | "__syscall_readlinkat" => |_, _, results| {
            set_result(results, -ENOSYS);
            Ok(())
        },
        _ => return None,
    })
}

/// Writes a syscall's result: 0 on success, `-errno` on failure.
fn set_status(results: &mut [Val], status: Result<(), i64>) {
    set_result(results, status.err().map(|e| -e).unwrap_or(0));
}

fn path_arg(caller: &mut Caller<'_, HostState>, dirfd: i64, ptr: u64) -> Result<String, i64> {
    let text = Mem::of(caller)
        .and_then(|m| m.c_string(ptr))
        .map_err(|_| EINVAL)?;
    resolve(dirfd, &text)
}

fn fd_path(caller: &mut Caller<'_, HostState>, fd: i64) -> Result<String, i64> {
    match fd {
        0 => Ok("/dev/stdin".into()),
        1 => Ok("/dev/stdout".into()),
        2 => Ok("/dev/stderr".into()),
        _ => caller
            .data()
            .glue
            .fs
            .open
            .get(&fd)
            .map(|f| f.path.clone())
            .ok_or(EBADF),
    }
}

fn openat(caller: &mut Caller<'_, HostState>, args: &[Val], results: &mut [Val]) -> wasmtime::Result<()> {
    let flags = args.s(2);
    let ret = path_arg(caller, args.s(0), args.u(1)).and_then(|p| caller.data_mut().glue.fs.open(&p, flags));
    set_result(results, ret.unwrap_or_else(|e| -e));
    Ok(())
}

fn unlinkat(caller: &mut Caller<'_, HostState>, args: &[Val], results: &mut [Val]) -> wasmtime::Result<()> {
    let directory = args.s(2) & AT_REMOVEDIR != 0;
    let ret =
        path_arg(caller, args.s(0), args.u(1)).and_then(|p| caller.data_mut().glue.fs.remove(&p, directory));
    set_status(results, ret);
    Ok(())
}

fn renameat(caller: &mut Caller<'_, HostState>, args: &[Val], results: &mut [Val]) -> wasmtime::Result<()> {
    let ret = path_arg(caller, args.s(0), args.u(1)).and_then(|from| {
        let to = path_arg(caller, args.s(2), args.u(3))?;
        caller.data_mut().glue.fs.rename(&from, &to)
    });
    set_status(results, ret);
    Ok(())
}

fn mkdirat(caller: &mut Caller<'_, HostState>, args: &[Val], results: &mut [Val]) -> wasmtime::Result<()> {
    let ret = path_arg(caller, args.s(0), args.u(1)).and_then(|p| {
        let fs = &mut caller.data_mut().glue.fs;
        if fs.nodes.contains_key(&p) {
            return Err(EEXIST);
        }
        fs.parent_is_dir(&p)?;
        fs.nodes.insert(p, Node::Dir);
        Ok(())
    });
    set_status(results, ret);
    Ok(())
}

fn stat(caller: &mut Caller<'_, HostState>, path: &str, buf: u64) -> Result<(), i64> {
    let format = caller.data().format;
    if format.is_wasm64() {
        return Err(ENOSYS);
    }
    let (mode, size, rdev) = match caller.data().glue.fs.nodes.get(path) {
        Some(Node::Dir) => (0o40777, 4096u64, 0),
        Some(Node::File(data)) => (0o100666, data.len() as u64, 0),
        Some(Node::Device(_)) => (0o20666, 0, 1),
        Some(Node::Drive(f)) => (0o100444, f.size, 0),
        None => return Err(ENOENT),
    };
    let ino = caller
        .data()
        .glue
        .fs
        .nodes
        .keys()
        .position(|k| k == path)
        .unwrap_or(0) as i32
        + 1;
    let blocks = size.div_ceil(4096) as i32;
    let mut mem = Mem::of(caller).map_err(|_| EINVAL)?;
    let mut put = |o: u64, v: i32| mem.set_i32(buf + o, v).map_err(|_| EINVAL);
    if matches!(
        format,
        cu_types::ModuleFormat::Emscripten1 | cu_types::ModuleFormat::Emscripten2
    ) {
        for (o, v) in [
            (0, 1),
            (4, 0),
            (8, ino),
            (12, mode),
            (16, 1),
            (20, 0),
            (24, 0),
            (28, rdev),
            (32, 0),
        ] {
            put(o, v)?;
        }
        put(40, size as i32)?;
        put(44, (size >> 32) as i32)?;
        for (o, v) in [
            (48, 4096),
            (52, blocks),
            (56, 0),
            (60, 0),
            (64, 0),
            (68, 0),
            (72, 0),
            (76, 0),
            (80, ino),
            (84, 0),
        ] {
            put(o, v)?;
        }
    } else {
        for (o, v) in [(0, 1), (4, mode), (8, 1), (12, 0), (16, 0), (20, rdev)] {
            put(o, v)?;
        }
        put(24, size as i32)?;
        put(28, (size >> 32) as i32)?;
        for (o, v) in [(32, 4096), (36, blocks)] {
            put(o, v)?;
        }
        for o in (40..88).step_by(4) {
            put(o, 0)?;
        }
        put(88, ino)?;
        put(92, 0)?;
    }
    Ok(())
}

/// Whether `fd` is open on a WeaveDrive data file.
pub fn is_drive_file(state: &HostState, fd: i64) -> bool {
    state
        .glue
        .fs
        .open
        .get(&fd)
        .is_some_and(|f| matches!(state.glue.fs.nodes.get(&f.path), Some(Node::Drive(_))))
}

/// Reads up to `len` bytes from descriptor `fd` (an open file or a device).
pub fn read_fd(state: &mut HostState, fd: i64, len: usize) -> Result<Vec<u8>, i64> {
    if fd == 0 {
        return Ok(Vec::new());
    }
    let file = state.glue.fs.open.get(&fd).cloned().ok_or(EBADF)?;
    match state.glue.fs.nodes.get(&file.path) {
        Some(Node::File(data)) => {
            let start = (file.position as usize).min(data.len());
            let end = start.saturating_add(len).min(data.len());
            let out = data[start..end].to_vec();
            if let Some(f) = state.glue.fs.open.get_mut(&fd) {
                f.position = end as u64;
            }
            Ok(out)
        }
        Some(Node::Device(Device::Random)) => Ok((0..len)
            .map(|_| (state.glue.next_random() * 256.0) as u8)
            .collect()),
        Some(Node::Device(_)) => Ok(Vec::new()),
        Some(Node::Dir) => Err(EISDIR),
        // Only `weavedrive_read` reads these (see `wasi::fd_read`).
        Some(Node::Drive(_)) | None => Err(EBADF),
    }
}

/// Writes `bytes` to descriptor `fd`; standard streams and terminals are captured, never printed.
pub fn write_fd(state: &mut HostState, fd: i64, bytes: &[u8]) -> Result<usize, i64> {
    if fd == 1 || fd == 2 {
        state.capture_stdout(bytes);
        return Ok(bytes.len());
    }
    let file = state.glue.fs.open.get(&fd).cloned().ok_or(EBADF)?;
    match state.glue.fs.nodes.get_mut(&file.path) {
        Some(Node::File(data)) => {
            let start = if file.flags & O_APPEND != 0 {
                data.len()
            } else {
                file.position as usize
            };
            let end = start + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[start..end].copy_from_slice(bytes);
            if let Some(f) = state.glue.fs.open.get_mut(&fd) {
                f.position = end as u64;
            }
            Ok(bytes.len())
        }
        Some(Node::Device(Device::Tty)) => {
            state.capture_stdout(bytes);
            Ok(bytes.len())
        }
        Some(Node::Device(_)) => Ok(bytes.len()),
        Some(Node::Dir) => Err(EISDIR),
        // Opened read-only, as the extension opens them.
        Some(Node::Drive(_)) | None => Err(EBADF),
    }
}

/// Moves the offset of `fd`; returns the new offset.
pub fn seek_fd(state: &mut HostState, fd: i64, offset: i64, whence: i64) -> Result<u64, i64> {
    if (0..=2).contains(&fd) {
        return Err(ESPIPE);
    }
    let file = state.glue.fs.open.get(&fd).cloned().ok_or(EBADF)?;
    let size = match state.glue.fs.nodes.get(&file.path) {
        Some(Node::File(data)) => data.len() as i64,
        Some(Node::Drive(d)) => {
            // The extension's JavaScript position arithmetic (see `crate::drive::JsPos`).
            let cursor = file.drive.clone().unwrap_or_default();
            let position = cursor.position.seek(offset, whence, d.size)?;
            let out = position.offset();
            if let Some(f) = state.glue.fs.open.get_mut(&fd) {
                f.drive = Some(DriveCursor { position, ..cursor });
            }
            return Ok(out);
        }
        _ => 0,
    };
    let base = match whence {
        0 => 0,
        1 => file.position as i64,
        2 => size,
        _ => return Err(EINVAL),
    };
    let target = base.checked_add(offset).filter(|t| *t >= 0).ok_or(EINVAL)?;
    if let Some(f) = state.glue.fs.open.get_mut(&fd) {
        f.position = target as u64;
    }
    Ok(target as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_created_written_renamed_and_removed() {
        let mut fs = MemFs::new(true);
        assert_eq!(fs.open("/tmp/a.txt", 0), Err(ENOENT));
        let fd = fs.open("/tmp/a.txt", O_CREAT | 1).unwrap();
        assert_eq!(fd, 3);
        assert_eq!(fs.open("/tmp/a.txt", O_CREAT | O_EXCL | 1), Err(EEXIST));
        assert_eq!(fs.open("/nope/a.txt", O_CREAT | 1), Err(ENOENT));
        assert_eq!(fs.remove("/tmp", true), Err(ENOTEMPTY));
        fs.rename("/tmp/a.txt", "/home/b.txt").unwrap();
        assert!(fs.nodes.contains_key("/home/b.txt"));
        fs.remove("/home/b.txt", false).unwrap();
        fs.create_path("/data/x");
        assert_eq!(fs.nodes.get("/data/x"), Some(&Node::Dir));
    }

    #[test]
    fn paths_resolve_against_root() {
        assert_eq!(resolve(AT_FDCWD, "tmp/../tmp/./x"), Ok("/tmp/x".into()));
        assert_eq!(resolve(AT_FDCWD, "/"), Ok("/".into()));
        assert_eq!(resolve(5, "x"), Err(EBADF));
    }
}
