//! `FleetConfig::origins`: which input objects produced each resource of a fleet.
//!
//! A fleet with thousands of clusters has tens of thousands of resources. A map of them
//! would cost several allocations per resource on every translation, and it is read only
//! when Envoy rejects something (to name the objects behind it). So `Origins` keeps what
//! the map would be made from, shared with the IR (the fleet's cluster map, each port's
//! origin list), and answers from that when asked.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::ObjectKey;
use crate::ir;
use crate::render;

/// (type URL, resource name) -> the input objects that produced it, for one fleet.
#[derive(Clone, Debug, Default)]
pub struct Origins {
    /// Each cluster's origins name its Cluster, and its ClusterLoadAssignment when it uses
    /// EDS.
    clusters: Arc<BTreeMap<String, Arc<ir::Cluster>>>,
    /// Listeners, route configurations and secrets: (type URL, name, origins), in the order
    /// they were added; a later entry for the same resource replaces an earlier one.
    others: Vec<(&'static str, String, Arc<Vec<ObjectKey>>)>,
}

impl Origins {
    pub fn new(clusters: Arc<BTreeMap<String, Arc<ir::Cluster>>>) -> Self {
        Origins {
            clusters,
            others: Vec::new(),
        }
    }

    /// Adds a listener's, route configuration's or secret's origins.
    pub fn push(&mut self, type_url: &'static str, name: String, keys: Arc<Vec<ObjectKey>>) {
        self.others.push((type_url, name, keys));
    }

    /// The objects behind one resource.
    pub fn get(&self, type_url: &str, name: &str) -> Option<&[ObjectKey]> {
        let cluster = |eds_only: bool| {
            let c = self.clusters.get(name)?;
            (!eds_only || matches!(c.discovery, ir::Discovery::Eds(_))).then_some(&c.origins[..])
        };
        match type_url {
            render::CLUSTER => cluster(false),
            render::ENDPOINT => cluster(true),
            _ => (self.others.iter().rev())
                .find(|(t, n, _)| *t == type_url && n == name)
                .map(|(_, _, keys)| &keys[..]),
        }
    }

    /// Every resource with its origins, by (type URL, name).
    pub fn iter(&self) -> impl Iterator<Item = ((&'static str, &str), &[ObjectKey])> {
        let clusters = self.clusters.values();
        let mut all: Vec<((&'static str, &str), &[ObjectKey])> = (clusters.clone())
            .map(|c| ((render::CLUSTER, c.name.as_str()), &c.origins[..]))
            .chain(
                clusters
                    .filter(|c| matches!(c.discovery, ir::Discovery::Eds(_)))
                    .map(|c| ((render::ENDPOINT, c.name.as_str()), &c.origins[..])),
            )
            .chain((self.others.iter()).map(|(t, n, keys)| ((*t, n.as_str()), &keys[..])))
            .collect();
        // Stable: of entries for the same resource, the last added ends up last and is kept.
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept: Vec<((&'static str, &str), &[ObjectKey])> = Vec::with_capacity(all.len());
        for e in all {
            match kept.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => kept.push(e),
            }
        }
        kept.into_iter()
    }

    /// Made from the same cluster map (`Arc`) and equal other entries: then the same
    /// entries. (A list is compared only when it is not the same `Arc`: a secret's, made
    /// anew on every call, or a port's that changed.)
    fn same_inputs(&self, other: &Origins) -> bool {
        Arc::ptr_eq(&self.clusters, &other.clusters)
            && self.others.len() == other.others.len()
            && (self.others.iter().zip(&other.others))
                .all(|(a, b)| a.0 == b.0 && a.1 == b.1 && (Arc::ptr_eq(&a.2, &b.2) || a.2 == b.2))
    }
}

impl PartialEq for Origins {
    fn eq(&self, other: &Self) -> bool {
        self.same_inputs(other) || self.iter().eq(other.iter())
    }
}

/// The previous call's origins, by fleet: handed out again (the same `Arc`) while made from
/// the same cluster map and equal other entries, so that consumers can tell unchanged
/// origins by their pointer.
#[derive(Default)]
pub struct OriginsMemo {
    prev: HashMap<ObjectKey, Arc<Origins>>,
    next: HashMap<ObjectKey, Arc<Origins>>,
}

impl OriginsMemo {
    /// `origins`, or the previous call's when made from the same pieces (`same_inputs`).
    pub fn share(&mut self, gateway: &ObjectKey, origins: Origins) -> Arc<Origins> {
        let shared = match self.prev.get(gateway) {
            Some(p) if p.same_inputs(&origins) => p.clone(),
            _ => Arc::new(origins),
        };
        self.next.insert(gateway.clone(), shared.clone());
        shared
    }

    /// Ends a call: origins of fleets this call did not build are forgotten.
    pub fn end(&mut self) {
        self.prev = std::mem::take(&mut self.next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("HTTPRoute", "ns", name)
    }

    fn cluster(name: &str, eds: bool) -> Arc<ir::Cluster> {
        Arc::new(ir::Cluster {
            name: name.into(),
            protocol: ir::UpstreamProtocol::Http1,
            discovery: if eds {
                ir::Discovery::Eds(Vec::new())
            } else {
                ir::Discovery::Dns(Vec::new())
            },
            tls: None,
            origins: vec![key(name)],
        })
    }

    #[test]
    fn entries_sorted_later_ones_win_and_same_pieces_are_shared() {
        let clusters: Arc<BTreeMap<String, Arc<ir::Cluster>>> = Arc::new(
            [cluster("c1", true), cluster("c0", false)]
                .into_iter()
                .map(|c| (c.name.clone(), c))
                .collect(),
        );
        let (a, b) = (Arc::new(vec![key("a")]), Arc::new(vec![key("b")]));
        let build = || {
            let mut o = Origins::new(clusters.clone());
            o.push(render::ROUTE, "x".into(), a.clone());
            o.push(render::LISTENER, "y".into(), a.clone());
            o.push(render::ROUTE, "x".into(), b.clone());
            o
        };
        let o = build();
        let got: Vec<String> = o
            .iter()
            .map(|((t, n), k)| format!("{} {n} {}", t.rsplit('.').next().unwrap(), k[0].name))
            .collect();
        assert_eq!(
            got,
            [
                "Cluster c0 c0",
                "Cluster c1 c1",
                "ClusterLoadAssignment c1 c1",
                "Listener y a",
                "RouteConfiguration x b",
            ]
        );
        assert_eq!(o.get(render::ENDPOINT, "c0"), None);
        assert_eq!(o.get(render::ROUTE, "x").unwrap()[0].name, "b");
        let mut memo = OriginsMemo::default();
        let gw = ObjectKey::new("Gateway", "ns", "gw");
        let first = memo.share(&gw, build());
        memo.end();
        assert!(Arc::ptr_eq(&memo.share(&gw, build()), &first));
        memo.end();
        // Equal lists that are not the same `Arc`s (a secret's are made on every call).
        let mut copied = Origins::new(clusters.clone());
        for (t, n, keys) in [
            (render::ROUTE, "x", &a),
            (render::LISTENER, "y", &a),
            (render::ROUTE, "x", &b),
        ] {
            copied.push(t, n.into(), Arc::new(keys.to_vec()));
        }
        assert!(Arc::ptr_eq(&memo.share(&gw, copied), &first));
        memo.end();
        let mut other = Origins::new(clusters.clone());
        other.push(render::ROUTE, "x".into(), Arc::new(vec![key("b")]));
        assert!(!Arc::ptr_eq(&memo.share(&gw, other), &first));
    }
}
