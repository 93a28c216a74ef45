//! Child processes the local target starts and must not leave behind: each writes its output to
//! a log file in the work folder, is stopped with SIGTERM (then SIGKILL) by `terminate` or on
//! drop, and is listed in a ledger so that the next start can end what a killed run left.

use std::{
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

/// How long a child gets to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// One running child process, its output going to `log`.
pub struct Supervised {
    name: &'static str,
    child: Child,
    log: PathBuf,
    ledger: Ledger,
}

impl Supervised {
    /// Starts `command` with its output written to `log` (replacing an earlier one), and
    /// records it in `ledger`.
    pub fn spawn(
        name: &'static str,
        mut command: Command,
        log: &Path,
        ledger: &Ledger,
    ) -> anyhow::Result<Self> {
        if let Some(dir) = log.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({program})"))?;
        let supervised = Self {
            name,
            child,
            log: log.to_path_buf(),
            ledger: ledger.clone(),
        };
        // On error the drop stops the child: nothing runs that the ledger does not list.
        ledger.add(supervised.pid())?;
        Ok(supervised)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Waits until a line of the log gives `found` a value; fails when the process exits first
    /// or `timeout` passes, with the end of the log.
    pub fn wait_for_log<T>(
        &mut self,
        timeout: Duration,
        found: impl Fn(&str) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(value) = text.lines().find_map(&found) {
                return Ok(value);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "{} exited ({status}) before it was ready; end of {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&text)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} was not ready after {timeout:?}; end of {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&text)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `GET url` answers 200; fails when the process exits first or `timeout`
    /// passes.
    pub fn wait_for_http_ok(&mut self, url: &str, timeout: Duration) -> anyhow::Result<()> {
        self.poll_http_ok(url, timeout, Duration::from_millis(100))
    }

    /// [`Self::wait_for_http_ok`], asking every `poll` (short polls time a cold start closely).
    pub fn poll_http_ok(
        &mut self,
        url: &str,
        timeout: Duration,
        poll: Duration,
    ) -> anyhow::Result<()> {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_running()?;
            if agent.get(url).call().is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not answer 200 at {url} within {timeout:?}; see {}",
                    self.name,
                    self.log.display()
                );
            }
            thread::sleep(poll);
        }
    }

    /// Fails with the end of the log when the process has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            let text = fs::read_to_string(&self.log).unwrap_or_default();
            bail!(
                "{} exited ({status}); end of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&text)
            );
        }
        Ok(())
    }

    /// Sends SIGTERM, waits up to `grace`, then kills the process and any children it left.
    pub fn terminate(&mut self, grace: Duration) -> anyhow::Result<()> {
        let pid = self.pid();
        if self.child.try_wait()?.is_none() {
            let _ = kill(as_pid(pid), Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while self.child.try_wait()?.is_none() {
                if Instant::now() >= deadline {
                    // SIGKILL gives no chance to stop workers (nginx): end them too.
                    for orphan in children_of(pid) {
                        let _ = kill(as_pid(orphan), Signal::SIGKILL);
                    }
                    let _ = self.child.kill();
                    self.child.wait()?;
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        self.ledger.remove(pid)?;
        Ok(())
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = self.terminate(STOP_GRACE);
    }
}

/// The last lines of a log, for error messages.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn as_pid(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

/// Whether `pid` is a running process (not a zombie waiting to be reaped).
#[cfg(test)]
pub fn is_alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z')
}

/// The pids whose parent is `parent`, from /proc.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|s| s.parent == parent))
        .collect()
}

/// The fields of /proc/PID/stat the supervisor needs.
struct ProcStat {
    /// `Z` once the process has exited and waits for its parent to reap it.
    state: char,
    parent: u32,
    /// Start time in clock ticks since boot: with the pid, identifies one process.
    start: u64,
}

/// Whether the process `pid` that started at `start` still runs.
fn runs(pid: u32, start: u64) -> bool {
    stat(pid).is_some_and(|s| s.start == start && s.state != 'Z')
}

fn stat(pid: u32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields restart after the last ')'.
    let fields: Vec<&str> = text.get(text.rfind(')')? + 2..)?.split(' ').collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Resident memory of a process in bytes (`VmRSS` of /proc/PID/status).
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// The file listing the processes a target started (`pid start-time` per line), so that a run
/// killed before it could stop them does not leave them running into the next.
#[derive(Clone, Debug)]
pub struct Ledger {
    path: PathBuf,
}

impl Ledger {
    /// The ledger at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Ends every process still running from an earlier run; returns how many there were.
    pub fn reap(&self) -> anyhow::Result<usize> {
        let mut ended = 0;
        for (pid, start) in self.entries() {
            if runs(pid, start) {
                for orphan in children_of(pid) {
                    let _ = kill(as_pid(orphan), Signal::SIGTERM);
                }
                let _ = kill(as_pid(pid), Signal::SIGTERM);
                let deadline = Instant::now() + STOP_GRACE;
                while runs(pid, start) && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(50));
                }
                if runs(pid, start) {
                    let _ = kill(as_pid(pid), Signal::SIGKILL);
                }
                ended += 1;
            }
        }
        if self.path.exists() {
            fs::remove_file(&self.path)
                .with_context(|| format!("removing {}", self.path.display()))?;
        }
        Ok(ended)
    }

    fn entries(&self) -> Vec<(u32, u64)> {
        fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (pid, start) = line.split_once(' ')?;
                Some((pid.parse().ok()?, start.parse().ok()?))
            })
            .collect()
    }

    fn add(&self, pid: u32) -> anyhow::Result<()> {
        let start = stat(pid).map_or(0, |s| s.start);
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        writeln!(file, "{pid} {start}")?;
        Ok(())
    }

    fn remove(&self, pid: u32) -> anyhow::Result<()> {
        let kept: Vec<String> = self
            .entries()
            .into_iter()
            .filter(|&(p, _)| p != pid)
            .map(|(p, s)| format!("{p} {s}\n"))
            .collect();
        if self.path.exists() {
            fs::write(&self.path, kept.concat())
                .with_context(|| format!("writing {}", self.path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminate_stops_the_child_and_clears_the_ledger() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = Ledger::new(dir.path().join("children"));
        let mut sleep = Command::new("sleep");
        sleep.arg("60");
        let mut child = Supervised::spawn("sleep", sleep, &dir.path().join("sleep.log"), &ledger)
            .expect("spawn sleep");
        let pid = child.pid();
        assert!(is_alive(pid));
        assert_eq!(ledger.entries().len(), 1);
        child.terminate(Duration::from_secs(5)).expect("terminate");
        assert!(stat(pid).is_none(), "pid {pid} still exists");
        assert!(ledger.entries().is_empty());
    }

    #[test]
    fn reap_ends_processes_a_killed_run_left() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = Ledger::new(dir.path().join("children"));
        let mut sleep = Command::new("sleep");
        sleep.arg("60");
        let child = Supervised::spawn("sleep", sleep, &dir.path().join("sleep.log"), &ledger)
            .expect("spawn sleep");
        let pid = child.pid();
        // A run that dies without stopping its children: nothing runs Drop.
        std::mem::forget(child);
        assert_eq!(ledger.reap().expect("reap"), 1);
        // What is left is at most a zombie, until this test process (its parent) reaps it.
        assert!(
            stat(pid).is_none_or(|s| s.state == 'Z'),
            "pid {pid} still runs"
        );
    }

    #[test]
    fn wait_for_log_reports_an_early_exit_with_the_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = Ledger::new(dir.path().join("children"));
        let mut fail = Command::new("sh");
        fail.args(["-c", "echo boom; exit 3"]);
        let mut child = Supervised::spawn("fail", fail, &dir.path().join("fail.log"), &ledger)
            .expect("spawn sh");
        let error = child
            .wait_for_log(Duration::from_secs(5), |line| {
                line.strip_prefix("ready").map(str::to_owned)
            })
            .map(|_| ())
            .expect_err("never ready");
        let message = format!("{error:#}");
        assert!(message.contains("fail exited"), "{message}");
        assert!(message.contains("boom"), "{message}");
    }
}
