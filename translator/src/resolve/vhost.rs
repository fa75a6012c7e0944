//! Virtual hosts: the routes placed on one Gateway listener, in the spec's precedence order.
//! `Translator` keeps each route's entries per listener (`VhostMemo`), so that only changed
//! routes are rebuilt, and each listener's sorted entries, which a call patches (removes the
//! changed routes' entries, inserts their new ones) instead of sorting all again.

use std::cmp::{Ordering, Reverse};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use crate::input::ObjectKey;
use crate::ir::{self, Action, PathMatch, PathRewrite, PortProtocol, VirtualHost};
use crate::par;
use crate::render::PtrMap;
use crate::resolve::build::{host_rank, listener_id};
use crate::resolve::listener::ListenerModel;
use crate::resolve::memo::Compiled;

/// Precedence of one entry, before the per-route tie-breakers (creation time, name).
type Rank = (
    (u8, Reverse<usize>),
    (u8, Reverse<usize>),
    bool,
    Reverse<usize>,
    Reverse<usize>,
    bool,
);

/// A port's origins, as `ir::Port` holds them.
type PortOrigins = Arc<Vec<ObjectKey>>;

/// A fleet's clusters by name, as `ir::Fleet` holds them.
pub type FleetClusters = Arc<std::collections::BTreeMap<String, Arc<ir::Cluster>>>;

/// One route's entries on one listener: (rank, rule index, match index, route).
pub struct RouteEntries {
    /// `namespace/name`, a tie-breaker.
    full_name: String,
    /// The route: its creation timestamp and kind are tie-breakers too.
    compiled: Arc<Compiled>,
    items: Vec<(Rank, usize, usize, Arc<ir::Route>)>,
}

impl RouteEntries {
    fn created(&self) -> &str {
        &self.compiled.route.head.created
    }

    fn kind(&self) -> &str {
        &self.compiled.route.head.key.kind
    }
}

/// What a listener contributes to its routes' entries.
#[derive(Clone, PartialEq)]
struct ListenerSig {
    id: String,
    hostname: Option<String>,
    protocol: Option<PortProtocol>,
    port: u16,
}

/// One entry of a listener's sorted list: item `index` of `entries`.
#[derive(Clone)]
struct Item {
    entries: Arc<RouteEntries>,
    index: usize,
}

/// The spec's precedence order over entries: rank, creation time (unknown last), name, rule
/// and match index, then kind (GRPCRoute and HTTPRoute of one name) and hostname order.
/// The same total order the sort keys of `sort_entries` give.
fn precedence(a: &Item, b: &Item) -> Ordering {
    let (ea, eb) = (&*a.entries, &*b.entries);
    let (xa, xb) = (&ea.items[a.index], &eb.items[b.index]);
    (xa.0, ea.created().is_empty())
        .cmp(&(xb.0, eb.created().is_empty()))
        .then_with(|| ea.created().cmp(eb.created()))
        .then_with(|| ea.full_name.cmp(&eb.full_name))
        .then_with(|| (xa.1, xa.2).cmp(&(xb.1, xb.2)))
        .then_with(|| ea.kind().cmp(eb.kind()))
        .then_with(|| a.index.cmp(&b.index))
}

struct Cached {
    /// Held so that its address, the key, is not reused while the entry lives.
    _compiled: Arc<Compiled>,
    hostnames: Vec<String>,
    entries: Arc<RouteEntries>,
    /// The virtual-host build that last used the entry (`ListenerMemo::build`).
    build: u64,
}

/// One listener's routes' entries, by compiled route (address), and all its entries in
/// precedence order as the last build left them.
struct ListenerMemo {
    sig: ListenerSig,
    routes: PtrMap<Cached>,
    sorted: Vec<Item>,
    /// The routes of `sorted`, in its order: the virtual host's list, shared.
    list: Arc<Vec<Arc<ir::Route>>>,
    build: u64,
    /// The call that last used the listener.
    stamp: u64,
}

/// Entries by listener and route, valid while the compiled route (`Arc`), its narrowed
/// hostnames and the listener's name, hostname, protocol and port are the same; and each
/// listener's sorted entries, patched where few routes changed.
#[derive(Default)]
pub struct VhostMemo {
    listeners: HashMap<String, ListenerMemo>,
    /// Each port's origins by (Gateway, port name), with the call that last used them.
    origins: HashMap<(ObjectKey, String), (u64, PortOrigins)>,
    /// Each fleet's cluster map by Gateway, with the call that last used it.
    clusters: HashMap<ObjectKey, (u64, FleetClusters)>,
    stamp: u64,
    pub reused: usize,
}

impl VhostMemo {
    /// Ends a call: listeners and ports this call did not use are forgotten.
    pub fn end(&mut self) {
        let stamp = self.stamp;
        self.listeners.retain(|_, l| l.stamp == stamp);
        self.origins.retain(|_, o| o.0 == stamp);
        self.clusters.retain(|_, c| c.0 == stamp);
        self.stamp += 1;
    }

    /// A fleet's cluster map: the previous call's again when it holds the same clusters
    /// (`Arc`s), else `whole` (when the fleet uses every cluster as it is), else a new one.
    pub fn fleet_clusters(
        &mut self,
        gateway: &ObjectKey,
        used: Vec<(&String, Arc<ir::Cluster>)>,
        whole: Option<&FleetClusters>,
    ) -> FleetClusters {
        let stamp = self.stamp;
        if let Some((last, prev)) = self.clusters.get_mut(gateway)
            && prev.len() == used.len()
            && prev
                .iter()
                .zip(&used)
                .all(|((pn, pc), (n, c))| Arc::ptr_eq(pc, c) && pn == *n)
        {
            *last = stamp;
            return prev.clone();
        }
        let map: FleetClusters = match whole {
            Some(all) => all.clone(),
            None => Arc::new(used.into_iter().map(|(n, c)| (n.clone(), c)).collect()),
        };
        self.clusters.insert(gateway.clone(), (stamp, map.clone()));
        map
    }

    /// One route's entries on one listener replaced (the route was compiled again; its
    /// placement did not change): the listener's sorted entries patched, and its routes in
    /// precedence order. None where the memo cannot say: the listener was not built last
    /// call or has changed, the route is not there with these hostnames, it gains or loses
    /// every entry, or precedence ties (the listener's memo is then dropped: unusable).
    pub fn replace_route(
        &mut self,
        l: &ListenerModel,
        old: &Arc<Compiled>,
        new: &Arc<Compiled>,
        hostnames: &[String],
    ) -> Option<Arc<Vec<Arc<ir::Route>>>> {
        let sig = listener_sig(l);
        let lm = self.listeners.get_mut(&sig.id).filter(|lm| lm.sig == sig)?;
        let old_key = Arc::as_ptr(old) as usize;
        let removed = lm
            .routes
            .get(&old_key)
            .filter(|c| c.hostnames == hostnames)?
            .entries
            .clone();
        let built = Arc::new(entries(l, new, hostnames));
        if built.items.is_empty() != removed.items.is_empty() {
            return None;
        }
        let list = Arc::make_mut(&mut lm.list);
        if !patch(
            &mut lm.sorted,
            list,
            &[removed],
            std::slice::from_ref(&built),
        ) {
            self.listeners.remove(&sig.id);
            return None;
        }
        lm.routes.remove(&old_key);
        let cached = Cached {
            _compiled: new.clone(),
            hostnames: hostnames.to_vec(),
            entries: built,
            build: lm.build,
        };
        lm.routes.insert(Arc::as_ptr(new) as usize, cached);
        Some(lm.list.clone())
    }

    /// Drops a listener's memo: its next build starts over.
    pub fn forget_listener(&mut self, id: &str) {
        self.listeners.remove(id);
    }

    /// A port's origins: the previous call's list again when equal (no copies of thousands
    /// of keys), else a new one.
    pub fn port_origins(
        &mut self,
        gateway: &ObjectKey,
        port: &str,
        keys: &[&ObjectKey],
    ) -> Arc<Vec<ObjectKey>> {
        let stamp = self.stamp;
        let id = (gateway.clone(), port.to_string());
        if let Some((used, prev)) = self.origins.get_mut(&id)
            && prev.len() == keys.len()
            && prev.iter().zip(keys).all(|(a, b)| a == *b)
        {
            *used = stamp;
            return prev.clone();
        }
        let list = Arc::new(par::map(keys, |k| (*k).clone()));
        self.origins.insert(id, (stamp, list.clone()));
        list
    }
}

/// The listener's virtual host, and the routes (indexes into `routes`, ascending as in
/// `placed`) that have entries in it.
pub fn virtual_host(
    l: &ListenerModel,
    routes: &[Arc<Compiled>],
    placed: &[(usize, Vec<String>)],
    memo: Option<&mut VhostMemo>,
    garbage: &mut par::Garbage,
) -> (VirtualHost, Vec<usize>) {
    let domain = l
        .spec
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "*".into());
    let sig = listener_sig(l);
    let (per_route, ordered) = match memo {
        // A route placed twice on one listener (two parentRefs) has two sets of entries:
        // the memo keeps one per route, so such a listener is built from scratch.
        Some(m) if !placed.windows(2).any(|w| w[0].0 == w[1].0) => {
            memoised(l, routes, placed, &sig, m)
        }
        _ => {
            let per_route: Vec<Arc<RouteEntries>> = par::map(placed, |(ri, hostnames)| {
                Arc::new(entries(l, &routes[*ri], hostnames))
            });
            let ordered = route_list(&sort_entries(&per_route));
            (per_route, Arc::new(ordered))
        }
    };
    let vh = VirtualHost {
        name: sig.id,
        domains: vec![domain],
        routes: ordered,
    };
    let used = placed
        .iter()
        .zip(&per_route)
        .filter(|(_, e)| !e.items.is_empty())
        .map(|((ri, _), _)| *ri)
        .collect();
    // Without a memo, the only references to thousands of entries.
    garbage.vec(per_route);
    (vh, used)
}

fn listener_sig(l: &ListenerModel) -> ListenerSig {
    ListenerSig {
        id: listener_id(l),
        hostname: l.spec.hostname.clone(),
        protocol: l.protocol,
        port: l.port,
    }
}

fn route_list(items: &[Item]) -> Vec<Arc<ir::Route>> {
    items
        .iter()
        .map(|it| it.entries.items[it.index].3.clone())
        .collect()
}

/// Each placed route's entries (reused where valid) and all routes in precedence order: the
/// previous order patched when few routes changed, else sorted again.
fn memoised(
    l: &ListenerModel,
    routes: &[Arc<Compiled>],
    placed: &[(usize, Vec<String>)],
    sig: &ListenerSig,
    m: &mut VhostMemo,
) -> (Vec<Arc<RouteEntries>>, Arc<Vec<Arc<ir::Route>>>) {
    let stamp = m.stamp;
    let lm = m
        .listeners
        .entry(sig.id.clone())
        .or_insert_with(|| ListenerMemo {
            sig: sig.clone(),
            routes: PtrMap::default(),
            sorted: Vec::new(),
            list: Arc::default(),
            build: 0,
            stamp,
        });
    if lm.sig != *sig {
        lm.sig = sig.clone();
        lm.routes.clear();
        lm.sorted.clear();
        lm.list = Arc::default();
    }
    lm.stamp = stamp;
    lm.build += 1;
    let build = lm.build;
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let mut hits = Vec::with_capacity(placed.len());
    // Cached entries first; the others built (in parallel when many), then cached.
    let per_route: Vec<Arc<RouteEntries>> = par::map_or_make(
        placed,
        |placement| {
            let (ri, hostnames) = placement;
            let hit = lm
                .routes
                .get_mut(&(Arc::as_ptr(&routes[*ri]) as usize))
                .filter(|c| c.hostnames == *hostnames)
                .map(|c| {
                    c.build = build;
                    c.entries.clone()
                });
            hits.push(hit.is_some());
            hit.ok_or(placement)
        },
        |(ri, hostnames)| Arc::new(entries(l, &routes[*ri], hostnames)),
    );
    for (((ri, hostnames), built), _) in placed
        .iter()
        .zip(&per_route)
        .zip(&hits)
        .filter(|(_, hit)| !**hit)
    {
        let compiled = &routes[*ri];
        let c = Cached {
            _compiled: compiled.clone(),
            hostnames: hostnames.clone(),
            entries: built.clone(),
            build,
        };
        match lm.routes.get_mut(&(Arc::as_ptr(compiled) as usize)) {
            Some(old) => removed.push(std::mem::replace(old, c).entries),
            None => {
                lm.routes.insert(Arc::as_ptr(compiled) as usize, c);
            }
        }
        added.push(built.clone());
    }
    m.reused += hits.iter().filter(|h| **h).count();
    lm.routes.retain(|_, c| {
        if c.build == build {
            return true;
        }
        removed.push(c.entries.clone());
        false
    });
    // Patching moves the tail of the list per entry: worth it for a few routes.
    let changed: usize = added.iter().chain(&removed).map(|e| e.items.len()).sum();
    // Nothing changed: the same list (no copy, and stage two knows it by its pointer).
    if changed == 0 && build > 1 {
        return (per_route, lm.list.clone());
    }
    if !(build > 1
        && changed <= lm.sorted.len() / 8 + 8
        && patch(
            &mut lm.sorted,
            Arc::make_mut(&mut lm.list),
            &removed,
            &added,
        ))
    {
        lm.sorted = sort_entries(&per_route);
        lm.list = Arc::new(route_list(&lm.sorted));
    }
    (per_route, lm.list.clone())
}

/// Removes the entries of `removed` from the sorted list and inserts those of `added`, and
/// the same routes at the same places in `list` (the routes of `sorted`, in order).
/// False (the list is then unusable) where precedence cannot place an entry: two routes
/// with the same key (duplicate objects) tie, and only a full sort orders them.
fn patch(
    sorted: &mut Vec<Item>,
    list: &mut Vec<Arc<ir::Route>>,
    removed: &[Arc<RouteEntries>],
    added: &[Arc<RouteEntries>],
) -> bool {
    for e in removed {
        for index in 0..e.items.len() {
            let item = Item {
                entries: e.clone(),
                index,
            };
            match sorted.binary_search_by(|x| precedence(x, &item)) {
                Ok(at) if Arc::ptr_eq(&sorted[at].entries, e) => {
                    sorted.remove(at);
                    list.remove(at);
                }
                _ => return false,
            }
        }
    }
    for e in added {
        for index in 0..e.items.len() {
            let item = Item {
                entries: e.clone(),
                index,
            };
            let at = sorted.partition_point(|x| precedence(x, &item) == Ordering::Less);
            if sorted
                .get(at)
                .is_some_and(|x| precedence(x, &item) == Ordering::Equal)
            {
                return false;
            }
            list.insert(at, e.items[index].3.clone());
            sorted.insert(at, item);
        }
    }
    true
}

/// All entries of these routes (in key order), sorted. Sort keys and entries are kept
/// apart: sorting moves only small keys.
fn sort_entries(per_route: &[Arc<RouteEntries>]) -> Vec<Item> {
    let mut keys = Vec::with_capacity(per_route.iter().map(|e| e.items.len()).sum());
    for (i, e) in per_route.iter().enumerate() {
        for (j, (rank, rule_index, mi, _)) in e.items.iter().enumerate() {
            keys.push((
                (*rank, e.created().is_empty()),
                SortStr::new(e.created()),
                SortStr::new(&e.full_name),
                *rule_index,
                *mi,
                (i, j),
            ));
        }
    }
    // The last part, (route, entry), makes keys unique: unstable sorting is stable here.
    par::sort_unstable(&mut keys);
    keys.iter()
        .map(|k| Item {
            entries: per_route[k.5.0].clone(),
            index: k.5.1,
        })
        .collect()
}

/// One route's entries on one listener: one per (hostname, rule, match).
fn entries(l: &ListenerModel, compiled: &Arc<Compiled>, hostnames: &[String]) -> RouteEntries {
    let route = &compiled.route;
    let key = &route.head.key;
    let lower;
    let kind = match key.kind.as_str() {
        "HTTPRoute" => "httproute",
        "GRPCRoute" => "grpcroute",
        other => {
            lower = other.to_ascii_lowercase();
            &lower
        }
    };
    let hosts: Vec<Option<&String>> = if hostnames.is_empty() {
        vec![None]
    } else {
        hostnames.iter().map(Some).collect()
    };
    let mut items = Vec::new();
    for host in hosts {
        let rank = host_rank(host.map(String::as_str).or(l.spec.hostname.as_deref()));
        for (rule_index, rule) in route.rules.iter().enumerate() {
            for (mi, m) in rule.matches.iter().enumerate() {
                // Pushed, not formatted: one exact allocation per entry.
                let parts = [kind, "/", &key.namespace, "/", &key.name, "/", &rule.label];
                let host_len = host.map_or(0, |h| h.len() + 6);
                let mut name = String::with_capacity(
                    parts.iter().map(|p| p.len()).sum::<usize>() + 12 + host_len,
                );
                parts.iter().for_each(|p| name.push_str(p));
                let _ = write!(name, "/match/{mi}");
                if let Some(h) = host {
                    name.push_str("/host/");
                    name.push_str(h);
                }
                let path_rank = match &m.path {
                    PathMatch::Exact(p) => (0u8, Reverse(p.len())),
                    PathMatch::Regex(p) => (1, Reverse(p.len())),
                    PathMatch::Prefix(p) => (2, Reverse(p.len())),
                };
                let rank = (
                    rank,
                    path_rank,
                    m.method.is_none(),
                    Reverse(m.headers.len()),
                    Reverse(m.query.len()),
                    false,
                );
                let mut action = rule.action.action.clone();
                fix_prefix_rewrite(&mut action, &m.path);
                fix_redirect_port(&mut action, l);
                let built = ir::Route {
                    name,
                    origin: key.clone(),
                    authority: host.cloned(),
                    matcher: m.clone(),
                    action,
                    request_headers: rule.action.request_headers.clone(),
                    response_headers: rule.action.response_headers.clone(),
                    mirrors: rule.action.mirrors.clone(),
                    cors: rule.action.cors.clone(),
                    timeout_ms: rule.action.timeout_ms,
                    retry: rule.action.retry.clone(),
                };
                items.push((rank, rule_index, mi, Arc::new(built)));
            }
        }
    }
    // Kept by the memo for every (listener, route): no spare capacity.
    items.shrink_to_fit();
    RouteEntries {
        full_name: format!("{}/{}", key.namespace, key.name),
        compiled: compiled.clone(),
        items,
    }
}

/// A string sort key that orders like the string but compares its first 16 bytes as a number
/// first: most comparisons in a large sort then never visit the (scattered) string data.
#[derive(PartialEq, Eq)]
struct SortStr<'a> {
    prefix: u128,
    s: &'a str,
}

impl<'a> SortStr<'a> {
    fn new(s: &'a str) -> Self {
        let mut buf = [0u8; 16];
        let n = s.len().min(16);
        buf[..n].copy_from_slice(&s.as_bytes()[..n]);
        SortStr {
            prefix: u128::from_be_bytes(buf),
            s,
        }
    }
}

impl Ord for SortStr<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.prefix.cmp(&other.prefix).then_with(|| {
            if self.s.len() <= 16 && other.s.len() <= 16 {
                // Equal zero-padded prefixes of short strings: the shorter is a prefix of
                // the longer.
                self.s.len().cmp(&other.s.len())
            } else {
                self.s.cmp(other.s)
            }
        })
    }
}

impl PartialOrd for SortStr<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// ReplacePrefixMatch replaces the prefix this match matched.
fn fix_prefix_rewrite(action: &mut Action, path: &PathMatch) {
    let matched = match path {
        PathMatch::Prefix(p) => p.clone(),
        _ => "/".into(),
    };
    let target = match action {
        Action::Forward(f) => f.rewrite.as_mut().and_then(|r| r.path.as_mut()),
        Action::Redirect(r) => r.path.as_mut(),
        Action::Direct { .. } => None,
    };
    if let Some(PathRewrite::Prefix { matched: m, .. }) = target {
        *m = matched;
    }
}

/// Gateway API redirect ports: an explicit port, else the new scheme's well-known port, else
/// the listener's port; left out of Location when it is the scheme's well-known port.
fn fix_redirect_port(action: &mut Action, l: &ListenerModel) {
    let Action::Redirect(r) = action else { return };
    let listener_scheme = if l.protocol == Some(PortProtocol::Http) {
        "http"
    } else {
        "https"
    };
    let scheme = r
        .scheme
        .clone()
        .unwrap_or_else(|| listener_scheme.to_string());
    let well_known = |s: &str| if s == "https" { 443 } else { 80 };
    let port = match (r.port, &r.scheme) {
        (Some(p), _) => p,
        (None, Some(s)) => well_known(s),
        (None, None) => u32::from(l.port),
    };
    r.port = (port != well_known(&scheme)).then_some(port);
}

#[cfg(test)]
mod tests {
    use super::SortStr;

    #[test]
    fn sort_str_orders_like_str() {
        let words = [
            "",
            "a",
            "a\0",
            "ab",
            "bench/r-1",
            "bench/r-10",
            "bench/r-2",
            "0123456789abcdef",
            "0123456789abcdef\0",
            "0123456789abcdefa",
            "0123456789abcdefb",
            "0123456789abcdeg",
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:01Z",
        ];
        for a in words {
            for b in words {
                assert_eq!(
                    SortStr::new(a).cmp(&SortStr::new(b)),
                    a.cmp(b),
                    "{a:?} {b:?}"
                );
            }
        }
    }
}
