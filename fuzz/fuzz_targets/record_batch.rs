//! `strata::fuzzing::record_batch`: see its documentation for what the input means.
#![no_main]
use libfuzzer_sys::fuzz_target;

/// The broker's own allocator: a hostile length field reserves address space lazily
/// instead of aborting the process, so only memory actually touched counts (`-rss_limit_mb`).
#[global_allocator]
static ALLOC: strata::alloc::LazyLargeAlloc = strata::alloc::LazyLargeAlloc;

fuzz_target!(|data: &[u8]| strata::fuzzing::record_batch(data));
