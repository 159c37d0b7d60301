//! Structs that describe the bytes of a segment, and where each table lives.

use core::mem::{offset_of, size_of};

use bytemuck::{Pod, Zeroable};

use crate::histogram;

/// First eight bytes of every segment: `b"CRDMTRC\0"` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"CRDMTRC\0");
/// Version of this layout. Any change to a struct, to [`Layout`] or to the meaning of a field
/// increments it.
///
/// - 2: a name slot being claimed records its claimer's pid.
/// - 3: the owners of all writer slots sit together in a writer directory; names are hashed
///   eight bytes at a time.
/// - 4: liveness is a kernel-held lock on the first byte of each writer slot and name slot (not
///   a pid, which means nothing across pid namespaces); processes are told apart by a random
///   token; each writer publishes its own resident memory and CPU time; a writer's counters for
///   a coordinator live in a block taken from a pool on first use, so a segment costs memory in
///   proportion to what is in use; dropped updates are counted by reason; a reset stores
///   baselines that readers subtract.
pub const LAYOUT_VERSION: u32 = 4;
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
/// The page size the layout aligns the pool to (the largest common one on Linux for x86-64
/// and arm64 with 4 KiB pages; larger pages only make the alignment coarser than needed).
const PAGE: u64 = 4096;

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
    /// Capacity of the block pool ([`Layout::blocks`]).
    pub blocks: u32,
    /// [`BLOCK_SIZE`].
    pub block_size: u32,
    /// Zero.
    pub _reserved: [u32; 11],
    /// Updates that could not be recorded, whatever the reason (the sum of the reasons below).
    pub dropped_updates: u64,
    /// Coordinator names refused because the table was full.
    pub dropped_coordinators: u64,
    /// Event names refused because the table was full.
    pub dropped_events: u64,
    /// Writer slot claims refused because every slot was taken by a live process.
    pub dropped_writers: u64,
    /// Number of error entries ever written; the next entry goes to `head % errors`.
    pub error_ring_head: u64,
    /// Blocks handed out from the pool so far (may exceed [`Header::blocks`] once it is
    /// exhausted: every claim past the end is refused).
    pub blocks_claimed: u64,
    /// Block claims refused: the pool was exhausted or the file system had no room for it.
    pub dropped_blocks: u64,
    /// Updates dropped because every writer slot belonged to a live process.
    pub dropped_no_writer: u64,
    /// Updates dropped because no block could be had for the coordinator.
    pub dropped_no_block: u64,
    /// Updates dropped because the coordinator or event name was refused (empty, too long or a
    /// full table).
    pub dropped_name: u64,
    /// Zero.
    pub _reserved_runtime: [u64; 6],
}

const _: () = assert!(size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(offset_of!(Header, layout_version) == 8);
const _: () = assert!(offset_of!(Header, _reserved) == 84);
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

/// One writer slot, in the writer directory. Size 64 bytes, alignment 8.
///
/// A slot is owned by one process at a time, and used by one thread of it at a time. The
/// owner holds an open-file-description lock on the slot's first byte for as long as it owns
/// it: the kernel releases it when the process dies, whatever pid namespace it lives in, so a
/// reader knows a slot's owner is alive by asking the kernel, not `/proc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct WriterSlot {
    /// One of [`crate::slot_state`].
    pub state: u32,
    /// The owner's pid in its own pid namespace: for people reading `inspect`, never for
    /// liveness.
    pub pid: u32,
    /// Random token of the owning process (new after a fork); zero for a slot never claimed.
    pub process: u64,
    /// When the slot was last claimed, nanoseconds since the Unix epoch.
    pub claimed_unix_ns: u64,
    /// The owner's resident memory in bytes, as it last published it.
    pub rss_bytes: u64,
    /// The owner's CPU time (user and system) in nanoseconds, as it last published it.
    pub cpu_time_ns: u64,
    /// When the owner last published `rss_bytes` and `cpu_time_ns` (0: never).
    pub gauges_unix_ns: u64,
    /// Zero.
    pub _reserved: [u64; 2],
}

const _: () = assert!(size_of::<WriterSlot>() == CACHE_LINE);

/// The counters of one coordinator in one writer slot: a block of the pool. Size 1808 bytes,
/// alignment 8; blocks are [`BLOCK_SIZE`] apart.
///
/// Only the thread that uses the slot writes the counters, so they are updated with a relaxed
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
    /// When `memory_bytes_plus_one` was set, in the owning process's order of settings: of
    /// the values a process's threads set, the last one set wins.
    pub memory_set_order: u64,
    /// Zero.
    pub _reserved: u64,
    /// Fine latency histogram, [`histogram::BUCKETS`] buckets. Executions are their sum.
    pub buckets: [u64; histogram::BUCKETS],
}

const _: () = assert!(offset_of!(CoordinatorBlock, buckets) == CACHE_LINE);
const _: () = assert!(size_of::<CoordinatorBlock>() == CACHE_LINE + 8 * histogram::BUCKETS);

/// Distance between two blocks of the pool: a [`CoordinatorBlock`] rounded up to whole cache
/// lines, so that no two writers ever share a line.
pub const BLOCK_SIZE: usize = size_of::<CoordinatorBlock>().next_multiple_of(CACHE_LINE);
/// Granularity of block references in a block table: a reference is a block's offset divided
/// by this, so that 32 bits reach every byte of the largest segment.
pub const BLOCK_REFERENCE_UNIT: usize = CACHE_LINE;
const _: () = assert!(MAX_TOTAL_SIZE / BLOCK_REFERENCE_UNIT as u64 <= u32::MAX as u64);

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
///
/// Everything before the pool is allocated when the segment is created; the pool holds a block
/// for every (writer slot, coordinator) pair but only the blocks handed out are ever allocated,
/// so the file is sparse and costs memory in proportion to what is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The capacities this layout was computed from.
    pub capacities: Capacities,
    coordinator_names: usize,
    event_names: usize,
    ring: usize,
    writer_slots: usize,
    block_tables: usize,
    block_table_stride: usize,
    event_counters: usize,
    event_counters_stride: usize,
    coordinator_baselines: usize,
    event_baselines: usize,
    pool: usize,
    blocks: u32,
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
        let coordinators = u64::from(capacities.coordinators);
        let events = u64::from(capacities.events);
        let writers = u64::from(capacities.writers);
        let name_size = size_of::<NameSlot>() as u64;
        let line = CACHE_LINE as u64;
        let coordinator_names = HEADER_SIZE as u64;
        let event_names = coordinator_names + coordinators * name_size;
        let ring = event_names + events * name_size;
        let writer_slots = ring + u64::from(capacities.errors) * size_of::<ErrorEntry>() as u64;
        // Each slot's block table and event counters are written by one thread only: whole
        // cache lines of their own.
        let block_tables = writer_slots + writers * size_of::<WriterSlot>() as u64;
        let block_table_stride = round_up(coordinators * 4, line);
        let event_counters = block_tables + writers * block_table_stride;
        let event_counters_stride = round_up(events * 8, line);
        // What a reset subtracts: per coordinator the reference of a block holding its totals
        // at the reset, per event its count at the reset.
        let coordinator_baselines = event_counters + writers * event_counters_stride;
        let event_baselines = round_up(coordinator_baselines + coordinators * 4, 8);
        // The pool starts on a page of its own, so that allocating a block never touches the
        // tables before it.
        let pool = round_up(event_baselines + events * 8, PAGE);
        let blocks = coordinators * writers;
        let total_size = pool + blocks * BLOCK_SIZE as u64;
        if total_size > MAX_TOTAL_SIZE || blocks > u64::from(u32::MAX) {
            return Err(LayoutError::TooLarge(total_size));
        }
        Ok(Self {
            capacities,
            coordinator_names: coordinator_names as usize,
            event_names: event_names as usize,
            ring: ring as usize,
            writer_slots: writer_slots as usize,
            block_tables: block_tables as usize,
            block_table_stride: block_table_stride as usize,
            event_counters: event_counters as usize,
            event_counters_stride: event_counters_stride as usize,
            coordinator_baselines: coordinator_baselines as usize,
            event_baselines: event_baselines as usize,
            pool: pool as usize,
            blocks: blocks as u32,
            total_size: total_size as usize,
        })
    }

    /// Size of the whole segment in bytes (the file's length; the pool is sparse).
    pub fn total_size(&self) -> usize {
        self.total_size
    }

    /// Bytes allocated when the segment is created: everything before the block pool.
    pub fn fixed_size(&self) -> usize {
        self.pool
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

    /// Offset of writer slot `slot`'s [`WriterSlot`] in the writer directory.
    pub fn writer_slot(&self, slot: u32) -> usize {
        self.writer_slots + slot as usize * size_of::<WriterSlot>()
    }

    /// Offset of writer slot `slot`'s block table: one `u32` block reference per coordinator
    /// (see [`Layout::block_at_reference`]), zero while the slot has no block for it.
    pub fn block_table(&self, slot: u32) -> usize {
        self.block_tables + slot as usize * self.block_table_stride
    }

    /// Offset of writer slot `slot`'s analytics event counters: one `u64` per event.
    pub fn event_counters(&self, slot: u32) -> usize {
        self.event_counters + slot as usize * self.event_counters_stride
    }

    /// Offset of coordinator `index`'s baseline: the `u32` reference of a block holding its
    /// totals when it was last reset (zero: never reset). Readers subtract it.
    pub fn coordinator_baseline(&self, index: u32) -> usize {
        self.coordinator_baselines + 4 * index as usize
    }

    /// Offset of event `index`'s baseline: its `u64` count when it was last reset.
    pub fn event_baseline(&self, index: u32) -> usize {
        self.event_baselines + 8 * index as usize
    }

    /// Offset of the `u32` block reference of coordinator `index` in the block table at
    /// `table` (a [`Layout::block_table`]).
    pub const fn block_table_entry(table: usize, index: u32) -> usize {
        table + 4 * index as usize
    }

    /// Offset of writer slot `slot`'s `u64` counter of event `index`.
    pub fn event_counter(&self, slot: u32, index: u32) -> usize {
        self.event_counters(slot) + 8 * index as usize
    }

    /// Capacity of the block pool: one block for every (writer slot, coordinator) pair.
    pub fn blocks(&self) -> u32 {
        self.blocks
    }

    /// Offset of block `index` of the pool.
    pub fn block(&self, index: u32) -> usize {
        self.pool + index as usize * BLOCK_SIZE
    }

    /// The block-table reference of block `index` (never zero: the pool does not start at 0).
    pub fn block_reference(&self, index: u32) -> u32 {
        (self.block(index) / BLOCK_REFERENCE_UNIT) as u32
    }

    /// The offset a block-table reference names, if it names a block of this pool; `None` for
    /// zero (no block yet) and for anything a corrupt table may hold.
    pub fn block_at_reference(&self, reference: u32) -> Option<usize> {
        let offset = reference as usize * BLOCK_REFERENCE_UNIT;
        let in_pool = offset >= self.pool && offset + BLOCK_SIZE <= self.total_size;
        (in_pool && (offset - self.pool) % BLOCK_SIZE == 0).then_some(offset)
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
            blocks: self.blocks,
            block_size: BLOCK_SIZE as u32,
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
        // Header, 2 x 256 names of 128 bytes, 1024 ring entries of 256 bytes, 128 directory
        // entries of 64 bytes, 128 block tables of 256 x 4 bytes, 128 x 256 event counters of
        // 8 bytes, 256 coordinator baselines of 4 bytes and 256 event baselines of 8 bytes:
        // 732,416 bytes, rounded up to a page.
        assert_eq!(layout.fixed_size(), 733_184);
        assert_eq!(BLOCK_SIZE, 1856);
        assert_eq!(layout.blocks(), 256 * 128);
        assert_eq!(layout.total_size(), 733_184 + 256 * 128 * 1856);
        assert_eq!(layout.writer_slot(0) % 64, 0);
        assert_eq!(layout.block_table(1) % 64, 0);
        assert_eq!(layout.event_counters(1) % 64, 0);
        assert_eq!(layout.block(1) % 64, 0);
    }

    #[test]
    fn block_references_name_blocks_and_nothing_else() {
        let layout = Layout::new(Capacities { coordinators: 3, events: 2, writers: 2, errors: 4 }).unwrap();
        for index in 0..layout.blocks() {
            let reference = layout.block_reference(index);
            assert_ne!(reference, 0);
            assert_eq!(layout.block_at_reference(reference), Some(layout.block(index)));
        }
        assert_eq!(layout.block_at_reference(0), None);
        assert_eq!(layout.block_at_reference(layout.block_reference(0) + 1), None, "inside a block");
        assert_eq!(layout.block_at_reference((layout.total_size() / BLOCK_REFERENCE_UNIT) as u32), None);
        assert_eq!(layout.block_at_reference(u32::MAX), None);
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
        assert_eq!(layout.writer_slot(0), layout.error_entry(4));
        assert_eq!(layout.block_table(0), layout.writer_slot(2));
        assert!(layout.block_table(0) + 3 * 4 <= layout.block_table(1));
        assert_eq!(layout.event_counters(0), layout.block_table(2));
        assert_eq!(layout.coordinator_baseline(0), layout.event_counters(2));
        assert!(layout.coordinator_baseline(2) + 4 <= layout.event_baseline(0));
        assert_eq!(layout.event_baseline(0) % 8, 0);
        assert!(layout.event_baseline(1) + 8 <= layout.fixed_size());
        assert_eq!(layout.block(0), layout.fixed_size());
        assert_eq!(layout.fixed_size() % 4096, 0);
        assert_eq!(layout.total_size(), layout.block(layout.blocks()));
    }
}
