//! What `/proc` says about a process: its state, start time, resident memory and CPU time.
//! Liveness of writers is not judged from here (see the crate's `liveness` module): `/proc`
//! shows only the processes of the reader's own pid namespace.

use std::time::Duration;

/// The fields of `/proc/PID/stat` that coordmetrics uses (for the Python binding's view of its
/// own process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessStat {
    /// The one-letter state (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Start time in clock ticks since boot: with the pid, it names one process forever.
    pub start_time: u64,
    /// User plus system CPU time consumed so far.
    pub cpu_time: Duration,
    /// Resident set size in bytes (0 if unknown).
    pub rss_bytes: u64,
}

impl ProcessStat {
    /// Reads the process `pid` from `/proc/PID/stat` (one file); `None` if it does not exist
    /// (or `/proc` is unreadable).
    pub fn read(pid: u32) -> Option<Self> {
        let stat = read_stat(pid)?;
        let fields = fields_after_name(&stat)?;
        // The fields start at field 3 (state): field N is fields[N - 3].
        let state = fields.first()?.chars().next()?;
        let number = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let per_second = crate::raw::clock_ticks_per_second();
        let cpu_ticks = number(14)?.saturating_add(number(15)?);
        let cpu_time = Duration::from_nanos(cpu_ticks.saturating_mul(1_000_000_000 / per_second));
        let rss_bytes = number(24).unwrap_or(0).saturating_mul(crate::raw::page_size());
        Some(Self { state, start_time: number(22)?, cpu_time, rss_bytes })
    }

    /// Whether the process is dead or a zombie (exited, not yet reaped).
    pub fn is_gone(stat: Option<&Self>) -> bool {
        stat.is_none_or(|s| s.state == 'Z' || s.state == 'X')
    }
}

fn read_stat(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()
}

/// The fields of a `/proc/PID/stat` line after the command name, which is in parentheses and
/// may itself contain spaces and parentheses: they start after the last ')'.
fn fields_after_name(stat: &str) -> Option<Vec<&str>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "reads /proc")]
    fn reads_this_process() {
        let me = ProcessStat::read(std::process::id()).expect("own /proc entry");
        assert!(me.start_time > 0);
        assert!(me.rss_bytes > 0);
        assert!(!ProcessStat::is_gone(Some(&me)));
        assert!(ProcessStat::is_gone(None));
    }
}
