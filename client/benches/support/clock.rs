//! The clock of the benchmarks (shared by the client's and the exporter's bench binaries).
//!
//! These benchmarks run on small machines that other people use at the same time. A thread
//! that waits for a core accumulates wall time without doing anything, so by default a
//! benchmark reads the calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`, user + system),
//! which only advances while the thread runs. `COORDMETRICS_BENCH_CLOCK=wall` measures wall
//! time instead, which is right on an idle machine and for anything that waits for I/O.

use std::time::{Duration, Instant};

use cpu_time::ThreadTime;

/// Which clock a measurement reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// The calling thread's CPU time.
    ThreadCpu,
    /// Wall time.
    Wall,
}

/// A started measurement.
#[derive(Clone, Copy, Debug)]
pub enum Started {
    ThreadCpu(ThreadTime),
    Wall(Instant),
}

impl Clock {
    /// The clock chosen by `COORDMETRICS_BENCH_CLOCK` (`cpu`, the default, or `wall`).
    pub fn from_env() -> Self {
        match std::env::var("COORDMETRICS_BENCH_CLOCK").as_deref() {
            Ok("wall") => Self::Wall,
            _ => Self::ThreadCpu,
        }
    }

    pub fn start(self) -> Started {
        match self {
            Self::ThreadCpu => Started::ThreadCpu(ThreadTime::now()),
            Self::Wall => Started::Wall(Instant::now()),
        }
    }

    /// Runs `operation` `iterations` times; the time it took on this clock.
    #[inline(always)]
    pub fn time<O: FnMut()>(self, iterations: u64, operation: &mut O) -> Duration {
        let started = self.start();
        repeat(iterations, operation);
        started.elapsed()
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::ThreadCpu => "thread CPU time (COORDMETRICS_BENCH_CLOCK=wall for wall time)",
            Self::Wall => "wall time",
        }
    }
}

/// The timed loop, one copy per operation and out of line: every library's operation is
/// compiled into a loop of its own, and the compiler inlines it there or not on the same terms.
#[inline(never)]
fn repeat<O: FnMut()>(iterations: u64, operation: &mut O) {
    for _ in 0..iterations {
        operation();
    }
}

impl Started {
    pub fn elapsed(self) -> Duration {
        match self {
            Self::ThreadCpu(start) => start.elapsed(),
            Self::Wall(start) => start.elapsed(),
        }
    }
}
