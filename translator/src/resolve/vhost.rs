//! Virtual hosts: the routes placed on one Gateway listener, in the spec's precedence order.
//! `Translator` keeps each route's entries per listener (`VhostMemo`), so that only changed
//! routes are rebuilt; the merge sort over all entries still runs on every call.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use crate::ir::{self, Action, PathMatch, PathRewrite, PortProtocol, VirtualHost};
use crate::resolve::build::{host_rank, listener_id};
use crate::resolve::listener::ListenerModel;
use crate::resolve::memo::Compiled;
use crate::resolve::rules::CompiledRoute;

/// Precedence of one entry, before the per-route tie-breakers (creation time, name).
type Rank = (
    (u8, Reverse<usize>),
    (u8, Reverse<usize>),
    bool,
    Reverse<usize>,
    Reverse<usize>,
    bool,
);

/// One route's entries on one listener: (rank, rule index, match index, route).
pub struct RouteEntries {
    /// `namespace/name`, a tie-breaker.
    full_name: String,
    items: Vec<(Rank, usize, usize, Arc<ir::Route>)>,
}

/// What a listener contributes to its routes' entries.
#[derive(Clone, PartialEq)]
struct ListenerSig {
    id: String,
    hostname: Option<String>,
    protocol: Option<PortProtocol>,
    port: u16,
}

struct Cached {
    compiled: Arc<Compiled>,
    hostnames: Vec<String>,
    listener: ListenerSig,
    entries: Arc<RouteEntries>,
    /// The call that last used the entry.
    stamp: u64,
}

/// Entries by (listener, route), valid while the compiled route (`Arc`), its narrowed
/// hostnames and the listener's hostname, protocol and port are the same.
#[derive(Default)]
pub struct VhostMemo {
    entries: HashMap<u64, Cached>,
    stamp: u64,
    pub reused: usize,
}

impl VhostMemo {
    /// Ends a call: entries this call did not use are forgotten.
    pub fn end(&mut self) {
        let stamp = self.stamp;
        self.entries.retain(|_, c| c.stamp == stamp);
        self.stamp += 1;
    }
}

fn memo_key(listener: &str, route: &CompiledRoute) -> u64 {
    let k = &route.head.key;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in [&k.kind, &k.namespace, &k.name, listener] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    h.digest()
}

/// The listener's virtual host, and the routes (indexes into `routes`, ascending as in
/// `placed`) that have entries in it.
pub fn virtual_host(
    l: &ListenerModel,
    routes: &[Arc<Compiled>],
    placed: &[(usize, Vec<String>)],
    mut memo: Option<&mut VhostMemo>,
) -> (VirtualHost, Vec<usize>) {
    let domain = l
        .spec
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "*".into());
    let sig = ListenerSig {
        id: listener_id(l),
        hostname: l.spec.hostname.clone(),
        protocol: l.protocol,
        port: l.port,
    };
    let per_route: Vec<Arc<RouteEntries>> = placed
        .iter()
        .map(|(ri, hostnames)| {
            let compiled = &routes[*ri];
            let Some(m) = memo.as_deref_mut() else {
                return Arc::new(entries(l, &compiled.route, hostnames));
            };
            let key = memo_key(&sig.id, &compiled.route);
            let stamp = m.stamp;
            match m.entries.get_mut(&key) {
                Some(c)
                    if Arc::ptr_eq(&c.compiled, compiled)
                        && c.hostnames == *hostnames
                        && c.listener == sig =>
                {
                    m.reused += 1;
                    c.stamp = stamp;
                    c.entries.clone()
                }
                found => {
                    let built = Arc::new(entries(l, &compiled.route, hostnames));
                    let c = Cached {
                        compiled: compiled.clone(),
                        hostnames: hostnames.clone(),
                        listener: sig.clone(),
                        entries: built.clone(),
                        stamp,
                    };
                    match found {
                        Some(old) => *old = c,
                        None => {
                            m.entries.insert(key, c);
                        }
                    }
                    built
                }
            }
        })
        .collect();
    // Sort keys and routes are kept apart: sorting moves only small keys, never routes.
    let mut keys = Vec::with_capacity(per_route.iter().map(|e| e.items.len()).sum());
    for (i, ((ri, _), e)) in placed.iter().zip(&per_route).enumerate() {
        let created = &routes[*ri].route.head.created;
        for (j, (rank, rule_index, mi, _)) in e.items.iter().enumerate() {
            keys.push((
                (*rank, created.is_empty()),
                SortStr::new(created),
                SortStr::new(&e.full_name),
                *rule_index,
                *mi,
                (i, j),
            ));
        }
    }
    keys.sort();
    let vh = VirtualHost {
        name: sig.id,
        domains: vec![domain],
        routes: keys
            .iter()
            .map(|k| per_route[k.5.0].items[k.5.1].3.clone())
            .collect(),
    };
    let used = placed
        .iter()
        .zip(&per_route)
        .filter(|(_, e)| !e.items.is_empty())
        .map(|((ri, _), _)| *ri)
        .collect();
    (vh, used)
}

/// One route's entries on one listener: one per (hostname, rule, match).
fn entries(l: &ListenerModel, route: &CompiledRoute, hostnames: &[String]) -> RouteEntries {
    let key = &route.head.key;
    let kind = key.kind.to_ascii_lowercase();
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
                let mut name = format!(
                    "{kind}/{}/{}/{}/match/{mi}",
                    key.namespace, key.name, rule.label
                );
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
    RouteEntries {
        full_name: format!("{}/{}", key.namespace, key.name),
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
