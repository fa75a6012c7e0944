//! HTTPRoute and GRPCRoute compilation and cluster finishing for `run_with`, taking what the
//! memo still holds (see `memo` for when that is).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::input::Resources;
use crate::resolve::backends::{self, ClusterMap};
use crate::resolve::context::Ctx;
use crate::resolve::http;
use crate::resolve::memo::{self, Compiled, Generations, Memo};

/// One HTTPRoute or GRPCRoute of this call.
pub struct RouteWork {
    pub hash: u64,
    pub revision: Option<u64>,
    pub compiled: Arc<Compiled>,
    /// The Services and Backends compilation looked up, with their revisions.
    pub deps: Arc<[(u64, Option<u64>)]>,
    /// Reused from the memo (so its attachment may be, too).
    pub reused: bool,
}

/// Compiles every HTTPRoute and GRPCRoute, or takes it from the memo.
pub fn compile_routes(
    ctx: &Ctx,
    resources: &Resources,
    mut memo: Option<&mut Memo>,
    gens: Option<Generations>,
) -> Vec<RouteWork> {
    enum Source<'a> {
        Http(&'a gateway_api::apis::experimental::httproutes::HttpRoute),
        Grpc(&'a gateway_api::apis::experimental::grpcroutes::GrpcRoute),
    }
    let sources: Vec<(Source, u64)> = resources
        .http_routes
        .iter()
        .map(|r| {
            let (ns, name) = memo::meta_names(&r.metadata, true);
            (Source::Http(r), memo::key_hash("HTTPRoute", ns, name))
        })
        .chain(resources.grpc_routes.iter().map(|r| {
            let (ns, name) = memo::meta_names(&r.metadata, true);
            (Source::Grpc(r), memo::key_hash("GRPCRoute", ns, name))
        }))
        .collect();
    let revisions = match memo.as_deref_mut() {
        Some(m) => m.route_revisions(&sources.iter().map(|s| s.1).collect::<Vec<_>>()),
        None => vec![None; sources.len()],
    };
    sources
        .into_iter()
        .zip(revisions)
        .map(|((source, hash), revision)| {
            let (kind, meta) = match source {
                Source::Http(r) => ("HTTPRoute", &r.metadata),
                Source::Grpc(r) => ("GRPCRoute", &r.metadata),
            };
            let hit = match (&memo, gens, revision) {
                (Some(m), Some(g), Some(rev)) => m.routes.get(&hash).filter(|e| {
                    let (ns, name) = memo::meta_names(meta, true);
                    e.revision == rev
                        && e.compile == g.compile
                        && m.deps_unchanged(&e.deps)
                        && e.key.kind == kind
                        && e.key.namespace == ns
                        && e.key.name == name
                }),
                _ => None,
            };
            if let Some(e) = hit {
                return RouteWork {
                    hash,
                    revision,
                    compiled: e.compiled.clone(),
                    deps: e.deps.clone(),
                    reused: true,
                };
            }
            let mut local = ClusterMap::new();
            *ctx.lookups.borrow_mut() = Some(Vec::new());
            let route = match source {
                Source::Http(r) => http::compile_http(ctx, r, &mut local),
                Source::Grpc(r) => http::compile_grpc(ctx, r, &mut local),
            };
            let lookups = ctx.lookups.borrow_mut().take().unwrap_or_default();
            let deps = match memo.as_deref() {
                Some(m) => m.deps(&lookups),
                None => Arc::from([]),
            };
            RouteWork {
                hash,
                revision,
                compiled: Arc::new(Compiled {
                    route,
                    clusters: local.into_iter().collect(),
                }),
                deps,
                reused: false,
            }
        })
        .collect()
}

/// Clusters with their EndpointSlices' endpoints; unchanged ones come from the memo.
pub fn finish_clusters(
    ctx: &Ctx,
    clusters: &ClusterMap,
    memo: Option<&mut Memo>,
    gens: Option<Generations>,
) -> BTreeMap<String, Arc<crate::ir::Cluster>> {
    let (Some(m), Some(g)) = (memo, gens) else {
        return clusters
            .iter()
            .map(|(name, e)| (name.clone(), Arc::new(backends::finish(ctx, e))))
            .collect();
    };
    let stamp = m.next_stamp();
    let mut out = Vec::with_capacity(clusters.len());
    for (name, entry) in clusters {
        let valid = |c: &memo::ClusterMemo| {
            Arc::ptr_eq(&c.entry, entry) && (entry.slices.is_none() || c.slices == g.slices)
        };
        let finished = match m.clusters.get_mut(name) {
            Some(c) if valid(c) => {
                m.reuse.clusters_reused += 1;
                c.stamp = stamp;
                c.finished.clone()
            }
            found => {
                m.reuse.clusters_finished += 1;
                let finished = Arc::new(backends::finish(ctx, entry));
                let c = memo::ClusterMemo {
                    entry: entry.clone(),
                    slices: g.slices,
                    finished: finished.clone(),
                    stamp,
                };
                match found {
                    Some(old) => *old = c,
                    None => {
                        m.clusters.insert(name.clone(), c);
                    }
                }
                finished
            }
        };
        out.push((name.clone(), finished));
    }
    m.clusters.retain(|_, c| c.stamp == stamp);
    // Already in name order: a bulk build.
    out.into_iter().collect()
}
