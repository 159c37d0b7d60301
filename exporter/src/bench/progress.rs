//! The bench's progress bar on standard error, drawn only on a terminal.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use super::Plan;

/// A progress bar of `plan` across all threads.
pub struct Progress {
    plan: Plan,
    total: Option<u64>,
    enabled: bool,
}

impl Progress {
    const WIDTH: usize = 32;

    pub fn new(plan: Plan, threads: u64) -> Self {
        let total = match plan {
            Plan::Iterations(n) => Some(n * threads),
            Plan::Duration(_) => None,
        };
        Self { plan, total, enabled: std::io::stderr().is_terminal() }
    }

    pub fn show(&mut self, elapsed: Duration, done: u64) {
        if !self.enabled {
            return;
        }
        let fraction = match (self.plan, self.total) {
            (_, Some(total)) => done as f64 / total.max(1) as f64,
            (Plan::Duration(d), None) => elapsed.as_secs_f64() / d.as_secs_f64(),
            (Plan::Iterations(_), None) => 0.0,
        }
        .clamp(0.0, 1.0);
        let filled = (fraction * Self::WIDTH as f64).round() as usize;
        let rate = done as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6;
        eprint!(
            "\r[{}{}] {:>3.0}%  {done} operations, {rate:.1} M/s",
            "#".repeat(filled),
            "-".repeat(Self::WIDTH - filled),
            fraction * 100.0
        );
        let _ = std::io::stderr().flush();
    }

    pub fn clear(&self) {
        if self.enabled {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}
