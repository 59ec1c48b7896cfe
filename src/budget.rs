//! A process-wide memory budget for request bodies.
//!
//! The body cap bounds one request; this bounds all of them together, so a
//! burst of large batches from valid tokens cannot push the process past its
//! memory limit. Each request holds a [`Reservation`] from the moment its
//! body is read until its response is built:
//!
//! - before reading: the declared `Content-Length`, or the whole body cap
//!   when the length is not declared (chunked HTTP/1.1, some HTTP/2 clients);
//! - after reading and decompressing: [`CHARGE_FACTOR`] × the decompressed
//!   size, which covers the raw bytes, the decoded batch and the re-encoded
//!   body that is kept for retries.
//!
//! A request that cannot get its share within the wait gets a retryable 503
//! (`overloaded`, with `Retry-After`), so exporters keep their spans and try
//! again; nothing is buffered beyond the budget. Accounting is in KiB units
//! of a tokio semaphore; one request never asks for more than the whole
//! budget, so a single batch at the cap always fits on an idle proxy.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Charge per decompressed body byte once the body is read: the bytes, the
/// decoded batch, the re-encoded body.
pub const CHARGE_FACTOR: u64 = 3;

/// The shared budget.
#[derive(Debug)]
pub struct MemoryBudget {
    sem: Arc<Semaphore>,
    total_kib: u32,
    in_use: Gauge,
}

/// Budget held by one request; released on drop.
#[derive(Debug)]
pub struct Reservation {
    permit: OwnedSemaphorePermit,
    in_use: Gauge,
}

/// The budget had no room within the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("memory budget exhausted ({wanted_kib} KiB wanted, {total_kib} KiB total)")]
pub struct Overloaded {
    /// What the request asked for.
    pub wanted_kib: u32,
    /// The whole budget.
    pub total_kib: u32,
}

impl MemoryBudget {
    /// A budget of `total_bytes` (at least 1 KiB), reporting bytes in use
    /// through `in_use`.
    pub fn new(total_bytes: u64, in_use: Gauge) -> Self {
        let total_kib = u32::try_from(total_bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Self {
            sem: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            in_use,
        }
    }

    /// KiB charged for `bytes`, never more than the whole budget.
    fn kib(&self, bytes: u64) -> u32 {
        u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_kib)
    }

    /// Reserve room for `bytes`, waiting at most `wait`.
    pub async fn reserve(&self, bytes: u64, wait: Duration) -> Result<Reservation, Overloaded> {
        let kib = self.kib(bytes);
        let permit = self.acquire(kib, wait).await?;
        self.in_use.inc_by(i64::from(kib) * 1024);
        Ok(Reservation {
            permit,
            in_use: self.in_use.clone(),
        })
    }

    /// Resize `held` to cover `bytes`: shrinking returns the surplus at once,
    /// growing waits at most `wait` for the difference.
    pub async fn resize(
        &self,
        held: &mut Reservation,
        bytes: u64,
        wait: Duration,
    ) -> Result<(), Overloaded> {
        let want = self.kib(bytes);
        let have = u32::try_from(held.permit.num_permits()).unwrap_or(u32::MAX);
        if want < have {
            if let Some(surplus) = held.permit.split((have - want) as usize) {
                self.in_use.dec_by(i64::from(have - want) * 1024);
                drop(surplus);
            }
        } else if want > have {
            let more = self.acquire(want - have, wait).await?;
            held.permit.merge(more);
            self.in_use.inc_by(i64::from(want - have) * 1024);
        }
        Ok(())
    }

    async fn acquire(&self, kib: u32, wait: Duration) -> Result<OwnedSemaphorePermit, Overloaded> {
        let overloaded = Overloaded {
            wanted_kib: kib,
            total_kib: self.total_kib,
        };
        // Fast path without a timer; the semaphore is fair, so a large
        // request waiting is not starved by a stream of small ones.
        if let Ok(p) = self.sem.clone().try_acquire_many_owned(kib) {
            return Ok(p);
        }
        match tokio::time::timeout(wait, self.sem.clone().acquire_many_owned(kib)).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(overloaded),
        }
    }

    /// Bytes currently reserved.
    pub fn in_use_bytes(&self) -> u64 {
        let free = self.sem.available_permits() as u64;
        (u64::from(self.total_kib) - free.min(u64::from(self.total_kib))) * 1024
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let kib = i64::try_from(self.permit.num_permits()).unwrap_or(i64::MAX);
        self.in_use.dec_by(kib * 1024);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_WAIT: Duration = Duration::from_millis(0);

    #[tokio::test]
    async fn reservations_are_bounded_and_released_on_drop() {
        let gauge = Gauge::default();
        let b = MemoryBudget::new(100 * 1024, gauge.clone());
        let a = b.reserve(60 * 1024, NO_WAIT).await.expect("fits");
        assert_eq!(gauge.get(), 60 * 1024);
        let err = b
            .reserve(50 * 1024, NO_WAIT)
            .await
            .expect_err("over budget");
        assert_eq!(err.wanted_kib, 50);
        assert_eq!(err.total_kib, 100);
        drop(a);
        assert_eq!(gauge.get(), 0);
        assert_eq!(b.in_use_bytes(), 0);
        b.reserve(50 * 1024, NO_WAIT)
            .await
            .expect("fits after release");
    }

    #[tokio::test]
    async fn one_request_never_asks_for_more_than_everything() {
        let b = MemoryBudget::new(10 * 1024, Gauge::default());
        let r = b
            .reserve(u64::MAX, NO_WAIT)
            .await
            .expect("clamped to total");
        assert_eq!(b.in_use_bytes(), 10 * 1024);
        drop(r);
    }

    #[tokio::test]
    async fn resize_shrinks_at_once_and_grows_within_budget() {
        let gauge = Gauge::default();
        let b = MemoryBudget::new(100 * 1024, gauge.clone());
        let mut r = b.reserve(80 * 1024, NO_WAIT).await.expect("fits");
        b.resize(&mut r, 10 * 1024, NO_WAIT).await.expect("shrink");
        assert_eq!(b.in_use_bytes(), 10 * 1024);
        assert_eq!(gauge.get(), 10 * 1024);
        let other = b.reserve(85 * 1024, NO_WAIT).await.expect("room freed");
        b.resize(&mut r, 20 * 1024, NO_WAIT)
            .await
            .expect_err("no room to grow");
        assert_eq!(
            b.in_use_bytes(),
            95 * 1024,
            "a failed grow holds nothing extra"
        );
        drop(other);
        b.resize(&mut r, 20 * 1024, NO_WAIT).await.expect("grow");
        assert_eq!(gauge.get(), 20 * 1024);
        drop(r);
        assert_eq!(gauge.get(), 0);
    }

    #[tokio::test]
    async fn a_waiting_request_gets_room_when_another_finishes() {
        let b = Arc::new(MemoryBudget::new(10 * 1024, Gauge::default()));
        let held = b.reserve(10 * 1024, NO_WAIT).await.expect("fits");
        let b2 = b.clone();
        let waiter =
            tokio::spawn(async move { b2.reserve(5 * 1024, Duration::from_secs(30)).await });
        tokio::task::yield_now().await;
        drop(held);
        let r = waiter.await.expect("join").expect("room after release");
        drop(r);
    }
}
