//! An optional phase file for crash tests: the engine records, with one `pwrite` each, when it enters
//! and leaves a checkpoint write and how many results are queued but not yet committed. A test that
//! kills the node with `SIGKILL` reads the file to learn what the kill interrupted (the page cache
//! survives the kill). Off unless configured; never seen by a module.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

/// What the engine is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Writing a checkpoint.
    Checkpoint,
}

/// The phase file: `C<0|1> R<n>` (checkpoint in progress, results in flight), padded to 32 bytes.
pub struct Probe {
    file: File,
    /// Checkpoint in progress, results in flight; the file is written under this lock.
    state: Mutex<(bool, i64)>,
}

/// Leaves the phase when dropped.
pub struct Entered<'a> {
    probe: &'a Probe,
}

impl Probe {
    /// Creates (truncates) the phase file.
    pub fn create(path: &Path) -> std::io::Result<Probe> {
        let probe = Probe {
            file: File::create(path)?,
            state: Mutex::new((false, 0)),
        };
        probe.update(|_| {});
        Ok(probe)
    }

    fn update(&self, change: impl FnOnce(&mut (bool, i64))) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        change(&mut state);
        let line = format!("C{} R{}", u8::from(state.0), state.1);
        let mut buf = [b' '; 32];
        let n = line.len().min(31);
        buf[..n].copy_from_slice(&line.as_bytes()[..n]);
        buf[31] = b'\n';
        let _ = self.file.write_at(&buf, 0);
    }

    /// Enters `phase` until the guard is dropped.
    pub fn enter(&self, phase: Phase) -> Entered<'_> {
        match phase {
            Phase::Checkpoint => self.update(|s| s.0 = true),
        }
        Entered { probe: self }
    }

    /// A result was queued (`+1`) or committed (`-1`).
    pub fn results(&self, delta: i64) {
        self.update(|s| s.1 += delta);
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.probe.update(|s| s.0 = false);
    }
}
