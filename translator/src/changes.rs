//! The change log of a `Resources`: which objects its methods (`insert`, `remove`) changed, in
//! order, so that `Translator` can ask "what changed since the state I last saw" in
//! O(changed) instead of comparing every object's revision.
//!
//! Every mutation takes a number from one process-wide counter, so a number names one state
//! of one `Resources` lineage. A clone keeps the log: both copies can still answer for the
//! states before the split, and neither finds the other's later numbers in its own log, so a
//! translator that saw one and is then given the other falls back to the full comparison.
//! The log is bounded: an older state than the log covers also falls back.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::input::ObjectKey;

/// The input kinds, in `Resources` field order.
pub const KINDS: [&str; 16] = [
    "GatewayClass",
    "Gateway",
    "ListenerSet",
    "HTTPRoute",
    "GRPCRoute",
    "TLSRoute",
    "TCPRoute",
    "UDPRoute",
    "ReferenceGrant",
    "BackendTLSPolicy",
    "Service",
    "EndpointSlice",
    "Secret",
    "ConfigMap",
    "Namespace",
    crate::backend_kind::KIND,
];

/// Index of a kind in `KINDS`.
pub fn kind_index(kind: &str) -> Option<usize> {
    KINDS.iter().position(|k| *k == kind)
}

/// Entries kept; a translator that fell further behind compares everything instead.
const CAPACITY: usize = 4096;

/// Numbers every mutation of every `Resources` in the process; 0 is "never mutated".
static NEXT: AtomicU64 = AtomicU64::new(1);

#[derive(Clone, Debug, Default)]
pub struct ChangeLog {
    /// The entries cover the changes after this state.
    base: u64,
    entries: VecDeque<(u64, ObjectKey)>,
    /// Per kind: how many objects the kind's list holds and how many of its keys have a
    /// revision, as the methods left them (a direct edit of the lists shows as a mismatch).
    counts: [(usize, usize); KINDS.len()],
    revisions: usize,
    sources: usize,
}

/// What the log says about the lists' sizes, to check against the lists themselves.
pub(crate) struct Sizes {
    pub(crate) kinds: [usize; KINDS.len()],
    pub(crate) revisions: usize,
    pub(crate) sources: usize,
}

impl ChangeLog {
    /// The current state's number.
    pub fn head(&self) -> u64 {
        self.entries.back().map_or(self.base, |e| e.0)
    }

    /// Records a change of `key`; `objects` and `revised` are the changes to its kind's list
    /// length and revision count, `revisions` and `sources` the maps' new sizes.
    pub(crate) fn record(
        &mut self,
        key: &ObjectKey,
        objects: isize,
        revised: isize,
        revisions: usize,
        sources: usize,
    ) {
        if let Some(k) = kind_index(&key.kind) {
            let c = &mut self.counts[k];
            c.0 = c.0.saturating_add_signed(objects);
            c.1 = c.1.saturating_add_signed(revised);
        }
        self.revisions = revisions;
        self.sources = sources;
        let seq = NEXT.fetch_add(1, Ordering::Relaxed);
        if self.entries.len() >= CAPACITY {
            // Drop the older half at once: trimming one by one would do it on every change.
            let keep = self.entries.split_off(CAPACITY / 2);
            self.base = self.entries.back().map_or(self.base, |e| e.0);
            self.entries = keep;
        }
        self.entries.push_back((seq, key.clone()));
    }

    /// The keys changed since state `seen` (with repeats, oldest first), or None when this
    /// log cannot tell (another lineage, or older than the log reaches).
    pub fn since(&self, seen: u64) -> Option<impl Iterator<Item = &ObjectKey>> {
        let start = if seen == self.base {
            0
        } else {
            let i = self.entries.binary_search_by_key(&seen, |e| e.0).ok()?;
            i + 1
        };
        Some(self.entries.range(start..).map(|e| &e.1))
    }

    /// Whether the lists have the sizes the recorded changes left them with.
    pub(crate) fn matches(&self, sizes: &Sizes) -> bool {
        self.revisions == sizes.revisions
            && self.sources == sizes.sources
            && self.counts.iter().zip(&sizes.kinds).all(|(c, n)| c.0 == *n)
    }

    /// Whether kind `k`'s objects and revisions correspond one to one (no duplicate keys).
    pub fn consistent(&self, k: usize) -> bool {
        let c = self.counts[k];
        c.0 == c.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("HTTPRoute", "ns", name)
    }

    #[test]
    fn answers_for_states_it_covers() {
        let mut log = ChangeLog::default();
        assert_eq!(log.since(0).unwrap().count(), 0);
        log.record(&key("a"), 1, 1, 1, 1);
        let after_a = log.head();
        log.record(&key("b"), 1, 1, 2, 2);
        let names: Vec<_> = log.since(0).unwrap().map(|k| k.name.clone()).collect();
        assert_eq!(names, ["a", "b"]);
        let names: Vec<_> = log.since(after_a).unwrap().map(|k| &k.name).collect();
        assert_eq!(names, ["b"]);
        assert_eq!(log.since(log.head()).unwrap().count(), 0);
        // A number from another lineage.
        let mut other = log.clone();
        other.record(&key("c"), 1, 1, 3, 3);
        log.record(&key("d"), 1, 1, 3, 3);
        assert!(log.since(other.head()).is_none());
        assert!(other.since(log.head()).is_none());
        assert_eq!(other.since(after_a).unwrap().count(), 2);
    }

    #[test]
    fn truncates_and_then_cannot_answer_for_old_states() {
        let mut log = ChangeLog::default();
        log.record(&key("first"), 1, 1, 1, 1);
        let first = log.head();
        for i in 0..CAPACITY {
            log.record(&key(&i.to_string()), 0, 0, 1, 1);
        }
        assert!(log.since(first).is_none());
        assert!(log.since(0).is_none());
        let recent = log.head();
        log.record(&key("last"), 0, 0, 1, 1);
        assert_eq!(log.since(recent).unwrap().count(), 1);
        assert_eq!(log.counts[kind_index("HTTPRoute").unwrap()], (1, 1));
    }
}
