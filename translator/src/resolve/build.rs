//! Assembles each Gateway's IR fleet from its listeners and the routes attached to them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use crate::ir::{
    self, Action, Fleet, PathMatch, PathRewrite, Port, PortProtocol, TlsChain, VirtualHost,
};
use crate::resolve::gateway::GatewayModel;
use crate::resolve::listener::ListenerModel;
use crate::resolve::rules::CompiledRoute;

/// Routes placed on one listener: (index into the compiled routes, narrowed hostnames).
pub type Placements = BTreeMap<(usize, usize), Vec<(usize, Vec<String>)>>;

/// Stream (TCP/UDP/TLS) routes placed on one listener, by listener.
pub type StreamPlacements = BTreeMap<(usize, usize), Vec<StreamPlacement>>;

#[derive(Clone, Debug)]
pub struct StreamPlacement {
    pub origin: crate::input::ObjectKey,
    pub hostnames: Vec<String>,
    pub backends: Vec<ir::WeightedCluster>,
}

fn port_name(protocol: PortProtocol, port: u16) -> String {
    let p = match protocol {
        PortProtocol::Http => "http",
        PortProtocol::Https => "https",
        PortProtocol::Tls => "tls",
        PortProtocol::Tcp => "tcp",
        PortProtocol::Udp => "udp",
    };
    format!("{p}-{port}")
}

fn listener_id(l: &ListenerModel) -> String {
    format!("{}/{}/{}", l.owner.namespace, l.owner.name, l.spec.name)
}

/// Sort key for hostnames: exact before wildcard before any, longer first.
fn host_rank(h: Option<&str>) -> (u8, Reverse<usize>) {
    match h {
        Some(h) if h.starts_with("*.") => (1, Reverse(h.len())),
        Some(h) if !h.is_empty() && h != "*" => (0, Reverse(h.len())),
        _ => (2, Reverse(0)),
    }
}

pub fn fleet(
    gw_index: usize,
    gw: &GatewayModel,
    routes: &[CompiledRoute],
    placements: &Placements,
    streams: &StreamPlacements,
    clusters: &BTreeMap<String, ir::Cluster>,
) -> Fleet {
    let mut fleet = Fleet {
        addresses: gw.addresses.clone(),
        infrastructure: gw.infrastructure.clone(),
        ..Default::default()
    };
    if gw.not_accepted.is_some() {
        return fleet;
    }
    let mut by_port: BTreeMap<(bool, u16), Vec<usize>> = BTreeMap::new();
    for (i, l) in gw.listeners.iter().enumerate() {
        if l.programmable() {
            by_port
                .entry((l.protocol == Some(PortProtocol::Udp), l.port))
                .or_default()
                .push(i);
        }
    }
    let mut used_clusters = BTreeSet::new();
    let mut used_secrets = BTreeSet::new();
    for ((_, port), members) in by_port {
        let protocols: BTreeSet<PortProtocol> = members
            .iter()
            .filter_map(|&i| gw.listeners[i].protocol)
            .collect();
        let protocol = if protocols.contains(&PortProtocol::Https) {
            PortProtocol::Https
        } else {
            *protocols.iter().next().unwrap_or(&PortProtocol::Http)
        };
        let mut p = Port {
            name: port_name(protocol, port),
            port,
            protocol,
            virtual_hosts: Vec::new(),
            tls_chains: Vec::new(),
            stream: None,
            origins: Vec::new(),
        };
        let mut origins = BTreeSet::new();
        origins.insert(gw.key.clone());
        for &li in &members {
            let l = &gw.listeners[li];
            let lp = l.protocol.unwrap_or(PortProtocol::Http);
            if matches!(lp, PortProtocol::Http | PortProtocol::Https) {
                let vh = virtual_host(
                    l,
                    routes,
                    placements
                        .get(&(gw_index, li))
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                );
                for r in &vh.routes {
                    origins.insert(r.origin.clone());
                    collect_clusters(&r.action, &r.mirrors, &mut used_clusters);
                }
                p.virtual_hosts.push(vh);
            }
            let placed = streams.get(&(gw_index, li)).cloned().unwrap_or_default();
            for s in &placed {
                origins.insert(s.origin.clone());
                used_clusters.extend(s.backends.iter().filter_map(|b| b.cluster.clone()));
            }
            match lp {
                PortProtocol::Https | PortProtocol::Tls => {
                    used_secrets.extend(l.certificates.iter().cloned());
                    if lp == PortProtocol::Https {
                        p.tls_chains.push(TlsChain {
                            hostname: l.spec.hostname.clone(),
                            certificates: l.certificates.clone(),
                            stream: None,
                            http: true,
                            listener: listener_id(l),
                            client_validation: gw.client_validation_for(port),
                            params: l.tls_params.clone(),
                        });
                    } else {
                        tls_chains(
                            l,
                            &placed,
                            gw.client_validation_for(port),
                            &mut p.tls_chains,
                        );
                    }
                }
                PortProtocol::Tcp | PortProtocol::Udp => {
                    if p.stream.is_none() {
                        p.stream = placed.first().map(|s| ir::StreamRoute {
                            backends: s.backends.clone(),
                        });
                    }
                }
                PortProtocol::Http => {}
            }
        }
        p.virtual_hosts.sort_by(|a, b| {
            (host_rank(a.domains.first().map(String::as_str)), &a.name)
                .cmp(&(host_rank(b.domains.first().map(String::as_str)), &b.name))
        });
        p.tls_chains.sort_by(|a, b| {
            (host_rank(a.hostname.as_deref()), &a.listener)
                .cmp(&(host_rank(b.hostname.as_deref()), &b.listener))
        });
        p.origins = origins.into_iter().collect();
        fleet.ports.push(p);
    }
    for name in used_clusters {
        if let Some(c) = clusters.get(&name) {
            let mut c = c.clone();
            // The Gateway's backend client certificate goes on every TLS connection it makes.
            if let (Some(tls), Some(cert)) = (c.tls.as_mut(), &gw.backend_client_cert) {
                tls.client_certificate = Some(cert.clone());
                used_secrets.insert(cert.clone());
            }
            fleet.clusters.insert(name, c);
        }
    }
    for name in used_secrets {
        if let Some(s) = gw.secrets.get(&name) {
            fleet.secrets.insert(name, s.clone());
        }
    }
    fleet
}

/// TLS listener filter chains: passthrough/terminate to the TLSRoute backends, one chain per
/// route hostname (or the listener hostname).
fn tls_chains(
    l: &ListenerModel,
    placed: &[StreamPlacement],
    client_validation: Option<ir::ClientValidation>,
    out: &mut Vec<TlsChain>,
) {
    let certificates = if l.passthrough {
        Vec::new()
    } else {
        l.certificates.clone()
    };
    let mut seen = BTreeSet::new();
    for s in placed {
        let hosts: Vec<Option<String>> = if s.hostnames.is_empty() {
            vec![l.spec.hostname.clone()]
        } else {
            s.hostnames.iter().cloned().map(Some).collect()
        };
        for h in hosts {
            // The first (oldest) route for a hostname wins.
            if !seen.insert(h.clone()) {
                continue;
            }
            out.push(TlsChain {
                hostname: h.clone(),
                certificates: certificates.clone(),
                stream: Some(ir::StreamRoute {
                    backends: s.backends.clone(),
                }),
                http: false,
                listener: format!("{}/{}", listener_id(l), h.unwrap_or_else(|| "*".into())),
                client_validation: if l.passthrough {
                    None
                } else {
                    client_validation.clone()
                },
                params: if l.passthrough {
                    Default::default()
                } else {
                    l.tls_params.clone()
                },
            });
        }
    }
}

fn collect_clusters(action: &Action, mirrors: &[ir::Mirror], out: &mut BTreeSet<String>) {
    if let Action::Forward(f) = action {
        out.extend(f.backends.iter().filter_map(|b| b.cluster.clone()));
    }
    out.extend(mirrors.iter().map(|m| m.cluster.clone()));
}

fn virtual_host(
    l: &ListenerModel,
    routes: &[CompiledRoute],
    placed: &[(usize, Vec<String>)],
) -> VirtualHost {
    let domain = l
        .spec
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "*".into());
    // Sort keys and routes are kept apart: sorting moves only (key, index) pairs, never the
    // (large) routes, and the per-route parts of the key are computed once per route.
    let full_names: Vec<String> = placed
        .iter()
        .map(|(ri, _)| {
            let key = &routes[*ri].head.key;
            format!("{}/{}", key.namespace, key.name)
        })
        .collect();
    let capacity = placed
        .iter()
        .map(|(ri, h)| {
            h.len().max(1)
                * routes[*ri]
                    .rules
                    .iter()
                    .map(|r| r.matches.len())
                    .sum::<usize>()
        })
        .sum();
    let mut keys = Vec::with_capacity(capacity);
    let mut built = Vec::with_capacity(capacity);
    for ((ri, hostnames), full_name) in placed.iter().zip(&full_names) {
        let route = &routes[*ri];
        let key = &route.head.key;
        let kind = key.kind.to_ascii_lowercase();
        let hosts: Vec<Option<&String>> = if hostnames.is_empty() {
            vec![None]
        } else {
            hostnames.iter().map(Some).collect()
        };
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
                    keys.push((
                        (
                            rank,
                            path_rank,
                            m.method.is_none(),
                            Reverse(m.headers.len()),
                            Reverse(m.query.len()),
                            route.head.created.is_empty(),
                        ),
                        SortStr::new(&route.head.created),
                        SortStr::new(full_name),
                        rule_index,
                        mi,
                        built.len(),
                    ));
                    let mut action = rule.action.action.clone();
                    fix_prefix_rewrite(&mut action, &m.path);
                    fix_redirect_port(&mut action, l);
                    built.push(Some(ir::Route {
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
                    }));
                }
            }
        }
    }
    keys.sort();
    VirtualHost {
        name: listener_id(l),
        domains: vec![domain],
        routes: keys.iter().filter_map(|k| built[k.5].take()).collect(),
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
