//! The process's memory allocator and how it takes memory from the kernel.
//!
//! The ingest path allocates and frees many small strings per report; under glibc's allocator
//! that was an eighth of its CPU time (malloc, free, consolidation). mimalloc is set here, in the
//! library, so the binary, the tests and the benchmarks all run on the allocator production runs
//! on.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's own switch for transparent huge pages; when it is set, its value stands.
const ALLOCATOR_THP_VARIABLE: &str = "MIMALLOC_ALLOW_THP";

/// Asks the kernel not to back this process's memory with transparent huge pages, unless
/// `MIMALLOC_ALLOW_THP` says otherwise; returns whether they are off.
///
/// mimalloc asks for huge pages (`madvise(MADV_HUGEPAGE)`), so every first touch of a fresh
/// 2 MiB region makes the kernel zero all of it. Under batched ingest that zeroing was a seventh
/// of the ingest threads' CPU (`clear_page_erms` in the profile) and a third of the process's
/// system time: the batches' large, short-lived buffers keep reaching fresh regions. With 4 KiB
/// pages only what is touched is zeroed. Call it first thing in `main`: memory already faulted
/// in keeps its pages.
pub fn prefer_small_pages() -> bool {
    if std::env::var_os(ALLOCATOR_THP_VARIABLE).is_some() {
        return false;
    }
    disable_transparent_huge_pages()
}

#[cfg(target_os = "linux")]
fn disable_transparent_huge_pages() -> bool {
    match rustix::thread::disable_transparent_huge_pages(true) {
        Ok(()) => true,
        Err(error) => {
            // Only a kernel without the prctl (before 3.15) says no; the process runs as before.
            tracing::debug!(%error, "transparent huge pages stay as the kernel sets them");
            false
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn disable_transparent_huge_pages() -> bool {
    false
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn the_process_stops_taking_transparent_huge_pages() {
        if std::env::var_os(super::ALLOCATOR_THP_VARIABLE).is_some() {
            return;
        }
        assert!(super::prefer_small_pages());
        assert_eq!(
            rustix::thread::transparent_huge_pages_are_disabled().ok(),
            Some(true)
        );
    }
}
