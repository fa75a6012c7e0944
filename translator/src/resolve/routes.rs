//! HTTPRoute and GRPCRoute compilation and cluster finishing for `run_with`, taking what the
//! memo still holds (see `memo` for when that is).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::input::Resources;
use crate::par;
use crate::resolve::backends::{self, ClusterMap};
use crate::resolve::context::{Ctx, recording_lookups};
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

/// An HTTPRoute or GRPCRoute of the input.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Http(&'a gateway_api::apis::experimental::httproutes::HttpRoute),
    Grpc(&'a gateway_api::apis::experimental::grpcroutes::GrpcRoute),
}

impl<'a> Source<'a> {
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Http(_) => "HTTPRoute",
            Source::Grpc(_) => "GRPCRoute",
        }
    }

    pub fn meta(&self) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Source::Http(r) => &r.metadata,
            Source::Grpc(r) => &r.metadata,
        }
    }
}

/// Compiles one route, recording the Services and Backends it looked up (with the memo's
/// revisions of them) as its dependencies.
pub fn compile_one(
    ctx: &Ctx,
    source: Source,
    hash: u64,
    revision: Option<u64>,
    memo: Option<&Memo>,
) -> RouteWork {
    let mut local = Vec::new();
    let mut compile = || match source {
        Source::Http(r) => http::compile_http(ctx, r, &mut local),
        Source::Grpc(r) => http::compile_grpc(ctx, r, &mut local),
    };
    // Only the memo needs to know what was looked up.
    let (route, deps) = match memo {
        Some(m) => {
            let (route, lookups) = recording_lookups(compile);
            (route, m.deps(&lookups))
        }
        None => (compile(), Arc::from([])),
    };
    RouteWork {
        hash,
        revision,
        compiled: Arc::new(Compiled {
            route,
            clusters: local,
        }),
        deps,
        reused: false,
    }
}

/// A route to compile: its source, key hash and revision.
type Miss<'a> = (Source<'a>, u64, Option<u64>);

/// Compiles every HTTPRoute and GRPCRoute, or takes it from the memo.
pub fn compile_routes(
    ctx: &Ctx,
    resources: &Resources,
    mut memo: Option<&mut Memo>,
    gens: Option<Generations>,
) -> Vec<RouteWork> {
    // Key hashes find memo entries: without a memo they are not needed.
    let hash = |kind, meta| match memo {
        Some(_) => {
            let (ns, name) = memo::meta_names(meta, true);
            memo::key_hash(kind, ns, name)
        }
        None => 0,
    };
    let sources: Vec<(Source, u64)> = (resources.http_routes.iter())
        .map(|r| (Source::Http(r), hash("HTTPRoute", &r.metadata)))
        .chain(
            (resources.grpc_routes.iter())
                .map(|r| (Source::Grpc(r), hash("GRPCRoute", &r.metadata))),
        )
        .collect();
    // Most routes to be compiled (a cold start): index what they look up first.
    let memo_routes = memo.as_deref().map_or(0, |m| m.routes.len());
    if sources.len().saturating_sub(memo_routes) >= par::MIN_ITEMS {
        ctx.index_lookups();
    }
    // With the change log (and no duplicate keys), a route outside the changed set whose
    // Services and Backends did not change keeps its memo entry without checking revisions.
    let revisions = match memo.as_deref_mut() {
        Some(m) if m.fast.is_none() || gens.is_none() => {
            m.route_revisions(&sources.iter().map(|s| s.1).collect::<Vec<_>>())
        }
        _ => Vec::new(),
    };
    let fast = match (&memo, gens) {
        (Some(m), Some(_)) => m.fast.as_ref(),
        _ => None,
    };
    let memo = memo.as_deref();
    let sources: Vec<(usize, (Source, u64))> = sources.into_iter().enumerate().collect();
    // Memo hits first (cheap, in order), then the rest compiled, in parallel when many.
    par::map_or_make(
        &sources,
        |&(i, (source, hash))| {
            let (kind, meta) = (source.kind(), source.meta());
            let same_key = |e: &&memo::RouteMemo| {
                let (ns, name) = memo::meta_names(meta, true);
                e.key.kind == kind && e.key.namespace == ns && e.key.name == name
            };
            let (revision, hit) = match (&memo, gens, fast) {
                (Some(m), Some(g), Some(f)) if f.unchanged(hash) => {
                    match m
                        .routes
                        .get(&hash)
                        .filter(|e| e.compile == g.compile && same_key(e))
                    {
                        Some(e) => (Some(e.revision), Some(e)),
                        None => (m.revision(hash), None),
                    }
                }
                (Some(m), Some(g), _) => {
                    let revision = match fast {
                        Some(_) => m.revision(hash),
                        None => revisions[i],
                    };
                    let hit = revision.and_then(|rev| {
                        m.routes.get(&hash).filter(|e| {
                            e.revision == rev
                                && e.compile == g.compile
                                && m.deps_unchanged(&e.deps)
                                && same_key(e)
                        })
                    });
                    (revision, hit)
                }
                _ => (None, None),
            };
            match hit {
                Some(e) => Ok(RouteWork {
                    hash,
                    revision,
                    compiled: e.compiled.clone(),
                    deps: e.deps.clone(),
                    reused: true,
                }),
                None => Err((source, hash, revision)),
            }
        },
        |&(source, hash, revision): &Miss| compile_one(ctx, source, hash, revision, memo),
    )
}

/// Finished clusters by name, shared: the previous call's map again when nothing changed.
pub type Finished = Arc<BTreeMap<String, Arc<crate::ir::Cluster>>>;

/// Clusters with their EndpointSlices' endpoints; unchanged ones come from the memo, found
/// by walking the previous and the new clusters in name order (both maps are sorted).
pub fn finish_clusters(
    ctx: &Ctx,
    clusters: &ClusterMap,
    memo: Option<&mut Memo>,
    gens: Option<Generations>,
) -> Finished {
    let (Some(m), Some(g)) = (memo, gens) else {
        return Arc::new(
            clusters
                .iter()
                .map(|(name, e)| (name.clone(), backends::finish(ctx, e)))
                .collect(),
        );
    };
    let previous = m.clusters.take();
    let mut old = previous
        .as_ref()
        .map(|p| p.finished.iter().zip(&p.entries))
        .into_iter()
        .flatten()
        .peekable();
    let mut finished = Vec::with_capacity(clusters.len());
    let mut entries = Vec::with_capacity(clusters.len());
    let mut all_reused = true;
    for (name, entry) in clusters {
        while old.next_if(|((n, _), _)| *n < name).is_some() {}
        // A recompiled route usually compiles its clusters the same: equal content keeps
        // the finished cluster (and so its protos downstream).
        let hit = old
            .next_if(|((n, _), _)| *n == name)
            .filter(|(_, (e, slices))| {
                (Arc::ptr_eq(e, entry) || **e == **entry)
                    && (entry.slices.is_none() || *slices == g.slices)
            });
        let done = match hit {
            Some(((_, c), _)) => {
                m.reuse.clusters_reused += 1;
                c.clone()
            }
            None => {
                m.reuse.clusters_finished += 1;
                all_reused = false;
                backends::finish(ctx, entry)
            }
        };
        finished.push((name, done));
        entries.push((entry.clone(), g.slices));
    }
    let map = match previous {
        Some(p) if all_reused && p.finished.len() == finished.len() => p.finished,
        // Already in name order: a bulk build.
        _ => Arc::new(finished.into_iter().map(|(n, c)| (n.clone(), c)).collect()),
    };
    m.clusters = Some(memo::ClusterMemo {
        finished: map.clone(),
        entries,
    });
    map
}
