//! Disk calls made from async code.
//!
//! Logs are read and written with plain blocking system calls on whichever thread asks,
//! the async runtime's workers included. On a healthy disk a call is served by the page
//! cache in microseconds, and handing each one to another thread would cost more than the
//! call itself (tokio's `block_in_place` measured about 12 µs a call on the 2-core
//! machine). On a slow or failing disk one call can take a second, and a handful of them
//! hold every worker: the node then stops answering Raft, broker heartbeats and the
//! clients of every other partition, not only the ones on the slow disk.
//!
//! So each call is timed. Once one takes longer than [`SLOW_CALL`], every call for the
//! next [`SLOW_SPELL`] runs through `block_in_place`, which hands the worker's other tasks
//! to a fresh thread before blocking. A slow disk then costs at most one blocked call per
//! worker before the node notices, and slows only the requests that touch it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, RuntimeFlavor};

/// A call at least this slow did not come from the page cache, and starts a slow spell.
/// Not lower: on the 2-core machine, with three nodes and a bench client sharing the
/// cores, the scheduler alone kept page-cache appends from finishing for 28-48 ms, and
/// at a 20 ms threshold every node of the fairness bench spent its whole run handing
/// calls over (context switches went from 1% to 6% of the brokers' CPU). A disk that is
/// really slow takes hundreds of milliseconds a call (the chaos suite's: 0.5 s and more).
pub const SLOW_CALL: Duration = Duration::from_millis(100);

/// How long after a slow call disk calls keep leaving the workers.
pub const SLOW_SPELL: Duration = Duration::from_secs(30);

/// Milliseconds since [`epoch`] until which calls leave the workers (0: never).
static SLOW_UNTIL_MS: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Runs `f`, a call that may block on the disk (including on a lock held by another
/// disk call), off the async workers while the disk has recently been slow.
pub fn call<T>(f: impl FnOnce() -> T) -> T {
    if in_slow_spell() && on_multi_thread_runtime() {
        tokio::task::block_in_place(|| timed(f))
    } else {
        timed(f)
    }
}

/// Runs `f`, a call that waits for the disk by design (an fsync), off the async
/// workers always: it takes milliseconds even on a healthy disk, next to which the
/// hand-over costs nothing.
pub fn off_workers<T>(f: impl FnOnce() -> T) -> T {
    if on_multi_thread_runtime() {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Whether a disk call was slow within the last [`SLOW_SPELL`].
fn in_slow_spell() -> bool {
    let until = SLOW_UNTIL_MS.load(Ordering::Relaxed);
    until != 0 && now_ms() < until
}

fn timed<T>(f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = f();
    let took = started.elapsed();
    if took >= SLOW_CALL {
        note_slow_call(took);
    }
    result
}

fn note_slow_call(took: Duration) {
    let was_slow = in_slow_spell();
    let until = now_ms().saturating_add(SLOW_SPELL.as_millis() as u64);
    SLOW_UNTIL_MS.fetch_max(until, Ordering::Relaxed);
    if !was_slow {
        tracing::warn!(
            took_ms = took.as_millis() as u64,
            "a disk call was slow: disk calls leave the async workers for the next {} s",
            SLOW_SPELL.as_secs()
        );
    }
}

/// `block_in_place` panics on a current-thread runtime; there (tests, tools) the call
/// simply blocks, as it would anyway.
fn on_multi_thread_runtime() -> bool {
    Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_call_starts_a_spell_and_calls_still_return_their_value() {
        assert_eq!(call(|| 7), 7);
        call(|| std::thread::sleep(SLOW_CALL + Duration::from_millis(5)));
        assert!(in_slow_spell());
        assert_eq!(call(|| "still answered"), "still answered");
    }

    /// With both workers of a two-worker runtime inside slow calls, a third task still
    /// runs: the slow calls gave their workers away.
    #[test]
    fn slow_calls_do_not_hold_the_runtime_workers() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::{mpsc, Arc, Mutex};

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            // Start the spell first, as the first slow call of a slow disk would.
            call(|| std::thread::sleep(SLOW_CALL + Duration::from_millis(5)));
            let (release, gate) = mpsc::channel::<()>();
            let gate = Arc::new(Mutex::new(gate));
            let inside = Arc::new(AtomicUsize::new(0));
            let blockers: Vec<_> = (0..2)
                .map(|_| {
                    let (gate, inside) = (Arc::clone(&gate), Arc::clone(&inside));
                    tokio::spawn(async move {
                        call(|| {
                            inside.fetch_add(1, Ordering::SeqCst);
                            // One holds the gate's lock while it waits, the other waits
                            // for the lock: both block their threads.
                            let _ = gate.lock().map(|g| g.recv_timeout(Duration::from_secs(10)));
                        })
                    })
                })
                .collect();
            let deadline = Instant::now() + Duration::from_secs(5);
            while inside.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Waited for on this thread: the runtime's own timers need a free worker.
            let (answer, answered) = mpsc::channel();
            tokio::spawn(async move { answer.send(42) });
            let answered = answered.recv_timeout(Duration::from_secs(2));
            let _ = release.send(());
            let _ = release.send(());
            for b in blockers {
                b.await.expect("blocker");
            }
            assert!(
                answered == Ok(42),
                "a task starved behind two slow disk calls"
            );
        });
    }
}
