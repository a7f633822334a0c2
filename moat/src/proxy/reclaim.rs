//! Giving memory back to the system after connections close.
//!
//! glibc's malloc keeps the pages it was given back for reuse: after a burst of 1,000
//! intercepted connections (about 43 KiB each: two TLS sessions and their buffers) close, the
//! proxy has about 2 MiB allocated but an RSS still at the burst's peak, 53 MiB, for as long as it
//! lives (the soak of RELIABILITY.md). A proxy that runs beside an agent all day on a laptop should
//! not keep the high-water mark of its busiest minute. So the first connection to close after a
//! quiet spell arms a timer; when it fires, the allocator returns its free pages
//! (`malloc_trim(0)`, which also releases free pages inside each arena, not only at the top).
//!
//! A trim of 40 MiB of free pages took about 5 ms here, on a blocking thread, so under constant
//! churn the cost is at most one such call per [`RECLAIM_DELAY`]. Other allocators and platforms
//! give memory back on their own, or differently: there this is a no-op.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long after a connection closes the proxy gives freed memory back: long enough that a
/// client reconnecting at once reuses the pages, short enough that RSS follows load.
pub const RECLAIM_DELAY: Duration = Duration::from_secs(2);

/// Arms one trim at a time.
#[derive(Default)]
pub(crate) struct Reclaimer {
    armed: AtomicBool,
}

impl Reclaimer {
    /// A connection ended: its memory was freed, but not given back yet.
    pub fn connection_closed(self: &Arc<Self>) {
        if !TRIMS || self.armed.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.armed.store(false, Ordering::Release);
            return;
        };
        let this = Arc::clone(self);
        runtime.spawn(async move {
            tokio::time::sleep(RECLAIM_DELAY).await;
            // Disarmed before the trim: a connection closing during it arms the next one.
            this.armed.store(false, Ordering::Release);
            let _ = tokio::task::spawn_blocking(|| {
                let started = std::time::Instant::now();
                trim();
                tracing::trace!(elapsed = ?started.elapsed(), "freed memory given back");
            })
            .await;
        });
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIMS: bool = true;

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
const TRIMS: bool = false;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "malloc_trim(3)")]
fn trim() {
    // SAFETY: malloc_trim takes each arena's lock and only returns pages that are free; it
    // touches no memory the program holds.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn many_closes_arm_one_trim_and_it_disarms_after_the_delay() {
        let reclaimer = Arc::new(Reclaimer::default());
        for _ in 0..100 {
            reclaimer.connection_closed();
        }
        assert_eq!(reclaimer.armed.load(Ordering::Acquire), TRIMS);
        tokio::time::sleep(RECLAIM_DELAY + Duration::from_millis(10)).await;
        // Let the trim task run past its sleep.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!reclaimer.armed.load(Ordering::Acquire));
        // The next close arms the next trim.
        reclaimer.connection_closed();
        assert_eq!(reclaimer.armed.load(Ordering::Acquire), TRIMS);
    }

    #[test]
    fn without_a_runtime_nothing_is_armed() {
        let reclaimer = Arc::new(Reclaimer::default());
        reclaimer.connection_closed();
        assert!(!reclaimer.armed.load(Ordering::Acquire));
    }
}
