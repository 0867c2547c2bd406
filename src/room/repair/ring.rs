//! One member's part of the repair store: its runs (which of its numbers
//! are which log entries) and the ranges waiting to be resent or reported.

use super::MAX_WAITING_RANGES;
use std::collections::VecDeque;

/// A ring's capacity below which it is not shrunk.
pub(super) const RING_MIN_CAPACITY: usize = 4;

/// Member numbers `first..first + len` are log entries `index..index + len`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Run {
    pub(super) first: u64,
    pub(super) index: u64,
    pub(super) len: u32,
}

impl Run {
    pub(super) fn end(&self) -> u64 {
        self.first + u64::from(self.len)
    }
}

#[derive(Debug, Default)]
pub(super) struct Ring {
    /// Which member holds the slot (see [`Slot`]).
    pub(super) gen: u32,
    /// Which numbering the runs belong to (changes when a number does not
    /// follow the last one), from the same counter as `gen`.
    pub(super) epoch: u32,
    /// Has anything been recorded?
    pub(super) started: bool,
    /// The lowest number recorded (nothing below it was sent).
    pub(super) origin: u64,
    /// Numbers below this are not kept.
    pub(super) first: u64,
    /// The next number to be recorded.
    pub(super) next: u64,
    pub(super) runs: VecDeque<Run>,
    /// Ranges asked for and not yet resent, sorted, disjoint, in `first..next`.
    pub(super) pending: Vec<(u64, u64)>,
    /// Ranges to report lost, sorted, disjoint.
    pub(super) lost: Vec<(u64, u64)>,
}

/// Adds `lo..=hi` to sorted, disjoint `ranges`, merging neighbours; beyond
/// [`MAX_WAITING_RANGES`] a new separate range is not remembered.
pub(super) fn add_range(ranges: &mut Vec<(u64, u64)>, lo: u64, hi: u64) {
    let i = ranges.partition_point(|&(_, h)| h.saturating_add(1) < lo);
    let mut j = i;
    let (mut lo, mut hi) = (lo, hi);
    while j < ranges.len() && ranges[j].0 <= hi.saturating_add(1) {
        lo = lo.min(ranges[j].0);
        hi = hi.max(ranges[j].1);
        j += 1;
    }
    if i == j && ranges.len() >= MAX_WAITING_RANGES {
        return;
    }
    ranges.splice(i..j, [(lo, hi)]);
}

impl Ring {
    /// Keeps only numbers from `to` on: runs wholly below go, and what was
    /// waiting to be resent below becomes lost unless the member `has` it.
    /// Returns how many runs went.
    pub(super) fn advance(&mut self, to: u64, has: bool) -> usize {
        if to <= self.first {
            return 0;
        }
        self.first = to;
        while let Some(&(lo, hi)) = self.pending.first().filter(|r| r.0 < to) {
            if !has {
                add_range(&mut self.lost, lo, hi.min(to - 1));
            }
            if hi >= to {
                self.pending[0].0 = to;
                break;
            }
            self.pending.remove(0);
        }
        let mut gone = 0;
        while self.runs.front().is_some_and(|r| r.end() <= to) {
            self.runs.pop_front();
            gone += 1;
        }
        let cap = self.runs.capacity();
        if cap > RING_MIN_CAPACITY && self.runs.len() * 4 <= cap {
            self.runs.shrink_to(self.runs.len() * 2);
        }
        gone
    }

    /// The log index of number `n`, if `n` is kept in a run.
    pub(super) fn index_of(&self, n: u64) -> Option<u64> {
        if n < self.first || n >= self.next {
            return None;
        }
        let i = self.runs.partition_point(|r| r.end() <= n);
        let r = self.runs.get(i).filter(|r| r.first <= n)?;
        Some(r.index + (n - r.first))
    }
}

/// The lowest number of `ring` still kept: among its last `keep`, with its
/// body still in the log (from `log_base` on); its next number if none is.
pub(super) fn floor(ring: &Ring, keep: usize, log_base: u64) -> u64 {
    let last_k = ring.first.max(ring.next.saturating_sub(keep.max(1) as u64));
    for r in &ring.runs {
        if r.index + u64::from(r.len) > log_base {
            let live = r.first + log_base.saturating_sub(r.index);
            return live.max(last_k);
        }
    }
    ring.next
}
