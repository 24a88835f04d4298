//! The memory of requests read and not yet handled, bounded across all connections
//! (Kafka's `queued.max.request.bytes`).
//!
//! A connection takes a request's size from the pool once it has read the 4-byte length
//! and before it allocates the frame; when the pool cannot spare it, the connection stops
//! reading (the client meets TCP backpressure) until handled requests give memory back.
//! The reservation is released when the request has been handled and its bytes dropped.
//!
//! Waiters are not served in order: a small request goes ahead of a large one that does
//! not fit yet. Requests of at most `SMALL_REQUEST` bytes (everything but the largest
//! produce requests: a batch is at most `message.max.bytes`, about 1 MiB, by default) may
//! also use the pool's last `reserve` bytes, which larger frames may not take: clients that
//! announce large frames and send them slowly (or never) cannot hold up ordinary producers,
//! consumers and group members.
//!
//! No files.

use crate::metrics::METRICS;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// Requests up to this size may use the reserve.
pub const SMALL_REQUEST: usize = 1 << 20;

/// A shared, cheap-to-clone handle on the pool.
#[derive(Clone, Debug)]
pub struct RequestMemory {
    inner: Option<Arc<Pool>>,
}

#[derive(Debug)]
struct Pool {
    capacity: usize,
    /// The bytes large frames must leave free.
    reserve: usize,
    available: AtomicUsize,
    /// Woken whenever memory is given back.
    released: Notify,
}

/// Bytes taken from the pool, given back when dropped.
#[derive(Debug)]
pub struct Lease {
    pool: Option<Arc<Pool>>,
    bytes: usize,
}

impl RequestMemory {
    /// `capacity` None: unbounded (Kafka's `queued.max.request.bytes` of -1). `max_frame` is
    /// the largest frame a connection reads (`socket.request.max.bytes`), which must always
    /// fit outside the reserve.
    pub fn new(capacity: Option<usize>, max_frame: usize) -> Self {
        let inner = capacity.map(|capacity| {
            let reserve = (capacity / 8).min(capacity.saturating_sub(max_frame));
            METRICS.request_memory_limit.set(capacity as i64);
            Arc::new(Pool {
                capacity,
                reserve,
                available: AtomicUsize::new(capacity),
                released: Notify::new(),
            })
        });
        RequestMemory { inner }
    }

    /// Takes `bytes` at once if the pool has them.
    pub fn try_take(&self, bytes: usize) -> Option<Lease> {
        let Some(pool) = &self.inner else {
            return Some(Lease { pool: None, bytes });
        };
        let bytes = bytes.min(pool.capacity);
        let floor = if bytes <= SMALL_REQUEST {
            0
        } else {
            pool.reserve
        };
        pool.available
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                a.checked_sub(bytes).filter(|left| *left >= floor)
            })
            .ok()?;
        METRICS.request_memory_used.inc_by(bytes as i64);
        Some(Lease {
            pool: Some(pool.clone()),
            bytes,
        })
    }

    /// Takes `bytes`, waiting for handled requests to give memory back if need be. A frame
    /// larger than the whole pool takes the whole pool.
    pub async fn take(&self, bytes: usize) -> Lease {
        let Some(pool) = &self.inner else {
            return Lease { pool: None, bytes };
        };
        let mut counted = false;
        loop {
            // Registered before the check, so a release in between is not missed.
            let released = pool.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(lease) = self.try_take(bytes) {
                return lease;
            }
            if !counted {
                counted = true;
                METRICS.request_memory_waits.inc();
                tracing::debug!(
                    bytes,
                    "request memory exhausted; not reading until some is freed"
                );
            }
            released.await;
        }
    }
}

impl Lease {
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.available.fetch_add(self.bytes, Ordering::AcqRel);
            METRICS.request_memory_used.dec_by(self.bytes as i64);
            pool.released.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_request_waits_until_memory_is_given_back() {
        let pool = RequestMemory::new(Some(1000), 1000);
        let first = pool.take(900).await;
        assert!(pool.try_take(200).is_none());
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.take(200).await.bytes() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(first);
        assert_eq!(waiting.await.expect("joined"), 200);
    }

    #[tokio::test]
    async fn small_requests_pass_a_large_one_that_does_not_fit() {
        let pool = RequestMemory::new(Some(16 << 20), 16 << 20);
        let held = pool.take(10 << 20).await;
        let large = tokio::spawn({
            let pool = pool.clone();
            async move { pool.take(8 << 20).await.bytes() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The large one waits; smaller ones still get in.
        assert!(pool.try_take(1000).is_some());
        assert!(pool.try_take(4 << 20).is_some());
        assert!(!large.is_finished());
        drop(held);
        assert_eq!(large.await.expect("joined"), 8 << 20);
    }

    #[test]
    fn large_frames_leave_the_reserve_to_small_requests() {
        // 64 MiB pool, 4 MiB frames: the last 8 MiB are for requests of 1 MiB or less.
        let pool = RequestMemory::new(Some(64 << 20), 4 << 20);
        let large: Vec<Lease> = (0..20).map_while(|_| pool.try_take(4 << 20)).collect();
        assert_eq!(large.len(), 14);
        assert!(pool.try_take(2 << 20).is_none());
        let small: Vec<Lease> = (0..20)
            .map_while(|_| pool.try_take(SMALL_REQUEST))
            .collect();
        assert_eq!(small.len(), 8);
        assert!(pool.try_take(1).is_none());
    }

    #[test]
    fn a_frame_larger_than_the_pool_takes_all_of_it_and_unbounded_never_waits() {
        let pool = RequestMemory::new(Some(1000), 1000);
        let all = pool.try_take(5000).expect("whole pool");
        assert_eq!(all.bytes(), 1000);
        assert!(pool.try_take(1).is_none());
        let unbounded = RequestMemory::new(None, 1000);
        assert!(unbounded.try_take(usize::MAX / 2).is_some());
    }
}
