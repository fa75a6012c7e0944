//! Subscriptions shared between streams. Every Envoy of a fleet subscribes to the same EDS
//! and RDS names (those its clusters and listeners refer to), so a stream keeps a pointer to
//! one set per distinct subscription instead of its own copy: with a thousand clusters that
//! copy was most of what a stream cost.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};

use crate::cache::lock;

/// A subscription's names. Change it with `Arc::make_mut`, then share it again through
/// [`Interner::intern`].
pub(crate) type Names = Arc<BTreeSet<String>>;

#[derive(Default)]
struct Sets {
    by_hash: HashMap<u64, Vec<Weak<BTreeSet<String>>>>,
    /// Drop dead entries once the map grows past this.
    prune_at: usize,
}

/// Distinct subscriptions currently held by some stream.
#[derive(Default)]
pub(crate) struct Interner {
    sets: Mutex<Sets>,
}

impl Interner {
    /// The shared set equal to `names`, or `names` itself (now shared) if no stream holds it.
    pub(crate) fn intern(&self, names: Names) -> Names {
        let hash = hash(&names);
        let mut sets = lock(&self.sets);
        let bucket = sets.by_hash.entry(hash).or_default();
        if let Some(found) = bucket
            .iter()
            .filter_map(Weak::upgrade)
            .find(|s| Arc::ptr_eq(s, &names) || **s == *names)
        {
            return found;
        }
        bucket.retain(|w| w.strong_count() > 0);
        bucket.push(Arc::downgrade(&names));
        if sets.by_hash.len() >= sets.prune_at {
            sets.by_hash
                .retain(|_, b| b.iter().any(|w| w.strong_count() > 0));
            sets.prune_at = (2 * sets.by_hash.len()).max(64);
        }
        names
    }

    #[cfg(test)]
    fn live(&self) -> usize {
        lock(&self.sets)
            .by_hash
            .values()
            .flatten()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

fn hash(names: &BTreeSet<String>) -> u64 {
    hasher(names).digest()
}

/// xxh3 over the names in order, each with its length in front: that keeps ("ab","c") and
/// ("a","bc") apart.
fn hasher<'a>(names: impl IntoIterator<Item = &'a String>) -> xxhash_rust::xxh3::Xxh3 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for name in names {
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
    }
    h
}

/// Identifies a SotW request's name list as sent (order and duplicates included): a request
/// with the same list as the last applied one leaves the subscription as it is.
pub(crate) fn list_hash(names: &[String]) -> u128 {
    hasher(names).digest128()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> Names {
        Arc::new(names.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn equal_subscriptions_share_one_set() {
        let interner = Interner::default();
        let a = interner.intern(set(&["a", "b"]));
        let b = interner.intern(set(&["b", "a"]));
        let c = interner.intern(set(&["a", "bb"]));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(interner.live(), 2);
        let mut changed = b.clone();
        Arc::make_mut(&mut changed).insert("c".into());
        assert_eq!(a.len(), 2);
        let changed = interner.intern(changed);
        assert_eq!(changed.len(), 3);
        drop((a, b, c));
        assert_eq!(interner.live(), 1);
        assert_ne!(
            list_hash(&["ab".into(), "c".into()]),
            list_hash(&["a".into(), "bc".into()])
        );
    }
}
