//! The parent <-> worker protocol of `coordmetrics bench`: one JSON object a line,
//! `{"version":1,"message":...}`, on the worker's standard input and output.
//!
//! Once every thread of a worker holds its writer slot, the worker sends `"ready"`; the
//! parent sends every worker `"go"` at once; each worker answers with one
//! `{"thread":{...}}` a thread and one `{"cpu":{...}}`, and exits. A line of another
//! [`VERSION`] is refused, so that a parent and a worker of different builds fail loudly
//! instead of misreading each other.

use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The version every line carries.
pub const VERSION: u32 = 1;

/// One line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    /// Worker to parent: every thread holds its writer slot and waits.
    Ready,
    /// Parent to worker: start recording now.
    Go,
    /// Worker to parent: what one thread did.
    Thread(ThreadResult),
    /// Worker to parent: the CPU time the worker used while its threads recorded.
    Cpu(Duration),
}

/// What one thread did: enough for the parent to predict what it recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadResult {
    /// The thread's number across the bench, which chooses its operations.
    pub thread: u64,
    /// Operations performed, the untimed first one included.
    pub operations: u64,
    /// When the timed operations started (wall clock, comparable across processes).
    pub started: SystemTime,
    /// How long the timed operations took.
    pub elapsed: Duration,
}

#[derive(Serialize, Deserialize)]
struct Line<M> {
    version: u32,
    message: M,
}

/// The line of `message`, without its newline.
pub fn encode(message: &Message) -> String {
    serde_json::to_string(&Line { version: VERSION, message }).expect("a message always serializes")
}

/// The message of `line`.
///
/// # Errors
///
/// If `line` is not a message of this [`VERSION`].
pub fn decode(line: &str) -> anyhow::Result<Message> {
    let unexpected = || format!("unexpected bench worker output {line:?}");
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let Version { version } = serde_json::from_str(line).with_context(unexpected)?;
    if version != VERSION {
        bail!("bench protocol version {version}, expected {VERSION}: is the worker the same build as the parent?");
    }
    let line: Line<Message> = serde_json::from_str(line).with_context(unexpected)?;
    Ok(line.message)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn messages_round_trip() {
        let result = ThreadResult {
            thread: 7,
            operations: 1000,
            started: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            elapsed: Duration::from_nanos(12_345),
        };
        for message in [Message::Ready, Message::Go, Message::Thread(result), Message::Cpu(Duration::from_millis(30))] {
            let line = encode(&message);
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(decode(&line).unwrap(), message, "{line}");
        }
        assert_eq!(encode(&Message::Go), r#"{"version":1,"message":"go"}"#);
    }

    #[test]
    fn malformed_lines_are_refused() {
        for line in [
            "",
            "ready",
            "{}",
            r#"{"version":1}"#,
            r#"{"version":1,"message":"start"}"#,
            r#"{"version":1,"message":{"thread":{"thread":1}}}"#,
        ] {
            assert!(decode(line).is_err(), "{line:?}");
        }
        let error = decode(r#"{"version":2,"message":"ready"}"#).unwrap_err();
        assert!(error.to_string().contains("version 2"), "{error}");
    }
}
