//! [`AnalyticsEvent`]: a resolved analytics event, counted per writer slot.

use std::sync::Arc;

use crate::binding;
use crate::collector::count_detached_drop;
use crate::coordinator::add_owned;
use crate::shared::{DropReason, Shared};

/// A resolved analytics event.
#[derive(Clone, Debug)]
pub struct AnalyticsEvent {
    shared: Option<Arc<Shared>>,
    /// Index in the event table, if the name was accepted.
    index: Option<u32>,
}

impl AnalyticsEvent {
    pub(crate) fn new(shared: Option<Arc<Shared>>, index: Option<u32>) -> Self {
        Self { shared, index }
    }

    /// Adds `count` occurrences.
    #[inline]
    pub fn record(&self, count: u64) {
        let Some(shared) = &self.shared else {
            return count_detached_drop();
        };
        let Some(index) = self.index else {
            return shared.drop_update(DropReason::Name);
        };
        match binding::current_slot(shared) {
            // A lost segment's counters are private zero pages: count the update as dropped.
            Some(_) if shared.mapping().is_lost() => shared.drop_update(DropReason::NoWriter),
            Some(bound) => {
                let counter = shared.segment.layout.event_counter(bound.slot, index);
                add_owned(shared.mapping().u64_at(counter), count);
            }
            None => shared.drop_update(DropReason::NoWriter),
        }
    }
}
