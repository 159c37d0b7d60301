//! Child processes that `demo` and `bench` start: killed and reaped however the parent's
//! command ends (normally, by error, or by a panic), so that none outlives it.

use std::process::Child;

/// Worker processes, killed and reaped when dropped.
#[derive(Debug, Default)]
pub struct Workers(pub Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
