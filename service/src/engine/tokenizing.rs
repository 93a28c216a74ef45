//! Tokenization off the async runtime, on a fixed set of threads (one per core).
//!
//! Under overload the inference threads hold the cores and tokenizations stall. Tokio's
//! blocking pool would start a thread for each waiting request (150 seen at 1.5× capacity,
//! each with its stack and allocator heap: 200 MB more at peak), and even with the work
//! bounded by a semaphore it starts a fresh thread whenever the next job is handed out before
//! the last one's thread has gone back to idle. A pool of its own keeps the thread count fixed.

use std::{sync::OnceLock, thread, time::Instant};

use tokio::sync::{oneshot, Semaphore};

/// Why a tokenization did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its deadline passed while it waited for a thread.
    TimedOut,
    /// The pool is gone, or the job panicked.
    Closed,
}

/// Runs `job` on a tokenization thread once one is free, waiting no later than `deadline`.
pub async fn run<T, F>(deadline: Instant, job: F) -> Result<T, Refused>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let pool = pool();
    // Jobs are handed out only as threads free up, so one that times out while waiting never
    // runs, and a cancelled request's job stops holding a thread when it ends.
    let permit = tokio::time::timeout_at(deadline.into(), pool.free.acquire())
        .await
        .map_err(|_| Refused::TimedOut)?
        .map_err(|_| Refused::Closed)?;
    let (done, result) = oneshot::channel();
    pool.threads.spawn(move || {
        let _permit = permit;
        let _ = done.send(job());
    });
    result.await.map_err(|_| Refused::Closed)
}

/// Threads in the pool: one per core.
pub fn threads() -> usize {
    pool().threads.current_num_threads()
}

struct Pool {
    threads: rayon::ThreadPool,
    free: Semaphore,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let n = thread::available_parallelism().map_or(2, |n| n.get());
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("tokenize-{i}"))
            // A panicking job drops its reply sender (the caller sees `Closed`); the thread
            // lives on instead of aborting the process.
            .panic_handler(|_| tracing::error!("a tokenization panicked"))
            .build()
            .expect("tokenization threads start");
        Pool {
            threads,
            free: Semaphore::new(n),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_jobs_share_a_fixed_set_of_threads() {
        let deadline = Instant::now() + Duration::from_secs(30);
        let names: Vec<_> = futures_join((0..64).map(|_| {
            run(deadline, || {
                thread::sleep(Duration::from_millis(1));
                thread::current().name().unwrap_or_default().to_owned()
            })
        }))
        .await;
        let mut distinct: Vec<_> = names.into_iter().map(Result::unwrap).collect();
        distinct.sort();
        distinct.dedup();
        assert!(
            distinct.iter().all(|n| n.starts_with("tokenize-")),
            "{distinct:?}"
        );
        assert!(distinct.len() <= threads(), "{distinct:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_job_is_refused_and_the_pool_lives_on() {
        let deadline = Instant::now() + Duration::from_secs(30);
        let refused = run(deadline, || -> u8 { panic!("bad input") }).await;
        assert_eq!(refused, Err(Refused::Closed));
        assert_eq!(run(deadline, || 7).await, Ok(7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_past_its_deadline_while_waiting_never_runs() {
        let far = Instant::now() + Duration::from_secs(30);
        let busy: Vec<_> = (0..threads())
            .map(|_| tokio::spawn(run(far, || thread::sleep(Duration::from_millis(300)))))
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        let soon = Instant::now() + Duration::from_millis(20);
        let refused = run(soon, move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst)
        })
        .await;
        assert_eq!(refused, Err(Refused::TimedOut));
        for b in busy {
            b.await.unwrap().unwrap();
        }
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }

    /// Runs every future as its own task and gathers the outputs in order.
    async fn futures_join<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handles: Vec<_> = fs.map(tokio::spawn).collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }
}
