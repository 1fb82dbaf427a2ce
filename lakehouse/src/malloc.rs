//! glibc malloc settings for a query engine's allocation pattern.
//!
//! A scan task decompresses Parquet pages into buffers of a few MB and frees them
//! when it ends. With glibc's defaults a freed heap top past the trim threshold
//! goes back to the kernel at once, and buffers past the (dynamic) mmap threshold
//! are unmapped, so the next query faults every page in again, zeroed: ~700 page
//! faults and ~2 ms of CPU per point query on 1M rows, more than DataFusion spends
//! on the whole query (docs/benchmarks.md). Each arena now keeps up to
//! [`TRIM_THRESHOLD`] of free memory at its top, and buffers below
//! [`MMAP_THRESHOLD`] come from the heaps.
//!
//! glibc's own `MALLOC_*_` variables still win: if any is set, nothing here is applied.

use tracing::debug;

/// glibc's largest dynamic mmap threshold on 64-bit targets: set once, so that it
/// no longer moves (and takes the trim threshold with it).
const MMAP_THRESHOLD: libc::c_int = 32 << 20;
/// Free memory an arena keeps at its top. A point query churns ~3 MB, a scan of
/// TPC-H SF1's lineitem a few tens: 16 MiB keeps the small queries fault-free
/// while a large query's memory is still given back.
const TRIM_THRESHOLD: libc::c_int = 16 << 20;
/// Extra memory taken whenever a heap grows, so that growth is rare.
const TOP_PAD: libc::c_int = 4 << 20;

/// Applies the settings (process-wide, from any thread).
pub(crate) fn tune() {
    let overridden = std::env::vars_os().any(|(key, _)| {
        key.to_str()
            .is_some_and(|k| k.starts_with("MALLOC_") && k.ends_with('_'))
    });
    if overridden {
        debug!("glibc malloc settings from the environment kept");
        return;
    }
    for (param, value) in [
        (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (libc::M_TOP_PAD, TOP_PAD),
    ] {
        // SAFETY: mallopt only changes malloc's tunables; it is thread-safe and
        // any value in range is valid.
        let applied = unsafe { libc::mallopt(param, value) };
        if applied != 1 {
            debug!(param, value, "mallopt refused a setting");
        }
    }
}
