//! One run at a time: an exclusive OS file lock on `rollout.lock`, released by the OS when the
//! holder exits, so a killed run never leaves a stale lock behind. The holder writes its pid in
//! the file; a pid left there by a killed run is only a note, and taking over says so.

use std::{fs::File, path::Path};

/// Held for the life of a run.
pub struct RunLock {
    _file: File,
    stale: Option<u32>,
}

/// Another process holds the lock.
#[derive(Debug, thiserror::Error)]
#[error("another rollout run holds {path} (pid {holder}); wait for it or stop it first")]
pub struct Locked {
    /// The lock file.
    pub path: String,
    /// The pid written by the holder (`unknown` when it wrote none).
    pub holder: String,
}

/// Whether process `pid` exists (signal 0 probes without sending anything).
fn exists(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None).is_ok()
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
        let previous = std::fs::read_to_string(&path).unwrap_or_default();
        match file.try_lock() {
            Ok(()) => {
                let stale = previous
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|&pid| pid != std::process::id() && !exists(pid));
                if let Some(pid) = stale {
                    println!(
                        "rollout: {} names pid {pid}, which is no longer running (a killed \
                         run); the OS released its lock, so this run takes it",
                        path.display()
                    );
                }
                file.set_len(0)?;
                std::fs::write(&path, std::process::id().to_string())?;
                Ok(RunLock { _file: file, stale })
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(Locked {
                path: path.display().to_string(),
                holder: Some(previous.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "unknown".into()),
            }
            .into()),
            Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }

    /// The pid of a dead run whose note this lock replaced, if any.
    pub fn took_over_from(&self) -> Option<u32> {
        self.stale
    }
}

#[cfg(test)]
mod tests {
    use std::{process::Command, time::Duration};

    use super::*;

    #[test]
    fn a_second_run_is_refused_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let second = RunLock::acquire(dir.path())
            .err()
            .expect("second lock refused");
        assert!(
            second.to_string().contains("another rollout run")
                && second.to_string().contains(&std::process::id().to_string()),
            "{second}"
        );
        drop(first);
        RunLock::acquire(dir.path()).expect("free again once the first run ends");
    }

    #[test]
    fn a_lock_held_by_another_process_refuses_and_frees_when_it_dies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollout.lock");
        std::fs::write(&path, "").unwrap();
        // flock(1) takes the same flock(2) lock that File::try_lock takes, and holds it until
        // `cat` (which it runs without the descriptor) reads the end of its input.
        let mut holder = Command::new("flock")
            .arg("--close")
            .arg(&path)
            .arg("cat")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("flock(1) runs");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let refused = loop {
            match RunLock::acquire(dir.path()) {
                Err(error) => break error,
                Ok(lock) => {
                    drop(lock);
                    assert!(
                        std::time::Instant::now() < deadline,
                        "flock never took the lock"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        assert!(
            refused.to_string().contains("another rollout run holds"),
            "{refused}"
        );
        drop(holder.stdin.take());
        assert!(holder.wait().unwrap().success());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if RunLock::acquire(dir.path()).is_ok() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the lock stayed held");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[test]
    fn the_pid_of_a_killed_run_is_taken_over_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut dead = Command::new("true").spawn().unwrap();
        let pid = dead.id();
        dead.wait().unwrap();
        std::fs::write(dir.path().join("rollout.lock"), pid.to_string()).unwrap();
        let lock = RunLock::acquire(dir.path()).expect("a dead holder's lock is free");
        assert_eq!(lock.took_over_from(), Some(pid));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("rollout.lock")).unwrap(),
            std::process::id().to_string()
        );
    }
}
