//! What `Translator` keeps between calls: per-route stage-one work, keyed by the route's
//! revision and by "generations" of the object kinds that work reads.
//!
//! Dependency rule (coarse on purpose, so that it is obviously correct):
//! - a compiled route (matches, actions, cluster recipes, notes) is reused while the route's
//!   revision is the same, the Services and Backends its compilation looked up have the same
//!   revisions (or are still absent), and none of ReferenceGrant, BackendTLSPolicy, ConfigMap
//!   changed (`compile` generation). EndpointSlices are not read by compilation. If any
//!   Service or Backend has no revision, the `compile` generation is fresh instead.
//! - its attachment (parentRef outcomes) and status are reused while the compiled route was
//!   reused and none of GatewayClass, Gateway, ListenerSet, Namespace, Secret, ConfigMap,
//!   ReferenceGrant, the options or the feedback changed (`attach` generation).
//! - a cluster with endpoints is reused while its compiled form is the same and no
//!   EndpointSlice changed (`slices` generation).
//!
//! A kind's generation is a hash of its objects' keys (in input order) and revisions. If any
//! object of the kind has no revision (or the revisions name other objects), the generation
//! is fresh on every call: nothing that depends on the kind is reused. When the input's
//! change log (`crate::changes`) can say what changed since the last call, a kind keeps its
//! generation unless one of its keys changed (then it gets a fresh one), and only changed
//! route, Service and Backend revisions are looked up: no walk over every revision.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use crate::changes::{ChangeLog, KINDS, kind_index};
use crate::input::{ObjectKey, Resources};
use crate::resolve::attach::ParentOutcome;
use crate::resolve::backends::ClusterEntry;
use crate::resolve::rules::CompiledRoute;
use crate::status::ObjectStatus;
use crate::{Feedback, Options};

/// A route compiled once: the route and the clusters its backendRefs produced.
pub struct Compiled {
    pub route: CompiledRoute,
    /// The clusters it names, first definition of each name kept.
    pub clusters: crate::resolve::backends::ClusterList,
}

/// A compiled route attached to its parents, and the status that follows.
pub struct Attached {
    pub outcomes: Vec<ParentOutcome>,
    /// None when no parentRef names a Portico parent (the route is not Portico's).
    pub status: Option<ObjectStatus>,
}

pub struct RouteMemo {
    pub key: ObjectKey,
    pub revision: u64,
    pub compile: u64,
    /// The Services and Backends compilation looked up (key hash) and their revisions then.
    pub deps: Arc<[(u64, Option<u64>)]>,
    pub compiled: Arc<Compiled>,
    pub attach: u64,
    pub attached: Option<Arc<Attached>>,
    /// The call that last used the entry (entries a call did not use are dropped).
    pub stamp: u64,
}

/// The last call's finished clusters, and for each (in name order) the compiled form and the
/// slices generation it was finished from: valid while the compiled form is the same (`Arc`
/// or content) and, for a cluster with EndpointSlices, the slices generation is.
pub struct ClusterMemo {
    pub finished: crate::resolve::routes::Finished,
    pub entries: Vec<(Arc<ClusterEntry>, u64)>,
}

/// For each entry of a status list, the memoised attachment it came from (if any).
type StatusSources = Vec<Option<Arc<Attached>>>;

/// The generations this call computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Generations {
    pub compile: u64,
    pub attach: u64,
    pub slices: u64,
}

/// What the change log says about routes this call.
pub struct FastPath {
    /// Key hashes of the HTTPRoutes and GRPCRoutes that changed, sorted.
    routes: Vec<u64>,
    /// Whether any Service or Backend changed (or they cannot be compared).
    deps_changed: bool,
    /// The changed keys, when every one is an HTTPRoute or GRPCRoute (sorted, unique).
    route_keys: Option<Vec<ObjectKey>>,
}

impl FastPath {
    /// Whether neither the route nor any Service or Backend changed since the last call.
    pub fn unchanged(&self, route: u64) -> bool {
        !self.deps_changed && self.routes.binary_search(&route).is_err()
    }

    /// The changed keys when only HTTPRoutes and GRPCRoutes changed (no Service or Backend).
    pub fn route_keys(&self) -> Option<&[ObjectKey]> {
        self.route_keys.as_deref().filter(|_| !self.deps_changed)
    }
}

/// How much of the last call was reused (for tests and benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reuse {
    pub routes_compiled: usize,
    pub routes_reused: usize,
    pub attachments_reused: usize,
    pub clusters_finished: usize,
    pub clusters_reused: usize,
    /// (listener, route) pairs whose virtual host entries were reused.
    pub route_entries_reused: usize,
    /// Whether the input's change log said what changed (else every revision was compared).
    pub change_log: bool,
    /// Whether the last result was patched (`patch`) rather than rebuilt.
    pub patched: bool,
}

impl Reuse {
    /// A call that handed out the previous result again: everything the previous call
    /// made or reused counts as reused.
    pub(crate) fn all_reused(&mut self) {
        self.routes_reused += std::mem::take(&mut self.routes_compiled);
        self.attachments_reused = self.routes_reused;
        self.clusters_reused += std::mem::take(&mut self.clusters_finished);
        self.change_log = true;
    }
}

/// Options and feedback are small: their debug form is their identity.
pub(crate) fn settings_hash(options: &Options, feedback: &Feedback) -> u64 {
    xxh3_64(format!("{options:?} {feedback:?}").as_bytes())
}

#[derive(Default)]
pub struct Memo {
    pub reuse: Reuse,
    pub vhosts: crate::resolve::vhost::VhostMemo,
    /// By key hash (`key_hash`); the entry's key is checked on every hit.
    pub routes: HashMap<u64, RouteMemo>,
    pub clusters: Option<ClusterMemo>,
    stamp: u64,
    /// Makes generations of kinds without usable revisions unique.
    volatile: u64,
    /// The last status list, and which memoised attachment each entry came from.
    pub(crate) statuses: Option<(Arc<Vec<ObjectStatus>>, StatusSources)>,
    /// What the patch path needs of the last result.
    pub(crate) last: Option<crate::resolve::patch::LastStage>,
    /// Route revisions of this call, by key hash.
    revisions: HashMap<u64, u64>,
    /// The change-log state of the input the last call saw (`Resources::changes`).
    seen: Option<u64>,
    /// Each kind's generation (by `changes::KINDS` index) as of the last call.
    kinds: [u64; KINDS.len()],
    /// This call's changed routes, when the change log told them and no key is duplicated.
    pub fast: Option<FastPath>,
    /// Service and Backend revisions of this call, by key hash.
    dep_revisions: HashMap<u64, u64>,
}

/// Hash of (kind, namespace, name).
pub fn key_hash(kind: &str, namespace: &str, name: &str) -> u64 {
    let mut h = Xxh3::new();
    h.update(kind.as_bytes());
    h.update(&[0]);
    h.update(namespace.as_bytes());
    h.update(&[0]);
    h.update(name.as_bytes());
    h.digest()
}

/// Namespace and name of an object as its `ObjectKey` spells them.
pub fn meta_names(meta: &ObjectMeta, namespaced: bool) -> (&str, &str) {
    let ns = if namespaced {
        meta.namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
    } else {
        ""
    };
    (ns, meta.name.as_deref().unwrap_or_default())
}

fn metas<T>(list: &[T], meta: impl Fn(&T) -> &ObjectMeta) -> Vec<&ObjectMeta> {
    list.iter().map(meta).collect()
}

/// Spreads a key hash so that sums of many hashes identify the set.
fn mix(h: u64) -> u64 {
    xxh3_64(&h.to_le_bytes())
}

impl Memo {
    /// The number the last full build stamped its route entries with.
    pub fn stamp(&self) -> u64 {
        self.stamp
    }

    /// A number no earlier call used, for the entries this call touches.
    pub fn next_stamp(&mut self) -> u64 {
        self.stamp += 1;
        self.stamp
    }

    fn kind_generation<'a>(
        &mut self,
        res: &Resources,
        kind: &str,
        namespaced: bool,
        metas: impl Iterator<Item = &'a ObjectMeta>,
    ) -> u64 {
        // Input side: order-sensitive hash of the keys, and an order-free fingerprint.
        let mut order = Xxh3::new();
        let (mut count, mut sum) = (0usize, 0u64);
        for meta in metas {
            let (ns, name) = meta_names(meta, namespaced);
            let h = key_hash(kind, ns, name);
            order.update(&h.to_le_bytes());
            count += 1;
            sum = sum.wrapping_add(mix(h));
        }
        // Revision side: the same fingerprint over the keys that have revisions.
        let start = ObjectKey::new(kind, "", "");
        let mut revs = Xxh3::new();
        let (mut rcount, mut rsum) = (0usize, 0u64);
        for (key, rev) in res.revisions.range(start..) {
            if key.kind != kind {
                break;
            }
            let h = key_hash(kind, &key.namespace, &key.name);
            revs.update(&h.to_le_bytes());
            revs.update(&rev.to_le_bytes());
            rcount += 1;
            rsum = rsum.wrapping_add(mix(h));
        }
        if count != rcount || sum != rsum {
            self.volatile += 1;
            return xxh3_64(format!("volatile {kind} {}", self.volatile).as_bytes());
        }
        order.update(&revs.digest().to_le_bytes());
        order.digest()
    }

    /// Key hashes of looked-up Services and Backends with their current revisions.
    pub fn deps(&self, lookups: &[u64]) -> Arc<[(u64, Option<u64>)]> {
        let mut deps: Vec<(u64, Option<u64>)> = lookups
            .iter()
            .map(|h| (*h, self.dep_revisions.get(h).copied()))
            .collect();
        deps.sort_unstable();
        deps.dedup();
        deps.into()
    }

    /// Whether every recorded dependency still has the revision it had.
    pub fn deps_unchanged(&self, deps: &[(u64, Option<u64>)]) -> bool {
        deps.iter()
            .all(|(h, rev)| self.dep_revisions.get(h).copied() == *rev)
    }

    /// Computes this call's generations and route revisions: from the change log when the
    /// input can say what changed since the last call, else by comparing every revision.
    pub fn begin(
        &mut self,
        res: &Resources,
        options: &Options,
        feedback: &Feedback,
    ) -> Generations {
        self.reuse = Reuse::default();
        self.fast = None;
        let log = res.changes();
        let changed = match (self.seen, log) {
            (Some(seen), Some(log)) => log.since(seen),
            _ => None,
        };
        let lookups = match (changed, log) {
            (Some(keys), Some(log)) => {
                self.reuse.change_log = true;
                self.apply_changes(res, log, keys)
            }
            _ => self.compare_all(res),
        };
        self.seen = log.map(ChangeLog::head);
        let g = |kind: &str| kind_index(kind).map_or(0, |k| self.kinds[k]);
        let combine = |parts: &[u64]| {
            let mut h = Xxh3::new();
            for p in parts {
                h.update(&p.to_le_bytes());
            }
            h.digest()
        };
        let settings = settings_hash(options, feedback);
        let (grants, config_maps) = (g("ReferenceGrant"), g("ConfigMap"));
        Generations {
            compile: combine(&[lookups, grants, g("BackendTLSPolicy"), config_maps]),
            attach: combine(&[
                g("GatewayClass"),
                g("Gateway"),
                g("ListenerSet"),
                g("Namespace"),
                g("Secret"),
                config_maps,
                grants,
                settings,
            ]),
            slices: g("EndpointSlice"),
        }
    }

    /// A generation no call used before, for a kind that changed (or cannot be compared).
    fn fresh(&mut self, kind: &str) -> u64 {
        self.volatile += 1;
        xxh3_64(format!("volatile {kind} {}", self.volatile).as_bytes())
    }

    /// The log's way: only the changed keys' kinds get new generations, only their
    /// revisions are looked up. Returns the `lookups` part of the compile generation.
    fn apply_changes<'a>(
        &mut self,
        res: &Resources,
        log: &ChangeLog,
        keys: impl Iterator<Item = &'a ObjectKey>,
    ) -> u64 {
        let mut touched = [false; KINDS.len()];
        let mut routes = Vec::new();
        let mut route_keys = Some(Vec::new());
        for key in keys {
            match (&mut route_keys, key.kind.as_str()) {
                (Some(list), "HTTPRoute" | "GRPCRoute") => list.push(key.clone()),
                _ => route_keys = None,
            }
            let Some(k) = kind_index(&key.kind) else {
                continue;
            };
            touched[k] = true;
            if key.kind.ends_with("Route") {
                routes.push(key_hash(&key.kind, &key.namespace, &key.name));
            }
            let map = match key.kind.as_str() {
                "HTTPRoute" | "GRPCRoute" => &mut self.revisions,
                "Service" | crate::backend_kind::KIND => &mut self.dep_revisions,
                _ => continue,
            };
            let h = key_hash(&key.kind, &key.namespace, &key.name);
            match res.revisions.get(key) {
                Some(rev) => map.insert(h, *rev),
                None => map.remove(&h),
            };
        }
        for (k, kind) in KINDS.iter().enumerate() {
            if touched[k] || !log.consistent(k) {
                self.kinds[k] = self.fresh(kind);
            }
        }
        let volatile = |kind: &str| kind_index(kind).is_none_or(|k| !log.consistent(k));
        let deps_volatile = volatile("Service") || volatile(crate::backend_kind::KIND);
        if !volatile("HTTPRoute") && !volatile("GRPCRoute") {
            routes.sort_unstable();
            if let Some(list) = &mut route_keys {
                list.sort();
                list.dedup();
            }
            let touched = |kind: &str| kind_index(kind).is_some_and(|k| touched[k]);
            self.fast = Some(FastPath {
                route_keys,
                routes,
                deps_changed: deps_volatile
                    || touched("Service")
                    || touched(crate::backend_kind::KIND),
            });
        }
        if deps_volatile {
            self.fresh("lookups")
        } else {
            0
        }
    }

    /// Every kind's generation from all its keys and revisions, and every route, Service and
    /// Backend revision. Returns the `lookups` part of the compile generation.
    fn compare_all(&mut self, res: &Resources) -> u64 {
        let volatile = self.volatile;
        let metas: [(&str, bool, Vec<&ObjectMeta>); 11] = [
            ("Service", true, metas(&res.services, |o| &o.metadata)),
            (
                crate::backend_kind::KIND,
                true,
                metas(&res.backends, |o| &o.metadata),
            ),
            (
                "ReferenceGrant",
                true,
                metas(&res.reference_grants, |o| &o.metadata),
            ),
            (
                "BackendTLSPolicy",
                true,
                metas(&res.backend_tls_policies, |o| &o.metadata),
            ),
            ("ConfigMap", true, metas(&res.config_maps, |o| &o.metadata)),
            (
                "GatewayClass",
                false,
                metas(&res.gateway_classes, |o| &o.metadata),
            ),
            ("Gateway", true, metas(&res.gateways, |o| &o.metadata)),
            (
                "ListenerSet",
                true,
                metas(&res.listener_sets, |o| &o.metadata),
            ),
            ("Namespace", false, metas(&res.namespaces, |o| &o.metadata)),
            ("Secret", true, metas(&res.secrets, |o| &o.metadata)),
            (
                "EndpointSlice",
                true,
                metas(&res.endpoint_slices, |o| &o.metadata),
            ),
        ];
        let mut lookups = 0;
        for (i, (kind, namespaced, list)) in metas.into_iter().enumerate() {
            let generation = self.kind_generation(res, kind, namespaced, list.into_iter());
            if let Some(k) = kind_index(kind) {
                self.kinds[k] = generation;
            }
            // Routes depend on the Services and Backends they look up, by revision; only
            // when those kinds lack usable revisions do all routes depend on all of them.
            if i == 1 && self.volatile != volatile {
                lookups = self.fresh("lookups");
            }
        }
        self.dep_revisions.clear();
        self.revisions.clear();
        for kind in [
            "Service",
            crate::backend_kind::KIND,
            "HTTPRoute",
            "GRPCRoute",
        ] {
            let map = if kind.ends_with("Route") {
                &mut self.revisions
            } else {
                &mut self.dep_revisions
            };
            let start = ObjectKey::new(kind, "", "");
            for (key, rev) in res.revisions.range(start..) {
                if key.kind != kind {
                    break;
                }
                map.insert(key_hash(kind, &key.namespace, &key.name), *rev);
            }
        }
        lookups
    }

    /// The status list: the previous one again when every entry is the same (the same
    /// memoised attachment, or an equal value); the previous one patched where only some
    /// entries differ (in place when the caller no longer holds it); else a new one.
    pub fn statuses(
        &mut self,
        merged: &[(&ObjectStatus, Option<&Arc<Attached>>)],
    ) -> Arc<Vec<ObjectStatus>> {
        let sources: StatusSources = merged.iter().map(|(_, a)| a.cloned()).collect();
        if let Some((mut prev, prev_sources)) = self.statuses.take()
            && prev.len() == merged.len()
        {
            let same = |i: usize| match (merged[i].1, &prev_sources[i]) {
                (Some(a), Some(p)) if Arc::ptr_eq(a, p) => true,
                _ => *merged[i].0 == prev[i],
            };
            let changed: Vec<usize> = (0..merged.len()).filter(|i| !same(*i)).collect();
            if changed.len() <= merged.len() / 4 {
                if !changed.is_empty() {
                    let list = Arc::make_mut(&mut prev);
                    for i in changed {
                        list[i] = merged[i].0.clone();
                    }
                }
                self.statuses = Some((prev.clone(), sources));
                return prev;
            }
        }
        let list = Arc::new(crate::par::map(merged, |(s, _)| (*s).clone()));
        self.statuses = Some((list.clone(), sources));
        list
    }

    /// A route's revision, by key hash.
    pub fn revision(&self, route: u64) -> Option<u64> {
        self.revisions.get(&route).copied()
    }

    /// Each route's revision (by key hash, in input order); None for a route without one
    /// and for every route whose key appears twice.
    pub fn route_revisions(&mut self, hashes: &[u64]) -> Vec<Option<u64>> {
        let mut seen = HashSet::with_capacity(hashes.len());
        let dupes: HashSet<u64> = hashes
            .iter()
            .filter(|h| !seen.insert(**h))
            .copied()
            .collect();
        hashes
            .iter()
            .map(|h| {
                if dupes.contains(h) {
                    self.routes.remove(h);
                    return None;
                }
                self.revisions.get(h).copied()
            })
            .collect()
    }
}
