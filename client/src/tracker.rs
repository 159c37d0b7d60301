//! Timing one execution: [`Tracker`], and the guard that times a future.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::coordinator::{add_owned, record_into, Coordinator};

/// How often, at most, a thread publishes its process's resident memory and CPU time: when
/// a tracker it completes finds the last publication older than this.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);

thread_local! {
    /// When the calling thread next publishes its process's gauges.
    static GAUGES_DUE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Times one execution of a [`Coordinator`]; records it when dropped.
///
/// `Tracker<'_>` borrows its coordinator (the fast path, [`Coordinator::track`]);
/// [`OwnedTracker`] owns a clone of the handle ([`Coordinator::track_owned`],
/// [`crate::Collector::track_coordinator`]) for executions that outlive the borrow.
#[derive(Debug)]
#[must_use = "a tracker records when it is dropped: bind it to a variable (`let _t = ...`)"]
pub struct Tracker<'a> {
    coordinator: Handle<'a>,
    start: Option<Instant>,
}

/// A tracker that owns its coordinator handle.
pub type OwnedTracker = Tracker<'static>;

/// The coordinator a tracker records into.
#[derive(Debug)]
pub(crate) enum Handle<'a> {
    Borrowed(&'a Coordinator),
    Owned(Coordinator),
}

impl std::ops::Deref for Handle<'_> {
    type Target = Coordinator;

    #[inline]
    fn deref(&self) -> &Coordinator {
        match self {
            Self::Borrowed(coordinator) => coordinator,
            Self::Owned(coordinator) => coordinator,
        }
    }
}

/// How an execution ended.
#[derive(Clone, Copy, Debug)]
enum Outcome<'m> {
    Succeeded,
    Failed,
    /// Failed, with a message for the error ring.
    FailedWith(&'m str),
}

impl<'a> Tracker<'a> {
    /// A tracker started now (the coordinator has counted the execution in flight).
    #[inline]
    pub(crate) fn start(coordinator: Handle<'a>) -> Self {
        Self { coordinator, start: Some(Instant::now()) }
    }

    /// Records the execution as failed, with `message` in the error ring; returns the
    /// duration recorded.
    pub fn fail(mut self, message: &str) -> Duration {
        self.complete(Outcome::FailedWith(message))
    }

    /// Records the execution now, successful or not; returns the duration recorded (for a
    /// caller that keeps its own record of the execution, without a clock read of its own).
    pub fn finish(mut self, success: bool) -> Duration {
        self.complete(if success { Outcome::Succeeded } else { Outcome::Failed })
    }

    /// Time since the tracker started.
    pub fn elapsed(&self) -> Duration {
        self.start.map_or(Duration::ZERO, |s| s.elapsed())
    }

    /// Records the execution once: the in-flight count goes down, the duration and outcome
    /// go in; a failure's message goes to the error ring.
    #[inline]
    fn complete(&mut self, outcome: Outcome<'_>) -> Duration {
        let Some(start) = self.start.take() else { return Duration::ZERO };
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(start);
        match outcome {
            Outcome::FailedWith(message) => {
                self.coordinator.abandon_execution();
                self.coordinator.record_failure(elapsed, message);
            }
            Outcome::Succeeded | Outcome::Failed => {
                if let Some((_, block)) = self.coordinator.block() {
                    add_owned(block.in_flight(), 1u64.wrapping_neg());
                    record_into(block, elapsed, matches!(outcome, Outcome::Succeeded));
                }
            }
        }
        // The clock was read anyway: once a second, publish the process's gauges.
        if GAUGES_DUE.with(Cell::get).is_none_or(|due| now >= due) {
            GAUGES_DUE.with(|due| due.set(Some(now + GAUGE_INTERVAL)));
            self.coordinator.refresh_gauges();
        }
        elapsed
    }
}

impl Drop for Tracker<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.start.is_some() {
            let outcome = if std::thread::panicking() { Outcome::FailedWith("panicked") } else { Outcome::Succeeded };
            self.complete(outcome);
        }
    }
}

/// Fails the tracker it holds with "cancelled" if dropped before [`CancelGuard::finish`]
/// ("panicked" if dropped while the thread unwinds).
pub(crate) struct CancelGuard<'a>(pub(crate) Option<Tracker<'a>>);

impl CancelGuard<'_> {
    pub(crate) fn finish(mut self) {
        if let Some(tracker) = self.0.take() {
            tracker.finish(true);
        }
    }
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        // While unwinding, dropping the tracker records the panic ("panicked"), which is what
        // ended the future: it was not cancelled.
        if let Some(tracker) = self.0.take().filter(|_| !std::thread::panicking()) {
            tracker.fail("cancelled");
        }
    }
}
