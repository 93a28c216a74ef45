//! One run at a time: an exclusive OS file lock on `rollout.lock`, released by the OS when the
//! holder exits, so a killed run never leaves a stale lock behind.

use std::{fs::File, path::Path};

/// Held for the life of a run.
pub struct RunLock {
    _file: File,
}

/// Another process holds the lock.
#[derive(Debug, thiserror::Error)]
#[error("another rollout run holds {path} (pid {holder}); wait for it or stop it first")]
pub struct Locked {
    /// The lock file.
    pub path: String,
    /// The pid written by the holder.
    pub holder: String,
}

impl RunLock {
    /// Takes the lock in `dir`, or fails at once if another run holds it.
    pub fn acquire(dir: &Path) -> anyhow::Result<RunLock> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("rollout.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0)?;
                std::fs::write(&path, std::process::id().to_string())?;
                Ok(RunLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(Locked {
                path: path.display().to_string(),
                holder: std::fs::read_to_string(&path).unwrap_or_default(),
            }
            .into()),
            Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_is_refused_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let second = RunLock::acquire(dir.path())
            .err()
            .expect("second lock refused");
        assert!(
            second.to_string().contains("another rollout run"),
            "{second}"
        );
        drop(first);
        RunLock::acquire(dir.path()).expect("free again once the first run ends");
    }
}
