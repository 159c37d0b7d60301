//! Structs that describe the bytes of a segment, and where each table lives.

use core::mem::{offset_of, size_of};

use bytemuck::{Pod, Zeroable};

use crate::histogram;

/// First eight bytes of every segment: `b"CRDMTRC\0"` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"CRDMTRC\0");
/// Version of this layout. Any change to a struct, to [`Layout`] or to the meaning of a field
/// increments it. 2: a name slot being claimed records its claimer's pid.
pub const LAYOUT_VERSION: u32 = 3;
/// Size of [`Header`].
pub const HEADER_SIZE: usize = 256;
/// Longest coordinator or event name, in bytes; longer names are cut at a character boundary.
pub const NAME_BYTES: usize = 120;
/// Longest error message kept in the ring, in bytes; longer messages are cut.
pub const ERROR_MESSAGE_BYTES: usize = 224;
/// Upper limit of every capacity, so that no size computation can overflow and a corrupt header
/// cannot make a reader allocate without bound.
pub const MAX_CAPACITY: u32 = 1 << 16;
/// Largest segment accepted (16 GiB).
const MAX_TOTAL_SIZE: u64 = 1 << 34;
const CACHE_LINE: usize = 64;

/// The segment header. Size 256 bytes, alignment 8.
///
/// Everything up to `dropped_updates` is written once by the creator before it publishes
/// `layout_version` (release) and is immutable afterwards. The runtime counters after it are
/// updated atomically by every process and sit on their own cache lines.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`LAYOUT_VERSION`]; zero until the creator has finished initialising the segment.
    pub layout_version: u32,
    /// [`HEADER_SIZE`].
    pub header_size: u32,
    /// Size of the whole segment in bytes, as computed by [`Layout::total_size`].
    pub total_size: u64,
    /// Random id chosen at creation: a new id means the segment was recreated (a counter reset).
    pub segment_id: u64,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
    /// Capacity of the coordinator name table.
    pub coordinators: u32,
    /// Capacity of the analytics event name table.
    pub events: u32,
    /// Number of writer slots.
    pub writers: u32,
    /// Number of error ring entries.
    pub errors: u32,
    /// [`histogram::SCHEMA`].
    pub histogram_schema: i32,
    /// [`histogram::MIN_INDEX`].
    pub histogram_min_index: i32,
    /// [`histogram::BUCKETS`].
    pub histogram_buckets: u32,
    /// [`NAME_BYTES`].
    pub name_bytes: u32,
    /// [`ERROR_MESSAGE_BYTES`].
    pub message_bytes: u32,
    /// Zero.
    pub _reserved: [u32; 13],
    /// Updates that could not be recorded (segment full, no writer slot).
    pub dropped_updates: u64,
    /// Coordinator names refused because the table was full.
    pub dropped_coordinators: u64,
    /// Event names refused because the table was full.
    pub dropped_events: u64,
    /// Writer slot claims refused because every slot was taken by a live process.
    pub dropped_writers: u64,
    /// Number of error entries ever written; the next entry goes to `head % errors`.
    pub error_ring_head: u64,
    /// Zero.
    pub _reserved_runtime: [u64; 11],
}

const _: () = assert!(size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(offset_of!(Header, layout_version) == 8);
const _: () = assert!(offset_of!(Header, _reserved) == 76);
const _: () = assert!(offset_of!(Header, dropped_updates) == 128);
const _: () = assert!(offset_of!(Header, error_ring_head) == 160);

/// One entry of a name table. Size 128 bytes, alignment 8.
///
/// Claimed by a compare-and-swap of `state` from EMPTY to CLAIMING; the claimer writes `len`
/// and `bytes`, then stores PUBLISHED with release ordering. Readers acquire-load `state` and
/// only read the name once it is PUBLISHED; a published name never changes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct NameSlot {
    /// One of [`crate::name_state`].
    pub state: u32,
    /// Length of the name in bytes (at most [`NAME_BYTES`]).
    pub len: u32,
    /// UTF-8 name, zero-padded.
    pub bytes: [u8; NAME_BYTES],
}

const _: () = assert!(size_of::<NameSlot>() == 128);
const _: () = assert!(offset_of!(NameSlot, bytes) % 8 == 0 && NAME_BYTES % 8 == 0);

/// One entry of the error ring. Size 256 bytes, alignment 8.
///
/// A seqlock: `seq` is odd while an entry is written and `2 * (n + 1)` once entry number `n`
/// is complete. A reader that sees an odd or changed `seq` skips the entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct ErrorEntry {
    /// Sequence word (see above).
    pub seq: u64,
    /// When the error was recorded, nanoseconds since the Unix epoch.
    pub unix_ns: u64,
    /// Coordinator table index plus one; zero when unknown.
    pub coordinator: u32,
    /// Process that recorded it.
    pub pid: u32,
    /// Length of the message in bytes.
    pub len: u32,
    /// Zero.
    pub _pad: u32,
    /// UTF-8 message (cut at a character boundary), zero-padded.
    pub message: [u8; ERROR_MESSAGE_BYTES],
}

const _: () = assert!(size_of::<ErrorEntry>() == 256);
const _: () = assert!(offset_of!(ErrorEntry, message) == 32);

/// Header of a writer slot, in the writer directory. Size 64 bytes, alignment 8.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct WriterHeader {
    /// Owner word, see [`crate::owner`].
    pub owner: u64,
    /// Start time of the owning process in clock ticks since boot (`/proc/PID/stat` field 22):
    /// with the pid, it identifies the process even after its pid is reused.
    pub start_time: u64,
    /// When the slot was last claimed, nanoseconds since the Unix epoch.
    pub claimed_unix_ns: u64,
    /// Zero.
    pub _reserved: [u64; 5],
}

const _: () = assert!(size_of::<WriterHeader>() == CACHE_LINE);

/// The counters of one coordinator in one writer slot. Size 1808 bytes, alignment 8.
///
/// Only the thread that owns the slot writes the counters, so they are updated with a relaxed
/// load and store rather than a locked read-modify-write. `memory_bytes` is the exception: any
/// thread of the owning process may store it, and only in the process's first slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct CoordinatorBlock {
    /// Failed executions. Stored with release ordering after the execution's bucket, so that a
    /// reader that acquire-loads it first never sees more errors than executions.
    pub errors: u64,
    /// Cache hits.
    pub cache_hits: u64,
    /// Cache misses.
    pub cache_misses: u64,
    /// Sum of recorded durations in nanoseconds.
    pub duration_sum_ns: u64,
    /// Executions started minus executions finished by this slot, two's complement. Summed over
    /// the slots of a live process it is that process's in-flight count.
    pub in_flight: u64,
    /// Explicit memory gauge plus one; zero when never set.
    pub memory_bytes_plus_one: u64,
    /// Zero.
    pub _reserved: [u64; 2],
    /// Fine latency histogram, [`histogram::BUCKETS`] buckets. Executions are their sum.
    pub buckets: [u64; histogram::BUCKETS],
}

const _: () = assert!(offset_of!(CoordinatorBlock, buckets) == CACHE_LINE);
const _: () = assert!(size_of::<CoordinatorBlock>() == CACHE_LINE + 8 * histogram::BUCKETS);

/// How many of each thing a segment holds. Chosen at creation, recorded in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacities {
    /// Distinct coordinator names.
    pub coordinators: u32,
    /// Distinct analytics event names.
    pub events: u32,
    /// Writer slots (one per recording thread of each process).
    pub writers: u32,
    /// Error ring entries.
    pub errors: u32,
}

impl Default for Capacities {
    fn default() -> Self {
        Self { coordinators: 256, events: 256, writers: 128, errors: 1024 }
    }
}

/// Why a set of capacities or a header does not describe a usable segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// A capacity is zero or above [`MAX_CAPACITY`].
    Capacity {
        /// Which capacity.
        what: &'static str,
        /// Its value.
        value: u32,
    },
    /// The segment would exceed the size limit.
    TooLarge(u64),
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Capacity { what, value } => {
                write!(f, "capacity of {what} is {value}, must be between 1 and {MAX_CAPACITY}")
            }
            Self::TooLarge(size) => write!(f, "segment of {size} bytes exceeds the {MAX_TOTAL_SIZE}-byte limit"),
        }
    }
}

impl std::error::Error for LayoutError {}

/// Where every table of a segment lives, derived from its [`Capacities`] alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The capacities this layout was computed from.
    pub capacities: Capacities,
    coordinator_names: usize,
    event_names: usize,
    ring: usize,
    writer_headers: usize,
    writers: usize,
    writer_stride: usize,
    events_in_slot: usize,
    total_size: usize,
}

impl Layout {
    /// Computes the layout for `capacities`.
    ///
    /// # Errors
    /// A capacity of zero or above [`MAX_CAPACITY`], or a total above the size limit.
    pub fn new(capacities: Capacities) -> Result<Self, LayoutError> {
        for (what, value) in [
            ("coordinators", capacities.coordinators),
            ("events", capacities.events),
            ("writers", capacities.writers),
            ("errors", capacities.errors),
        ] {
            if value == 0 || value > MAX_CAPACITY {
                return Err(LayoutError::Capacity { what, value });
            }
        }
        // All capacities are at most 2^16, so these products stay far below 2^64.
        let coordinators = capacities.coordinators as u64;
        let events = capacities.events as u64;
        let name_size = size_of::<NameSlot>() as u64;
        let coordinator_names = HEADER_SIZE as u64;
        let event_names = coordinator_names + coordinators * name_size;
        let ring = event_names + events * name_size;
        let writer_headers = ring + capacities.errors as u64 * size_of::<ErrorEntry>() as u64;
        // The headers of all slots side by side: a reader learns who owns what from a few
        // pages, without touching a page of every slot.
        let writers = writer_headers + capacities.writers as u64 * size_of::<WriterHeader>() as u64;
        let events_in_slot = coordinators * size_of::<CoordinatorBlock>() as u64;
        let writer_stride = round_up(events_in_slot + events * 8, CACHE_LINE as u64);
        let total_size = writers + capacities.writers as u64 * writer_stride;
        if total_size > MAX_TOTAL_SIZE {
            return Err(LayoutError::TooLarge(total_size));
        }
        Ok(Self {
            capacities,
            coordinator_names: coordinator_names as usize,
            event_names: event_names as usize,
            ring: ring as usize,
            writer_headers: writer_headers as usize,
            writers: writers as usize,
            writer_stride: writer_stride as usize,
            events_in_slot: events_in_slot as usize,
            total_size: total_size as usize,
        })
    }

    /// Size of the whole segment in bytes.
    pub fn total_size(&self) -> usize {
        self.total_size
    }

    /// Bytes of one writer slot.
    pub fn writer_stride(&self) -> usize {
        self.writer_stride
    }

    /// Offset of coordinator name slot `index`.
    pub fn coordinator_name(&self, index: u32) -> usize {
        self.coordinator_names + index as usize * size_of::<NameSlot>()
    }

    /// Offset of event name slot `index`.
    pub fn event_name(&self, index: u32) -> usize {
        self.event_names + index as usize * size_of::<NameSlot>()
    }

    /// Offset of error ring entry `index`.
    pub fn error_entry(&self, index: u32) -> usize {
        self.ring + index as usize * size_of::<ErrorEntry>()
    }

    /// Offset of writer slot `slot`'s [`WriterHeader`] in the writer directory.
    pub fn writer_header(&self, slot: u32) -> usize {
        self.writer_headers + slot as usize * size_of::<WriterHeader>()
    }

    /// Offset of writer slot `slot`'s counters (its first [`CoordinatorBlock`]).
    pub fn writer(&self, slot: u32) -> usize {
        self.writers + slot as usize * self.writer_stride
    }

    /// Offset of coordinator `index`'s [`CoordinatorBlock`] within a writer slot.
    pub fn coordinator_block_in_slot(&self, index: u32) -> usize {
        index as usize * size_of::<CoordinatorBlock>()
    }

    /// Offset of event `index`'s counter within a writer slot.
    pub fn event_counter_in_slot(&self, index: u32) -> usize {
        self.events_in_slot + index as usize * 8
    }

    /// The header a creator writes for this layout (with `layout_version` still zero).
    pub fn header(&self, segment_id: u64, created_unix_ns: u64) -> Header {
        Header {
            magic: MAGIC,
            layout_version: 0,
            header_size: HEADER_SIZE as u32,
            total_size: self.total_size as u64,
            segment_id,
            created_unix_ns,
            coordinators: self.capacities.coordinators,
            events: self.capacities.events,
            writers: self.capacities.writers,
            errors: self.capacities.errors,
            histogram_schema: histogram::SCHEMA,
            histogram_min_index: histogram::MIN_INDEX,
            histogram_buckets: histogram::BUCKETS as u32,
            name_bytes: NAME_BYTES as u32,
            message_bytes: ERROR_MESSAGE_BYTES as u32,
            ..Zeroable::zeroed()
        }
    }
}

fn round_up(value: u64, multiple: u64) -> u64 {
    value.div_ceil(multiple) * multiple
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_is_documented_size() {
        let layout = Layout::new(Capacities::default()).unwrap();
        // 256 coordinators x 1808 bytes + 256 events x 8, rounded to 64; plus a 64-byte
        // header per slot in the writer directory.
        assert_eq!(layout.writer_stride(), 464_896);
        assert_eq!(layout.total_size(), 256 + 2 * 256 * 128 + 1024 * 256 + 128 * (64 + 464_896));
        assert_eq!(layout.writer_header(0) % 64, 0);
        assert_eq!(layout.writer(0) % 64, 0);
        assert_eq!(layout.writer_stride() % 64, 0);
    }

    #[test]
    fn capacities_are_bounded() {
        let zero = Capacities { writers: 0, ..Capacities::default() };
        assert_eq!(Layout::new(zero), Err(LayoutError::Capacity { what: "writers", value: 0 }));
        let huge = Capacities { coordinators: MAX_CAPACITY, writers: MAX_CAPACITY, ..Capacities::default() };
        assert!(matches!(Layout::new(huge), Err(LayoutError::TooLarge(_))));
    }

    #[test]
    fn tables_do_not_overlap() {
        let layout = Layout::new(Capacities { coordinators: 3, events: 2, writers: 2, errors: 4 }).unwrap();
        assert_eq!(layout.event_name(0), layout.coordinator_name(3));
        assert_eq!(layout.error_entry(0), layout.event_name(2));
        assert_eq!(layout.writer_header(0), layout.error_entry(4));
        assert_eq!(layout.writer(0), layout.writer_header(2));
        assert!(layout.event_counter_in_slot(1) + 8 <= layout.writer_stride());
        assert_eq!(layout.total_size(), layout.writer(2));
    }
}
