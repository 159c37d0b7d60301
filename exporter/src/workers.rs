//! Child processes that `demo` and `bench` start: killed and reaped however the parent's
//! command ends (normally, by error, or by a panic), so that none outlives it.

use std::process::Child;
use std::time::{Duration, Instant};

/// Worker processes, killed and reaped when dropped.
#[derive(Debug, Default)]
pub struct Workers(pub Vec<Child>);

impl Workers {
    /// Waits up to `grace` for every worker to exit by itself, then kills and reaps the rest:
    /// afterwards none of them records anything.
    pub fn stop(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        for child in &mut self.0 {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
