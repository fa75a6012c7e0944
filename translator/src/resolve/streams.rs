//! TCPRoute, UDPRoute and TLSRoute: attachment and weighted backends.

use crate::input::ObjectKey;
use crate::ir::{HeaderMods, WeightedCluster};
use crate::resolve::attach::{self, ParentOutcome, RouteHead};
use crate::resolve::backends::{self, RefError, Traffic};
use crate::resolve::build::{StreamPlacement, StreamPlacements};
use crate::resolve::context::Ctx;
use crate::resolve::gateway::{GatewayModel, ListenerSetModel};
use crate::resolve::model::{StreamRouteSpec, convert};

pub type Notes = Vec<(String, String, bool)>;

pub struct StreamResult {
    pub placements: StreamPlacements,
    /// (BackendTLSPolicy index, Gateway index) pairs: which Gateways use which policies.
    pub policy_uses: Vec<(usize, usize)>,
    #[allow(clippy::type_complexity)]
    pub statuses: Vec<(
        RouteHead,
        Vec<ParentOutcome>,
        Option<(String, String)>,
        Option<RefError>,
        Notes,
    )>,
}

struct Input {
    head: RouteHead,
    spec: StreamRouteSpec,
}

fn input<T: serde::Serialize>(
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: &T,
) -> Input {
    let spec: StreamRouteSpec = convert(spec);
    Input {
        head: RouteHead {
            key: ObjectKey::new(
                kind,
                meta.namespace.as_deref().unwrap_or("default"),
                meta.name.as_deref().unwrap_or_default(),
            ),
            generation: meta.generation,
            created: meta
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
            parent_refs: spec.parent_refs.clone(),
            hostnames: spec.hostnames.clone(),
        },
        spec,
    }
}

pub fn run(
    ctx: &mut Ctx,
    gateways: &mut [GatewayModel],
    sets: &[ListenerSetModel],
    clusters: &mut crate::resolve::backends::ClusterMap,
) -> StreamResult {
    let res = ctx.res;
    let mut inputs: Vec<Input> = Vec::new();
    inputs.extend(
        res.tcp_routes
            .iter()
            .map(|r| input("TCPRoute", &r.metadata, &r.spec)),
    );
    inputs.extend(
        res.udp_routes
            .iter()
            .map(|r| input("UDPRoute", &r.metadata, &r.spec)),
    );
    inputs.extend(
        res.tls_routes
            .iter()
            .map(|r| input("TLSRoute", &r.metadata, &r.spec)),
    );
    // Oldest first: on a TCP/UDP listener the first route wins.
    inputs.sort_by(|a, b| {
        (a.head.created.is_empty(), &a.head.created, &a.head.key).cmp(&(
            b.head.created.is_empty(),
            &b.head.created,
            &b.head.key,
        ))
    });
    let mut out = StreamResult {
        placements: StreamPlacements::new(),
        policy_uses: Vec::new(),
        statuses: Vec::new(),
    };
    for inp in inputs {
        let kind = inp.head.key.kind.clone();
        let ns = inp.head.key.namespace.clone();
        let mut notes = Notes::new();
        let mut unresolved = None;
        let mut backends_out = Vec::new();
        let mut policies = Vec::new();
        for (i, rule) in inp.spec.rules.iter().enumerate() {
            for (j, r) in rule.backend_refs.iter().enumerate() {
                let weight = r.weight.unwrap_or(1).max(0) as u32;
                let mut named = Vec::new();
                let resolved = backends::resolve(ctx, (&kind, &ns), r, Traffic::Stream, &mut named);
                backends::merge_clusters(clusters, named);
                let cluster = match resolved {
                    Ok(res) => {
                        policies.extend(res.policy);
                        Some(res.cluster)
                    }
                    Err(e) => {
                        notes.push((
                            format!("spec.rules[{i}].backendRefs[{j}]"),
                            e.message.clone(),
                            false,
                        ));
                        unresolved.get_or_insert(e);
                        None
                    }
                };
                if weight > 0 {
                    backends_out.push(WeightedCluster {
                        cluster,
                        weight,
                        request_headers: HeaderMods::default(),
                        response_headers: HeaderMods::default(),
                    });
                }
            }
        }
        if kind == "UDPRoute" && backends_out.iter().filter(|b| b.cluster.is_some()).count() > 1 {
            notes.push((
                "spec.rules".into(),
                "Envoy's UDP proxy route has no weights: every session goes to the heaviest \
                 backend"
                    .into(),
                true,
            ));
        }
        let uses_hostnames = kind == "TLSRoute";
        let outcomes = attach::attach(ctx, gateways, sets, &inp.head, uses_hostnames);
        attach::count(gateways, &outcomes);
        if outcomes.is_empty() {
            continue;
        }
        for o in &outcomes {
            if o.result.is_ok() {
                out.policy_uses
                    .extend(policies.iter().map(|p| (*p, o.gateway)));
            }
            for a in o.result.iter().flatten() {
                out.placements
                    .entry((a.gateway, a.listener))
                    .or_default()
                    .push(StreamPlacement {
                        origin: inp.head.key.clone(),
                        hostnames: a.hostnames.clone(),
                        backends: backends_out.clone(),
                    });
            }
        }
        out.statuses
            .push((inp.head, outcomes, None, unresolved, notes));
    }
    out
}
