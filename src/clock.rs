//! The one wall clock: every timestamp the broker writes or compares (record times,
//! retention, expiry, transaction timeouts) comes from here, so tests and callers agree.

/// Milliseconds since the Unix epoch; 0 if the system clock is before it.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
