//! Where a server's CPU goes, by what its threads do: akidb-embed names them (`akidb-kernel-N`
//! for the kernel pool, `infer-MODEL` for a model's inference thread, `tokenize-N` for the
//! tokenization pool, `tokio-rt-worker` for the HTTP runtime), so that `/proc/PID/task/*/stat`
//! read before and after a load says how many CPU-ms per request each role cost.

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

use super::servers::{stat_cpu_seconds, stat_name, StatTimes};

/// What a thread does, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The kernel pool: matrix products, attention, activations.
    Kernels,
    /// A model's inference thread: batch formation, hand-off to the pool, pooling.
    Inference,
    /// The tokenization pool (large requests; small ones are tokenized on the runtime).
    Tokenization,
    /// The async runtime: HTTP, JSON, small requests' tokenization, responses.
    Runtime,
    /// Anything else (and threads that ended during the load).
    Other,
}

impl Role {
    /// Every role, in the order they are printed.
    const ALL: [Role; 5] = [
        Role::Kernels,
        Role::Inference,
        Role::Tokenization,
        Role::Runtime,
        Role::Other,
    ];

    /// Its name in reports (the JSON field's).
    fn name(self) -> &'static str {
        match self {
            Role::Kernels => "kernels",
            Role::Inference => "inference",
            Role::Tokenization => "tokenization",
            Role::Runtime => "runtime",
            Role::Other => "other",
        }
    }

    /// The role of a thread called `name` (its `comm`, at most 15 bytes).
    pub fn of(name: &str) -> Self {
        if name.starts_with("akidb-kernel") {
            Role::Kernels
        } else if name.starts_with("infer-") {
            Role::Inference
        } else if name.starts_with("tokenize-") {
            Role::Tokenization
        } else if name.starts_with("tokio-rt-worker") {
            Role::Runtime
        } else {
            Role::Other
        }
    }
}

/// CPU-ms per request answered, by role, over one load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuByRole {
    /// The kernel pool's.
    pub kernels: f64,
    /// The inference threads'.
    pub inference: f64,
    /// The tokenization pool's.
    pub tokenization: f64,
    /// The HTTP runtime's.
    pub runtime: f64,
    /// The rest of the process's: other threads, and threads that ended during the load.
    pub other: f64,
}

impl CpuByRole {
    fn slot(&mut self, role: Role) -> &mut f64 {
        match role {
            Role::Kernels => &mut self.kernels,
            Role::Inference => &mut self.inference,
            Role::Tokenization => &mut self.tokenization,
            Role::Runtime => &mut self.runtime,
            Role::Other => &mut self.other,
        }
    }

    fn get(mut self, role: Role) -> f64 {
        *self.slot(role)
    }

    /// One line: `kernels 0.89, runtime 0.07, …` (roles that cost nothing left out).
    pub fn describe(&self) -> String {
        Role::ALL
            .iter()
            .map(|&role| (role.name(), self.get(role)))
            .filter(|(_, ms)| *ms >= 0.005)
            .map(|(name, ms)| format!("{name} {ms:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A process's CPU seconds at one moment: the whole process's and each live thread's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThreadTimes {
    /// The process's user + system seconds (ended threads included).
    pub process: f64,
    /// Each live thread's (by thread id): its name and user + system seconds.
    pub threads: BTreeMap<u32, (String, f64)>,
}

impl ThreadTimes {
    /// Reads `/proc/PID/stat` and `/proc/PID/task/*/stat`; `None` off Linux or once the
    /// process is gone.
    pub fn read(pid: u32) -> Option<Self> {
        let proc = Path::new("/proc").join(pid.to_string());
        let process = stat_cpu_seconds(
            &std::fs::read_to_string(proc.join("stat")).ok()?,
            StatTimes::Own,
        )?;
        let mut threads = BTreeMap::new();
        for task in std::fs::read_dir(proc.join("task")).ok()?.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // A thread may end between the listing and the read.
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            if let (Some(name), Some(seconds)) =
                (stat_name(&stat), stat_cpu_seconds(&stat, StatTimes::Own))
            {
                threads.insert(tid, (name.to_string(), seconds));
            }
        }
        Some(Self { process, threads })
    }

    /// CPU-ms per request by role between `self` (before) and `after`, over `requests`
    /// answered. A thread not seen before started during the load: all its time counts. What
    /// the live threads do not account for of the process's (threads that ended) is `other`.
    pub fn per_request(&self, after: &ThreadTimes, requests: u64) -> Option<CpuByRole> {
        if requests == 0 {
            return None;
        }
        let mut split = CpuByRole::default();
        let mut named = 0.0;
        for (tid, (name, now)) in &after.threads {
            let then = self.threads.get(tid).map_or(0.0, |(_, s)| *s);
            let spent = (now - then).max(0.0);
            *split.slot(Role::of(name)) += spent;
            named += spent;
        }
        split.other += (after.process - self.process - named).max(0.0);
        // Seconds in all to milliseconds a request.
        for role in Role::ALL {
            *split.slot(role) *= 1e3 / requests as f64;
        }
        Some(split)
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::mpsc, thread};

    use super::*;

    #[test]
    fn threads_are_told_apart_by_the_names_the_server_gives_them() {
        assert_eq!(Role::of("akidb-kernel-1"), Role::Kernels);
        // `comm` keeps 15 bytes: `infer-paraphrase-MiniLM-L3-v2` reads `infer-paraphras`.
        assert_eq!(Role::of("infer-paraphras"), Role::Inference);
        assert_eq!(Role::of("tokenize-0"), Role::Tokenization);
        assert_eq!(Role::of("tokio-rt-worker"), Role::Runtime);
        assert_eq!(Role::of("akidb-embed"), Role::Other);
        assert_eq!(Role::of("python3"), Role::Other);
    }

    fn times(process: f64, threads: &[(u32, &str, f64)]) -> ThreadTimes {
        ThreadTimes {
            process,
            threads: threads
                .iter()
                .map(|&(tid, name, s)| (tid, (name.to_string(), s)))
                .collect(),
        }
    }

    #[test]
    fn each_role_gets_its_threads_time_and_ended_threads_go_to_other() {
        let before = times(
            10.0,
            &[
                (1, "akidb-embed", 1.0),
                (2, "akidb-kernel-0", 4.0),
                (3, "akidb-kernel-1", 4.0),
                (4, "tokio-rt-worker", 0.5),
                (5, "tokenize-0", 0.5),
            ],
        );
        // Thread 5 ended after 0.25 s more; thread 6 started during the load.
        let after = times(
            16.0,
            &[
                (1, "akidb-embed", 1.0),
                (2, "akidb-kernel-0", 6.0),
                (3, "akidb-kernel-1", 6.5),
                (4, "tokio-rt-worker", 1.0),
                (6, "infer-m", 0.25),
            ],
        );
        let split = before.per_request(&after, 1000).unwrap();
        assert_eq!(
            split,
            CpuByRole {
                kernels: 4.5,
                inference: 0.25,
                tokenization: 0.0,
                runtime: 0.5,
                other: 0.75,
            }
        );
        assert_eq!(
            split.describe(),
            "kernels 4.50, inference 0.25, runtime 0.50, other 0.75"
        );
        assert_eq!(before.per_request(&after, 0), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_busy_named_thread_shows_in_its_role() {
        // The thread spins until its own CPU time says 300 ms (however busy the machine), then
        // stays alive until the second read.
        let own_cpu = || {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("thread stat");
            stat_cpu_seconds(&stat, StatTimes::Own).expect("thread times")
        };
        let pid = std::process::id();
        let before = ThreadTimes::read(pid).expect("/proc/self");
        let (spun, spun_rx) = mpsc::channel();
        let (leave, leave_rx) = mpsc::channel::<()>();
        let busy = thread::Builder::new()
            .name("akidb-kernel-9".into())
            .spawn(move || {
                let mut x = 0u64;
                while own_cpu() < 0.3 {
                    for _ in 0..100_000 {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                }
                spun.send(()).unwrap();
                leave_rx.recv().ok();
                x
            })
            .unwrap();
        spun_rx.recv().unwrap();
        let after = ThreadTimes::read(pid).expect("/proc/self");
        leave.send(()).unwrap();
        busy.join().unwrap();
        // 1,000 requests: ms per request is seconds.
        let split = before.per_request(&after, 1000).unwrap();
        assert!(
            (0.29..0.5).contains(&split.kernels),
            "kernels {} s",
            split.kernels
        );
    }
}
