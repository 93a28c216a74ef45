//! The worker threads the kernels run on: one pool per process, sized to the cores.
//!
//! Work on a handful of tokens stays on the calling thread (waking workers would cost more than
//! it saves); larger passes run inside the pool, where matrix products split their columns and
//! attention its (sequence, head) pairs across the workers.

use std::{
    cell::Cell,
    sync::{
        atomic::{AtomicBool, Ordering},
        OnceLock,
    },
};

static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();

/// How the kernels called on a thread use the pool.
#[derive(Clone, Copy)]
enum Keep {
    /// They split their work over the pool (on a pool thread).
    Split,
    /// They keep their work to this thread ([`serial`]).
    Serial,
    /// They keep it to this thread until the flag is set ([`serial_until`]); the flag outlives
    /// every call that can read it.
    Until(*const AtomicBool),
}

thread_local! {
    static KEEP: Cell<Keep> = const { Cell::new(Keep::Split) };
}

/// Threads a product asked to run `parallel` shares its work between here: the pool's when
/// it is [`splitting`], else one.
pub fn sharing(parallel: bool) -> usize {
    if parallel && splitting() {
        rayon::current_num_threads()
    } else {
        1
    }
}

/// Whether a kernel called here spreads its work over the pool: on a pool thread, outside
/// [`serial`], or in [`serial_until`] once its flag is set.
pub fn splitting() -> bool {
    rayon::current_thread_index().is_some()
        && match KEEP.with(Cell::get) {
            Keep::Split => true,
            Keep::Serial => false,
            // SAFETY: `serial_until` sets this only while its flag is borrowed, and puts the
            // previous value back before it returns or unwinds.
            Keep::Until(flag) => unsafe { (*flag).load(Ordering::Acquire) },
        }
}

/// Runs `f` with every kernel it calls kept on this thread: for one part of a pass whose parts
/// already keep every pool thread busy.
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    keeping(Keep::Serial, f)
}

/// As [`serial`] until `free` is set (another part of the pass is done, so its thread is free),
/// then the kernels `f` calls next split their work over the pool again: a part slowed down
/// (its thread shared with other work for a while) is finished by both threads instead of
/// keeping the other one waiting.
pub fn serial_until<R>(free: &AtomicBool, f: impl FnOnce() -> R) -> R {
    keeping(Keep::Until(free), f)
}

fn keeping<R>(keep: Keep, f: impl FnOnce() -> R) -> R {
    /// Puts the previous value back even when `f` unwinds.
    struct Restore(Keep);
    impl Drop for Restore {
        fn drop(&mut self) {
            KEEP.with(|k| k.set(self.0));
        }
    }
    let _restore = Restore(KEEP.with(|k| k.replace(keep)));
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
            let free = AtomicBool::new(false);
            serial_until(&free, || {
                assert!(!splitting(), "serial while no other part is done");
                free.store(true, Ordering::Release);
                assert!(splitting(), "split once another part is done");
            });
            assert!(splitting());
        });
    }
}
