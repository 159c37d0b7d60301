//! coordmetrics: record coordinator metrics into a shared-memory segment, from any thread of
//! any process, without locks.
//!
//! Processes link this crate and record executions, latency, errors, cache hits and misses,
//! memory and analytics events into a memory-mapped segment (default `/dev/shm/coordmetrics`,
//! or `COORDMETRICS_SEGMENT`). A separate exporter process (`coordmetrics run`) snapshots it
//! into a Prometheus text file and a `metrics.json`.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("segment");
//! use std::time::Duration;
//!
//! let metrics = coordmetrics::Collector::open(&path)?;
//! let chat = metrics.coordinator("ChatCoordinator"); // resolve once: the fast path
//! {
//!     let _t = chat.track(); // one execution, timed until dropped
//! }
//! let t = chat.track();
//! t.fail("provider timeout"); // failed, with the message in the error ring
//! chat.record(Duration::from_millis(12), true);
//! chat.cache_hit();
//! chat.cache_miss();
//! metrics.record_analytics_event("tool_call", 5);
//!
//! let snapshot = metrics.snapshot().unwrap();
//! assert_eq!(snapshot.coordinators[0].executions, 3);
//! assert_eq!(snapshot.coordinators[0].errors, 1);
//! # Ok::<(), coordmetrics::OpenError>(())
//! ```
//!
//! The hot path (`record`, `cache_hit`, dropping a [`Tracker`]) is a thread-local lookup and a
//! few relaxed atomic loads and stores into the calling thread's own writer slot: no lock, no
//! allocation, no syscall, no hashing. The client never panics the host: if the segment cannot
//! be opened or is full, updates are counted as dropped.

mod binding;
mod collector;
mod coordinator;
mod event;
mod liveness;
#[cfg(all(test, loom))]
mod loom_models;
mod names;
mod pool;
pub mod process;
mod raw;
mod reset;
mod ring;
mod segment;
mod shared;
mod snapshot;
mod sync;
mod tracker;
mod view;
mod writers;

pub use collector::Collector;
pub use coordinator::Coordinator;
pub use coordmetrics_proto::{histogram, Capacities};
pub use event::AnalyticsEvent;
pub use names::stored_name;
pub use ring::RecordedError;
pub use segment::{
    describe_file_type, group_gid, remove_segment, system_user_uid, OpenError, OwnerPolicy, SegmentInfo,
    SegmentOptions, DEFAULT_SEGMENT_PATH, SEGMENT_ENV,
};
pub use snapshot::{CoordinatorTotals, Dropped, ProcessGauges, SegmentReader, Snapshot, WriterSummary};
pub use tracker::{OwnedTracker, Tracker};
pub use writers::WriterState;
