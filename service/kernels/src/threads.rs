//! The worker threads the kernels run on: one pool per process, sized to the cores.
//!
//! Work on a handful of tokens stays on the calling thread (waking workers would cost more than
//! it saves); larger passes run inside the pool, where matrix products split their columns and
//! attention its (sequence, head) pairs across the workers.

use std::{cell::Cell, sync::OnceLock};

static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();

thread_local! {
    /// Set inside [`serial`]: kernels called on this thread keep their work to it.
    static SERIAL: Cell<bool> = const { Cell::new(false) };
}

/// Whether a kernel called here spreads its work over the pool: on a pool thread, outside
/// [`serial`].
pub fn splitting() -> bool {
    rayon::current_thread_index().is_some() && !SERIAL.with(Cell::get)
}

/// Runs `f` with every kernel it calls kept on this thread: for one part of a pass whose parts
/// already keep every pool thread busy.
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the flag back even when `f` unwinds.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SERIAL.with(|s| s.replace(true)));
    f()
}

/// The configured size ([`crate::config`]), else the cores available.
fn default_threads() -> usize {
    crate::config::current()
        .threads
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

fn build(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("akidb-kernel-{i}"))
        .build()
        .expect("the kernel thread pool could not start")
}

/// Sizes the pool before its first use; returns the size in effect (a later call cannot resize
/// a pool already running and returns its size).
pub fn init(threads: Option<usize>) -> usize {
    POOL.get_or_init(|| build(threads.filter(|&n| n > 0).unwrap_or_else(default_threads)))
        .current_num_threads()
}

/// The pool (started on first use with [`init`]'s default).
pub fn pool() -> &'static rayon::ThreadPool {
    POOL.get_or_init(|| build(default_threads()))
}

/// Threads in the pool.
pub fn count() -> usize {
    pool().current_num_threads()
}

/// Runs `f` in the pool when `parallel`, else on the calling thread.
pub fn run<R: Send>(parallel: bool, f: impl FnOnce() -> R + Send) -> R {
    if parallel && count() > 1 {
        pool().install(f)
    } else {
        f()
    }
}

/// `f` over `x` in pieces of `chunk` floats, spread over the pool's threads when called in the
/// pool and `x` is longer than one piece; else `f(x)` on the calling thread.
pub fn for_chunks(x: &mut [f32], chunk: usize, f: impl Fn(&mut [f32]) + Send + Sync) {
    if x.len() > chunk && splitting() {
        use rayon::prelude::*;
        x.par_chunks_mut(chunk).for_each(f);
    } else {
        f(x);
    }
}

/// The parallelism to ask of `gemm` for a product of `m × n × k` multiply-adds.
pub(crate) fn gemm_parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    // Below ~1M multiply-adds a product takes tens of microseconds: splitting it costs more
    // than it saves. Outside the pool, `rayon::current_thread_index` is `None`: stay serial.
    const MIN_PARALLEL_WORK: usize = 1 << 20;
    let threads = rayon::current_num_threads();
    if m * n * k >= MIN_PARALLEL_WORK && threads > 1 && splitting() {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_split_on_pool_threads_except_inside_serial() {
        assert!(!splitting(), "outside the pool nothing splits");
        if count() < 2 {
            println!("notice: a one-thread pool runs every pass on the caller; skipped");
            return;
        }
        run(true, || {
            assert!(splitting());
            assert!(serial(|| !splitting()));
            assert!(splitting(), "the flag is put back");
            let unwound = std::panic::catch_unwind(|| serial(|| panic!("a failing part")));
            assert!(unwound.is_err());
            assert!(splitting(), "the flag is put back when a part panics");
        });
    }
}
