//! The patch path of `run_with`: when only HTTPRoutes and GRPCRoutes changed since the last
//! call, and each changed route still attaches where it did, with the same clusters,
//! policies and validity, the last call's result is patched instead of rebuilt: the routes
//! are compiled again, their entries in the virtual hosts they sit in are replaced (the
//! sorted entries patched by binary search), and their status and problems swapped. Work is
//! then proportional to the changed routes, plus pointer copies of the route lists touched.
//!
//! Anything else (a route added or removed, moved to other listeners, given other backends,
//! duplicated keys, any other kind changed) returns None before the memo is changed, and
//! `run_with` builds everything as usual. Where a virtual host's memo cannot be patched
//! after all, that listener's memo is dropped, which the full build then redoes.

use std::sync::Arc;

use crate::input::{ObjectKey, Resources};
use crate::ir::{Ir, PortProtocol};
use crate::problem::Problem;
use crate::resolve::attach::ParentOutcome;
use crate::resolve::build::listener_id;
use crate::resolve::context::Ctx;
use crate::resolve::gateway::{self, GatewayModel};
use crate::resolve::memo::{self, Attached, Generations, Memo, RouteMemo};
use crate::resolve::routes::{self, RouteWork, Source};
use crate::resolve::{StageOne, attach_route, backend_tls, rejected_messages, report_http_route};
use crate::status::ObjectStatus;
use crate::{Feedback, Options};

const MAX_ROUTES: usize = 64;

/// What `run_with` keeps of its last result for this path.
pub struct LastStage {
    pub gens: Generations,
    pub ir: Ir,
    pub problems: Vec<Problem>,
    /// HTTPRoutes and GRPCRoutes in the input then.
    pub routes: usize,
}

/// One changed route, checked and rebuilt, not yet applied.
struct Change {
    key: ObjectKey,
    hash: u64,
    old_compiled: Arc<memo::Compiled>,
    work: RouteWork,
    attached: Arc<Attached>,
    /// Index in the status list, when the route has a status.
    status_at: Option<usize>,
    problems: Vec<Problem>,
}

/// The patched result, or None (memo untouched, or only listener memos dropped) when the
/// change is not one this path handles.
pub fn run(
    resources: &Resources,
    options: &Options,
    feedback: &Feedback,
    m: &mut Memo,
    gens: Generations,
) -> Option<StageOne> {
    // Past a few dozen routes, the full build's bulk work is as cheap.
    let keys = m
        .fast
        .as_ref()?
        .route_keys()
        .filter(|k| k.len() <= MAX_ROUTES)?
        .to_vec();
    let last = m.last.as_ref().filter(|l| l.gens == gens)?;
    let (statuses, sources) = m.statuses.as_ref()?;
    // Routes added, removed or duplicated are the full build's: told apart before any
    // index is built.
    let mut found = Vec::with_capacity(keys.len());
    for key in keys {
        let hash = memo::key_hash(&key.kind, &key.namespace, &key.name);
        let old = m.routes.get(&hash).filter(|e| e.key == key)?;
        let old_attached = old.attached.as_ref()?;
        let source = only_object(resources, &key)?;
        found.push((key, hash, old, old_attached, source));
    }
    let mut ctx = Ctx::new(resources);
    ctx.tls_policies = backend_tls::build(&ctx);
    let (classes, _) = gateway::classes(&ctx);
    let rejected = rejected_messages(feedback);
    let (gateways, sets) = gateway::build(&mut ctx, &classes, options, &rejected);
    ctx.problems.clear();

    let mut changes = Vec::with_capacity(found.len());
    for (key, hash, old, old_attached, source) in found {
        let revision = m.revision(hash);
        let work = match revision {
            Some(rev) if rev == old.revision && m.deps_unchanged(&old.deps) => RouteWork {
                hash,
                revision,
                compiled: old.compiled.clone(),
                deps: old.deps.clone(),
                reused: true,
            },
            _ => routes::compile_one(&ctx, source, hash, revision, Some(m)),
        };
        let (new, prev) = (&work.compiled.route, &old.compiled.route);
        if !same_clusters(&work.compiled.clusters, &old.compiled.clusters)
            || new.policies != prev.policies
            || new.invalid.is_some() != prev.invalid.is_some()
        {
            return None;
        }
        let attached = attach_route(&ctx, &gateways, &sets, new);
        if !same_outcomes(&attached.outcomes, &old_attached.outcomes) {
            return None;
        }
        let status_at = match &attached.status {
            Some(_) => Some(status_index(statuses, &key)?),
            None => None,
        };
        if status_at.is_some_and(|i| {
            !sources[i]
                .as_ref()
                .is_some_and(|a| Arc::ptr_eq(a, old_attached))
        }) {
            return None;
        }
        if attached.status.is_some() {
            report_http_route(&mut ctx, new, &attached.outcomes);
        }
        let mut problems = std::mem::take(&mut ctx.problems);
        problems.sort();
        problems.dedup();
        changes.push(Change {
            key,
            hash,
            old_compiled: old.compiled.clone(),
            work,
            attached: Arc::new(attached),
            status_at,
            problems,
        });
    }
    // Two changes of one key (cannot happen with a deduplicated log) would patch twice.
    if changes.windows(2).any(|w| w[0].key == w[1].key) {
        return None;
    }

    let mut ir = last.ir.clone();
    let mut touched = Vec::new();
    for c in &changes {
        if Arc::ptr_eq(&c.old_compiled, &c.work.compiled) || c.work.compiled.route.invalid.is_some()
        {
            continue;
        }
        let Some(placed) = placements(&gateways, &c.attached.outcomes) else {
            drop_listeners(m, &touched);
            return None;
        };
        for (gi, li, hostnames) in placed {
            let (gw, l) = (&gateways[gi], &gateways[gi].listeners[li]);
            let id = listener_id(l);
            touched.push(id.clone());
            let vh = ir
                .fleets
                .get_mut(&gw.fleet())
                .into_iter()
                .flat_map(|f| &mut f.ports)
                .flat_map(|p| &mut p.virtual_hosts)
                .find(|v| v.name == id);
            let list = vh.and_then(|vh| {
                let list =
                    m.vhosts
                        .replace_route(l, &c.old_compiled, &c.work.compiled, hostnames)?;
                vh.routes = list;
                Some(())
            });
            if list.is_none() {
                drop_listeners(m, &touched);
                return None;
            }
        }
    }

    // Applied: nothing below fails.
    let mut problems = last.problems.clone();
    let routes = last.routes;
    let (statuses, sources) = m.statuses.as_mut()?;
    for c in &changes {
        problems.retain(|p| p.object.as_ref() != Some(&c.key));
        problems.extend(c.problems.iter().cloned());
        if let (Some(i), Some(s)) = (c.status_at, &c.attached.status) {
            if statuses[i] != *s {
                Arc::make_mut(statuses)[i] = s.clone();
            }
            sources[i] = Some(c.attached.clone());
        }
    }
    let statuses = statuses.clone();
    problems.sort();
    problems.dedup();
    let stamp = m.stamp();
    let compiled = changes.iter().filter(|c| !c.work.reused).count();
    for c in changes {
        let Some(revision) = c.work.revision else {
            continue;
        };
        let entry = RouteMemo {
            key: c.key,
            revision,
            compile: gens.compile,
            deps: c.work.deps,
            compiled: c.work.compiled,
            attach: gens.attach,
            attached: Some(c.attached),
            stamp,
        };
        m.routes.insert(c.hash, entry);
    }
    m.reuse.patched = true;
    m.reuse.routes_compiled = compiled;
    m.reuse.routes_reused = routes.saturating_sub(compiled);
    m.reuse.attachments_reused = routes.saturating_sub(compiled);
    m.last = Some(LastStage {
        gens,
        ir: ir.clone(),
        problems: problems.clone(),
        routes,
    });
    Some(StageOne {
        ir,
        statuses,
        problems,
        garbage: Default::default(),
    })
}

/// The one HTTPRoute or GRPCRoute with this key; None when absent or duplicated.
fn only_object<'a>(resources: &'a Resources, key: &ObjectKey) -> Option<Source<'a>> {
    // Name first: most names differ, most namespaces do not.
    let named = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        let (ns, name) = memo::meta_names(meta, true);
        name == key.name && ns == key.namespace
    };
    let mut found: Vec<Source> = match key.kind.as_str() {
        "HTTPRoute" => resources
            .http_routes
            .iter()
            .filter(|r| named(&r.metadata))
            .map(Source::Http)
            .collect(),
        "GRPCRoute" => resources
            .grpc_routes
            .iter()
            .filter(|r| named(&r.metadata))
            .map(Source::Grpc)
            .collect(),
        _ => return None,
    };
    (found.len() == 1).then(|| found.remove(0))
}

fn same_clusters(
    a: &[Arc<crate::resolve::backends::ClusterEntry>],
    b: &[Arc<crate::resolve::backends::ClusterEntry>],
) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(ea, eb)| Arc::ptr_eq(ea, eb) || **ea == **eb)
}

/// Same parents, listeners, hostnames and errors: attachment counts, placements and
/// listener statuses stay as they were.
fn same_outcomes(a: &[ParentOutcome], b: &[ParentOutcome]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.parent_ref == y.parent_ref
                && x.gateway == y.gateway
                && match (&x.result, &y.result) {
                    (Ok(p), Ok(q)) => {
                        p.len() == q.len()
                            && p.iter().zip(q).all(|(u, v)| {
                                (u.gateway, u.listener) == (v.gateway, v.listener)
                                    && u.hostnames == v.hostnames
                            })
                    }
                    (Err(p), Err(q)) => p == q,
                    _ => false,
                }
        })
}

/// Where the route's entries sit, as `build::fleet` places them: HTTP(S) listeners of
/// accepted Gateways that are programmed. None when one listener holds the route twice (the
/// virtual-host memo keeps one set of entries per route).
fn placements<'a>(
    gateways: &[GatewayModel],
    outcomes: &'a [ParentOutcome],
) -> Option<Vec<(usize, usize, &'a [String])>> {
    let mut out: Vec<(usize, usize, &[String])> = Vec::new();
    for a in outcomes.iter().flat_map(|o| o.result.iter().flatten()) {
        let gw = &gateways[a.gateway];
        let l = &gw.listeners[a.listener];
        let http = matches!(
            l.protocol.unwrap_or(PortProtocol::Http),
            PortProtocol::Http | PortProtocol::Https
        );
        if gw.not_accepted.is_some() || !l.programmable() || !http {
            continue;
        }
        if out
            .iter()
            .any(|(g, li, _)| (*g, *li) == (a.gateway, a.listener))
        {
            return None;
        }
        out.push((a.gateway, a.listener, &a.hostnames));
    }
    Some(out)
}

/// Position of the route's status in the sorted status list.
fn status_index(statuses: &[ObjectStatus], key: &ObjectKey) -> Option<usize> {
    let want = (
        key.kind.as_str(),
        Some(key.namespace.as_str()),
        key.name.as_str(),
    );
    statuses
        .binary_search_by(|s| (s.kind.as_str(), s.namespace.as_deref(), s.name.as_str()).cmp(&want))
        .ok()
}

fn drop_listeners(m: &mut Memo, ids: &[String]) {
    for id in ids {
        m.vhosts.forget_listener(id);
    }
}
