//! Resetting a coordinator or an event for every reader of a segment.
//!
//! Counters only ever add (that is what makes them exact across processes), so a reset does
//! not clear them: it stores a baseline, the totals at the reset, that every reader subtracts.
//! A coordinator's baseline is a block of the pool holding its totals, written in full before
//! its reference is release-stored in the coordinator's baseline entry; a reader acquire-loads
//! the reference before reading the block. An event's baseline is one count. Other coordinators
//! and other processes' counters are untouched; Prometheus sees the drop as a counter reset.
//! Updates recorded while a reset sums the slots may land on either side of it.

use coordmetrics_proto::Layout;

use crate::pool::{self, NoBlock};
use crate::segment::Segment;
use crate::snapshot::{self, CoordinatorTotals};
use crate::sync::Ordering;
use crate::view::BlockRef;

/// Makes every reader count coordinator `index` from zero again.
pub(crate) fn reset_coordinator(segment: &Segment, name: &str, index: u32) -> Result<(), NoBlock> {
    let (mapping, layout) = (&segment.mapping, &segment.layout);
    let totals = snapshot::counters_of(segment, name.to_owned(), index);
    let number = pool::take_block(mapping, layout, &segment.file)?;
    totals.store_into(BlockRef::at(mapping, layout.block(number)));
    // Release: a reader that sees the reference sees the whole baseline.
    mapping.u32_at(layout.coordinator_baseline(index)).store(layout.block_reference(number), Ordering::Release);
    Ok(())
}

/// Makes every reader count event `index` from zero again.
pub(crate) fn reset_event(segment: &Segment, index: u32) {
    let (mapping, layout) = (&segment.mapping, &segment.layout);
    let total = event_total(mapping, layout, 0..layout.capacities.writers, index);
    mapping.u64_at(layout.event_baseline(index)).store(total, Ordering::Relaxed);
}

/// Coordinator `index`'s totals at its last reset, if it was reset.
pub(crate) fn coordinator_baseline(
    mapping: &crate::raw::Mapping,
    layout: &Layout,
    index: u32,
) -> Option<CoordinatorTotals> {
    let reference = mapping.u32_at(layout.coordinator_baseline(index)).load(Ordering::Acquire);
    let block = layout.block_at_reference(reference)?;
    let mut baseline = CoordinatorTotals::empty("");
    baseline.add_block(BlockRef::at(mapping, block));
    Some(baseline)
}

/// Event `index`'s count at its last reset (zero if never reset).
pub(crate) fn event_baseline(mapping: &crate::raw::Mapping, layout: &Layout, index: u32) -> u64 {
    mapping.u64_at(layout.event_baseline(index)).load(Ordering::Relaxed)
}

/// Event `index`'s count over the writer slots `slots`, before any baseline.
pub(crate) fn event_total(
    mapping: &crate::raw::Mapping,
    layout: &Layout,
    slots: impl Iterator<Item = u32>,
    index: u32,
) -> u64 {
    slots.fold(0u64, |sum, slot| {
        sum.wrapping_add(mapping.u64_at(layout.event_counter(slot, index)).load(Ordering::Relaxed))
    })
}
