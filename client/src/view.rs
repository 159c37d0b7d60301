//! Typed views of the segment's structs: a view is a window onto one struct of the mapping
//! (bounds-checked once, when made) and its offset, and its methods return the atomics of that
//! struct's fields, placed by `proto`'s `#[repr(C)]` definitions (`offset_of!`), so no other
//! module adds field offsets by hand.

use core::mem::offset_of;

use coordmetrics_proto::{histogram, CoordinatorBlock, ErrorEntry, Header, NameSlot, WriterSlot};

use crate::raw::{Mapping, Window};
use crate::sync::{AtomicU32, AtomicU64};

/// Declares a view type over struct `$layout` with one accessor per listed field.
macro_rules! view {
    ($(#[$doc:meta])* $view:ident over $layout:ty { $($field:ident: $width:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub(crate) struct $view<'a> {
            pub(crate) window: Window<'a, $layout>,
            /// Where the struct is in the segment: the byte that a lock on a writer slot or
            /// a name slot covers (other views carry it unread).
            #[allow(dead_code)]
            pub(crate) offset: usize,
        }

        impl<'a> $view<'a> {
            /// The struct at `offset` of `mapping`.
            #[inline(always)]
            pub(crate) fn at(mapping: &'a Mapping, offset: usize) -> Self {
                Self { window: mapping.window(offset), offset }
            }

            $(
                #[doc = concat!("The `", stringify!($field), "` field.")]
                #[inline(always)]
                pub(crate) fn $field(&self) -> &'a view!(@atomic $width) {
                    view!(@access $width, self.window, offset_of!($layout, $field))
                }
            )*
        }
    };
    (@atomic u64) => { AtomicU64 };
    (@atomic u32) => { AtomicU32 };
    (@access u64, $window:expr, $field:expr) => { $window.u64_at($field) };
    (@access u32, $window:expr, $field:expr) => { $window.u32_at($field) };
}

view! {
    /// The segment header's fields that change after creation, and those read to validate it.
    HeaderRef over Header {
        magic: u64, layout_version: u32, header_size: u32, total_size: u64, segment_id: u64,
        created_unix_ns: u64, coordinators: u32, events: u32, writers: u32, errors: u32,
        histogram_schema: u32, histogram_min_index: u32, histogram_buckets: u32, name_bytes: u32,
        message_bytes: u32, blocks: u32, block_size: u32,
        dropped_updates: u64, dropped_coordinators: u64, dropped_events: u64, dropped_writers: u64,
        error_ring_head: u64, blocks_claimed: u64, dropped_blocks: u64, dropped_no_writer: u64,
        dropped_no_block: u64, dropped_name: u64,
    }
}

view! {
    /// A writer slot's entry in the writer directory.
    SlotRef over WriterSlot {
        state: u32, pid: u32, process: u64, claimed_unix_ns: u64, rss_bytes: u64, cpu_time_ns: u64,
        gauges_unix_ns: u64,
    }
}

view! {
    /// One coordinator's counters in one writer slot: a block of the pool.
    BlockRef over CoordinatorBlock {
        errors: u64, cache_hits: u64, cache_misses: u64, duration_sum_ns: u64, in_flight: u64,
        memory_bytes_plus_one: u64, memory_set_order: u64,
    }
}

view! {
    /// One slot of a name table.
    NameSlotRef over NameSlot { state: u32, len: u32 }
}

view! {
    /// One entry of the error ring.
    ErrorEntryRef over ErrorEntry { seq: u64, unix_ns: u64, coordinator: u32, pid: u32, len: u32 }
}

impl<'a> BlockRef<'a> {
    /// Fine latency bucket `index` (below [`histogram::BUCKETS`]).
    #[inline(always)]
    pub(crate) fn bucket(&self, index: usize) -> &'a AtomicU64 {
        self.window.u64_at(offset_of!(CoordinatorBlock, buckets) + 8 * index)
    }

    /// Every fine bucket, lowest first.
    pub(crate) fn buckets(&self) -> impl Iterator<Item = &'a AtomicU64> + 'a {
        let block = *self;
        (0..histogram::BUCKETS).map(move |index| block.bucket(index))
    }
}

impl<'a> NameSlotRef<'a> {
    /// Word `index` of the zero-padded name bytes.
    pub(crate) fn word(&self, index: usize) -> &'a AtomicU64 {
        self.window.u64_at(offset_of!(NameSlot, bytes) + 8 * index)
    }
}

impl<'a> ErrorEntryRef<'a> {
    /// Word `index` of the zero-padded message bytes.
    pub(crate) fn message_word(&self, index: usize) -> &'a AtomicU64 {
        self.window.u64_at(offset_of!(ErrorEntry, message) + 8 * index)
    }
}

/// Packs bytes into zero-padded little-endian words, as names and messages are stored.
pub(crate) fn words_of(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes.chunks(8).map(|chunk| {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        u64::from_le_bytes(word)
    })
}

/// Reads `len` bytes stored as words by [`words_of`], each word loaded once.
pub(crate) fn bytes_of<'a>(words: impl Iterator<Item = &'a AtomicU64>, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> =
        words.take(len.div_ceil(8)).flat_map(|word| word.load(crate::sync::Ordering::Relaxed).to_le_bytes()).collect();
    bytes.truncate(len);
    bytes
}
