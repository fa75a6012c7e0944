//! Assembles each Gateway's IR fleet from its listeners and the routes attached to them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use crate::input::ObjectKey;
use crate::ir::{self, Action, Fleet, Port, PortProtocol, TlsChain};
use crate::resolve::context::StrHasher;
use crate::resolve::gateway::GatewayModel;
use crate::resolve::listener::ListenerModel;
use crate::resolve::memo::Compiled;
use crate::resolve::vhost::{FleetClusters, VhostMemo, virtual_host};

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

pub fn listener_id(l: &ListenerModel) -> String {
    format!("{}/{}/{}", l.owner.namespace, l.owner.name, l.spec.name)
}

/// Sort key for hostnames: exact before wildcard before any, longer first.
pub fn host_rank(h: Option<&str>) -> (u8, Reverse<usize>) {
    match h {
        Some(h) if h.starts_with("*.") => (1, Reverse(h.len())),
        Some(h) if !h.is_empty() && h != "*" => (0, Reverse(h.len())),
        _ => (2, Reverse(0)),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn fleet<'a>(
    gw_index: usize,
    gw: &GatewayModel,
    routes: &[std::sync::Arc<Compiled>],
    placements: &Placements,
    streams: &StreamPlacements,
    clusters: &'a FleetClusters,
    mut memo: Option<&mut VhostMemo>,
    garbage: &mut crate::par::Garbage,
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
            origins: Default::default(),
        };
        let mut origins = BTreeSet::new();
        origins.insert(gw.key.clone());
        // Per listener, the routes with entries, in key order (as `routes` is sorted).
        let mut route_origins: Vec<Vec<usize>> = Vec::new();
        for &li in &members {
            let l = &gw.listeners[li];
            let lp = l.protocol.unwrap_or(PortProtocol::Http);
            if matches!(lp, PortProtocol::Http | PortProtocol::Https) {
                let (vh, used) = virtual_host(
                    l,
                    routes,
                    placements
                        .get(&(gw_index, li))
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                    memo.as_deref_mut(),
                    garbage,
                );
                // Its routes' origins and clusters are collected below, by reference.
                p.virtual_hosts.push(vh);
                route_origins.push(used);
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
        // Sorting references and cloning each once beats a set of clones (ports with
        // thousands of routes). Taken in key order (the routes an entry came from), the
        // references are a few sorted runs, which the sort merges in linear time.
        let mut refs: Vec<&ObjectKey> = route_origins
            .iter()
            .flatten()
            .map(|&ri| &routes[ri].route.head.key)
            .chain(&origins)
            .collect();
        refs.sort();
        refs.dedup();
        p.origins = match memo.as_deref_mut() {
            Some(m) => m.port_origins(&gw.key, &p.name, &refs),
            None => std::sync::Arc::new(crate::par::map(&refs, |k| (*k).clone())),
        };
        fleet.ports.push(p);
    }
    // A set, not a sort: the routes name their clusters in precedence order, and sorting
    // thousands of names costs more than hashing them.
    let mut names: HashSet<&str, BuildHasherDefault<StrHasher>> = HashSet::default();
    names.extend(used_clusters.iter().map(String::as_str));
    for r in fleet
        .ports
        .iter()
        .flat_map(|p| &p.virtual_hosts)
        .flat_map(|v| v.routes.iter())
    {
        if let Action::Forward(f) = &r.action {
            names.extend(f.backends.iter().filter_map(|b| b.cluster.as_deref()));
        }
        names.extend(r.mirrors.iter().map(|m| m.cluster.as_str()));
    }
    let mut used: Vec<(&String, Arc<ir::Cluster>)> = Vec::with_capacity(names.len());
    let mut modified = false;
    let mut add = |name: &'a String, c: &Arc<ir::Cluster>| {
        let mut c = c.clone();
        // The Gateway's backend client certificate goes on every TLS connection it makes.
        if let (true, Some(cert)) = (c.tls.is_some(), &gw.backend_client_cert) {
            if let Some(tls) = Arc::make_mut(&mut c).tls.as_mut() {
                tls.client_certificate = Some(cert.clone());
                modified = true;
            }
            used_secrets.insert(cert.clone());
        }
        used.push((name, c));
    };
    // In name order: one walk over all clusters when the fleet uses a good share of them,
    // else a lookup per (sorted) name.
    if names.len() * 4 >= clusters.len() {
        for (n, c) in clusters.iter() {
            if names.contains(n.as_str()) {
                add(n, c);
            }
        }
    } else {
        let mut sorted: Vec<&str> = names.into_iter().collect();
        sorted.sort_unstable();
        for name in sorted {
            if let Some((n, c)) = clusters.get_key_value(name) {
                add(n, c);
            }
        }
    }
    // Every cluster, as it is (one Gateway, say): the map itself, shared.
    let whole = (!modified && used.len() == clusters.len()).then_some(clusters);
    fleet.clusters = match (memo, whole) {
        (Some(m), _) => m.fleet_clusters(&gw.key, used, whole),
        (None, Some(all)) => all.clone(),
        // In name order: a bulk build.
        (None, None) => Arc::new(used.into_iter().map(|(n, c)| (n.clone(), c)).collect()),
    };
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
