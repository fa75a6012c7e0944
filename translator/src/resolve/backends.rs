//! backendRefs -> clusters: Services (with their EndpointSlices), ExternalName Services and
//! Portico Backends, with ReferenceGrant checks.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ServicePort;

use crate::backend_kind;
use crate::input::ObjectKey;
use crate::ir::{Cluster, Discovery, Endpoint, UpstreamProtocol};
use crate::resolve::backend_tls;
use crate::resolve::context::{Ctx, GATEWAY_GROUP};
use crate::resolve::model::BackendRef;

/// Why a backendRef did not resolve: the ResolvedRefs reason and a message.
#[derive(Clone, Debug)]
pub struct RefError {
    pub reason: &'static str,
    pub message: String,
}

impl RefError {
    fn new(reason: &'static str, message: String) -> Self {
        RefError { reason, message }
    }
}

/// A resolved backend: its cluster name and whether it speaks WebSocket.
pub struct Resolved {
    pub cluster: String,
    pub websocket: bool,
    /// Index of the BackendTLSPolicy that applies (into `Ctx::tls_policies`).
    pub policy: Option<usize>,
}

/// A cluster as route compilation leaves it: everything but what EndpointSlices contribute,
/// so that compiled routes stay valid while endpoints churn (`finish` adds them).
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterEntry {
    /// Shared: a cluster without EndpointSlices is finished as it is.
    pub cluster: Arc<Cluster>,
    /// A Service cluster's EndpointSlices: (namespace, service, port name, whether their
    /// endpoints are used; an invalid BackendTLSPolicy keeps only the origins).
    pub slices: Option<(String, String, String, bool)>,
}

/// Clusters by name, as compilation produces them.
pub type ClusterMap = BTreeMap<String, Arc<ClusterEntry>>;

/// The clusters one route names, in the order first named (the first definition of a name
/// kept, as in `ClusterMap`): a route names a few, so a list beats a map.
pub type ClusterList = Vec<Arc<ClusterEntry>>;

/// Adds a route's clusters to the map: a name already there keeps its cluster.
pub fn merge_clusters(map: &mut ClusterMap, list: ClusterList) {
    for e in list {
        map.entry(e.cluster.name.clone()).or_insert(e);
    }
}

/// Adds the EndpointSlices' endpoints and origins to a compiled cluster (one without
/// slices is already finished: the same `Arc`).
pub fn finish(ctx: &Ctx, entry: &ClusterEntry) -> Arc<Cluster> {
    let Some((ns, service, port_name, use_endpoints)) = &entry.slices else {
        return entry.cluster.clone();
    };
    let mut cluster = Cluster::clone(&entry.cluster);
    let mut endpoints = Vec::new();
    let mut slice_origins = Vec::new();
    for slice in ctx.slices(ns, service) {
        slice_origins.push(ObjectKey::new(
            "EndpointSlice",
            ns,
            slice.metadata.name.as_deref().unwrap_or_default(),
        ));
        let slice_port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name);
        let Some(target) = slice_port
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in &slice.endpoints {
            // Kubernetes: an absent ready condition counts as ready.
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for address in &ep.addresses {
                endpoints.push(Endpoint::Socket {
                    address: address.clone(),
                    port: target,
                });
            }
        }
    }
    // The Service comes first, then its slices, then anything else (the BackendTLSPolicy).
    let rest = cluster.origins.split_off(1.min(cluster.origins.len()));
    cluster.origins.extend(slice_origins);
    cluster.origins.extend(rest);
    if *use_endpoints {
        endpoints.sort();
        endpoints.dedup();
        cluster.discovery = Discovery::Eds(endpoints);
    }
    Arc::new(cluster)
}

/// What kind of traffic the referring route carries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    Http,
    Grpc,
    Stream,
}

/// Resolves a backendRef of a route (`from` = route kind and namespace) into a cluster, adding
/// the cluster to `clusters`.
pub fn resolve(
    ctx: &Ctx,
    from: (&str, &str),
    r: &BackendRef,
    traffic: Traffic,
    clusters: &mut ClusterList,
) -> Result<Resolved, RefError> {
    let (from_kind, from_ns) = from;
    let group = r.group.as_deref().unwrap_or_default();
    let kind = r.kind.as_deref().unwrap_or("Service");
    let ns = r.namespace.as_deref().unwrap_or(from_ns);
    let is_service = group.is_empty() && kind == "Service";
    let is_backend = group == backend_kind::GROUP && kind == backend_kind::KIND;
    if !is_service && !is_backend {
        return Err(RefError::new(
            "InvalidKind",
            format!("backendRef kind {group}/{kind} is not supported"),
        ));
    }
    if !ctx.ref_allowed(
        (GATEWAY_GROUP, from_kind, from_ns),
        (group, kind, ns, &r.name),
    ) {
        return Err(RefError::new(
            "RefNotPermitted",
            format!(
                "no ReferenceGrant in namespace {ns} allows {from_kind}s from {from_ns} to use {kind} {}",
                r.name
            ),
        ));
    }
    if is_backend {
        return portico_backend(ctx, ns, r, traffic, clusters);
    }
    ctx.note_lookup("Service", ns, &r.name);
    let Some(svc) = ctx.service(ns, &r.name) else {
        return Err(RefError::new(
            "BackendNotFound",
            format!("Service {ns}/{} does not exist", r.name),
        ));
    };
    let Some(port) = r.port else {
        return Err(RefError::new(
            "BackendNotFound",
            format!("backendRef to Service {ns}/{} needs a port", r.name),
        ));
    };
    let spec = svc.spec.as_ref();
    let svc_port = (spec.and_then(|s| s.ports.as_ref()).into_iter().flatten())
        .find(|p| p.port == port)
        .cloned();
    let external = spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName");
    let Some(svc_port) = svc_port.or_else(|| {
        external.then(|| ServicePort {
            port,
            ..Default::default()
        })
    }) else {
        return Err(RefError::new(
            "BackendNotFound",
            format!("Service {ns}/{} has no port {port}", r.name),
        ));
    };
    let (protocol, websocket) = protocol_of(svc_port.app_protocol.as_deref(), traffic);
    let mut name = format!("{ns}/{}/{port}", r.name);
    if traffic == Traffic::Grpc
        && protocol_of(svc_port.app_protocol.as_deref(), Traffic::Http).0 != UpstreamProtocol::H2c
    {
        // A gRPC route needs HTTP/2 even where the Service does not say so.
        name.push_str("/h2");
    }
    if traffic == Traffic::Stream {
        name.push_str("/tcp");
    }
    let origins = vec![ObjectKey::new("Service", ns, &r.name)];
    let (discovery, mut slices) = if external {
        let host = spec
            .and_then(|s| s.external_name.clone())
            .unwrap_or_default();
        let endpoint = Endpoint::Socket {
            address: host,
            port: u16::try_from(port).unwrap_or(0),
        };
        (Discovery::Dns(vec![endpoint]), None)
    } else {
        // Endpoints come from the EndpointSlices, in `finish`.
        let port_name = svc_port.name.clone().unwrap_or_default();
        (
            Discovery::Eds(Vec::new()),
            Some((ns.to_string(), r.name.clone(), port_name, true)),
        )
    };
    let policy = backend_tls::lookup(&ctx.tls_policies, ns, &r.name, svc_port.name.as_deref());
    let (tls, discovery) = match policy.map(|(_, p)| &p.result) {
        Some(Ok(tls)) => (Some(tls.clone()), discovery),
        // An invalid policy never falls back to plaintext: no endpoints, Envoy answers 503.
        Some(Err(_)) => {
            name.push_str("/invalid-tls");
            if let Some(s) = slices.as_mut() {
                s.3 = false;
            }
            (None, Discovery::Eds(Vec::new()))
        }
        None => (None, discovery),
    };
    let mut origins = origins;
    if let Some((i, _)) = policy {
        origins.push(ctx.tls_policies[i].key.clone());
    }
    let cluster = Cluster {
        name: name.clone(),
        protocol,
        discovery,
        tls,
        origins,
    };
    add_cluster(clusters, cluster, slices);
    Ok(Resolved {
        cluster: name,
        websocket,
        policy: policy.map(|(i, _)| i),
    })
}

/// The first backendRef to name a cluster defines it.
fn add_cluster(
    clusters: &mut ClusterList,
    cluster: Cluster,
    slices: Option<(String, String, String, bool)>,
) {
    if !clusters.iter().any(|e| e.cluster.name == cluster.name) {
        clusters.push(Arc::new(ClusterEntry {
            cluster: Arc::new(cluster),
            slices,
        }));
    }
}

/// Upstream protocol from an appProtocol, and whether WebSocket upgrades go through.
fn protocol_of(app_protocol: Option<&str>, traffic: Traffic) -> (UpstreamProtocol, bool) {
    if traffic == Traffic::Stream {
        return (UpstreamProtocol::Stream, false);
    }
    let p = match app_protocol.map(|a| a.to_ascii_lowercase()).as_deref() {
        Some("kubernetes.io/h2c" | "grpc" | "kubernetes.io/grpc" | "h2c" | "http2") => {
            (UpstreamProtocol::H2c, false)
        }
        Some("kubernetes.io/ws" | "kubernetes.io/wss" | "ws" | "wss") => {
            (UpstreamProtocol::Ws, true)
        }
        _ => (UpstreamProtocol::Http1, false),
    };
    if traffic == Traffic::Grpc {
        return (UpstreamProtocol::H2c, false);
    }
    p
}

fn portico_backend(
    ctx: &Ctx,
    ns: &str,
    r: &BackendRef,
    traffic: Traffic,
    clusters: &mut ClusterList,
) -> Result<Resolved, RefError> {
    ctx.note_lookup(crate::backend_kind::KIND, ns, &r.name);
    let Some(backend) = ctx.backend(ns, &r.name) else {
        return Err(RefError::new(
            "BackendNotFound",
            format!("Backend {ns}/{} does not exist", r.name),
        ));
    };
    let (protocol, websocket) = protocol_of(backend.spec.app_protocol.as_deref(), traffic);
    let ref_port = r.port.and_then(|p| u16::try_from(p).ok());
    let mut endpoints = Vec::with_capacity(backend.spec.endpoints.len());
    let mut dns = false;
    for (i, ep) in backend.spec.endpoints.iter().enumerate() {
        let port = ep.port.or(ref_port);
        match (&ep.ip, &ep.hostname, &ep.unix, port) {
            (Some(ip), None, None, Some(port)) => endpoints.push(Endpoint::Socket {
                address: ip.clone(),
                port,
            }),
            (None, Some(host), None, Some(port)) => {
                dns = true;
                endpoints.push(Endpoint::Socket {
                    address: host.clone(),
                    port,
                })
            }
            (None, None, Some(path), _) => endpoints.push(Endpoint::Unix { path: path.clone() }),
            _ => {
                return Err(RefError::new(
                    "BackendNotFound",
                    format!(
                        "Backend {ns}/{} endpoints[{i}] needs exactly one of ip, hostname, unix (and a port)",
                        r.name
                    ),
                ));
            }
        }
    }
    // Pushed rather than formatted: one exact allocation per route.
    let mut name = String::with_capacity(16 + ns.len() + r.name.len());
    name.push_str("backend:");
    name.push_str(ns);
    name.push('/');
    name.push_str(&r.name);
    if backend
        .spec
        .endpoints
        .iter()
        .any(|e| e.port.is_none() && e.unix.is_none())
        && let Some(p) = ref_port
    {
        use std::fmt::Write;
        let _ = write!(name, "/{p}");
    }
    if traffic == Traffic::Grpc
        && protocol_of(backend.spec.app_protocol.as_deref(), Traffic::Http).0
            != UpstreamProtocol::H2c
    {
        name.push_str("/h2");
    }
    if traffic == Traffic::Stream {
        name.push_str("/tcp");
    }
    let discovery = if dns {
        Discovery::Dns(endpoints)
    } else {
        Discovery::Eds(endpoints)
    };
    let origins = vec![ObjectKey::new(backend_kind::KIND, ns, &r.name)];
    let cluster = Cluster {
        name: name.clone(),
        protocol,
        discovery,
        tls: None,
        origins,
    };
    add_cluster(clusters, cluster, None);
    Ok(Resolved {
        cluster: name,
        websocket,
        policy: None,
    })
}
