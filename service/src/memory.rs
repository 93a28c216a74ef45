//! Memory handed back to the operating system.

/// Returns the allocator's free pages to the operating system now instead of after its purge
/// delay. Called once the models are loaded and warmed up: loading holds the weights file and
/// transient copies of every tensor, and without this they count in the idle RSS for seconds.
///
/// The binary's global allocator is mimalloc (`main.rs`); in a build that uses another, this
/// only tidies mimalloc's unused heap.
pub fn release_free_pages() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
