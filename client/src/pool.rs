//! The block pool: a writer slot's counters for a coordinator live in a block taken from the
//! pool the first time the slot records for that coordinator, so a segment sized for hundreds
//! of coordinators and writers costs memory in proportion to the pairs actually in use.
//!
//! Taking a block: a relaxed `fetch_add` on the header's `blocks_claimed` hands out block
//! numbers in order (never twice, never given back); the taker allocates the block's pages in
//! the file (`fallocate`: on a full tmpfs this fails here, as an error, instead of raising
//! SIGBUS at the first write), then release-stores the block's reference into its slot's block
//! table. Only the thread using the slot writes its table. A reader acquire-loads a reference
//! before reading the block, so it sees the block allocated and zero, or with counts. Blocks
//! that could not be had (pool exhausted, file system full) are counted in `dropped_blocks`
//! and their updates as dropped.

use std::fs::File;

use coordmetrics_proto::{Layout, BLOCK_SIZE};

use crate::raw::{self, Mapping};
use crate::sync::Ordering;
use crate::view::HeaderRef;

/// Why no block could be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoBlock {
    /// Every block of the pool is taken, or the file system has no room for another.
    Exhausted,
    /// The slot's table holds something that is not a block of this pool (a corrupt segment).
    Corrupt,
}

/// Offset of the block of coordinator `index` in writer slot `slot`, taking one from the pool
/// if the slot has none yet. Only the thread that uses `slot` may call this.
pub(crate) fn block_for(
    mapping: &Mapping,
    layout: &Layout,
    file: &File,
    slot: u32,
    index: u32,
) -> Result<usize, NoBlock> {
    let entry = mapping.u32_at(Layout::block_table_entry(layout.block_table(slot), index));
    let reference = entry.load(Ordering::Relaxed);
    if reference != 0 {
        return layout.block_at_reference(reference).ok_or(NoBlock::Corrupt);
    }
    let number = take_block(mapping, layout, file)?;
    entry.store(layout.block_reference(number), Ordering::Release);
    Ok(layout.block(number))
}

/// Takes a new, zero block from the pool and allocates its pages: its number.
pub(crate) fn take_block(mapping: &Mapping, layout: &Layout, file: &File) -> Result<u32, NoBlock> {
    let header = HeaderRef::at(mapping, 0);
    let number = header.blocks_claimed().fetch_add(1, Ordering::Relaxed);
    let allocated = u32::try_from(number)
        .ok()
        .filter(|&number| number < layout.blocks())
        .filter(|&number| raw::allocate(file, layout.block(number), BLOCK_SIZE).is_ok());
    allocated.ok_or_else(|| {
        header.dropped_blocks().fetch_add(1, Ordering::Relaxed);
        NoBlock::Exhausted
    })
}

/// Blocks taken from the pool so far (at most its capacity).
pub(crate) fn blocks_in_use(mapping: &Mapping, layout: &Layout) -> u32 {
    let claimed = HeaderRef::at(mapping, 0).blocks_claimed().load(Ordering::Relaxed);
    claimed.min(u64::from(layout.blocks())) as u32
}
