//! Stage one: Gateway API resources -> IR + status.

pub mod addresses;
pub mod attach;
pub mod backend_tls;
pub mod backends;
pub mod build;
pub mod context;
pub mod gateway;
pub mod gateway_status;
pub mod gateway_tls;
pub mod http;
pub mod listener;
pub mod memo;
pub mod model;
pub mod patch;
pub mod routes;
pub mod rules;
pub mod statuses;
pub mod streams;
pub mod tls_options;
pub mod validate;
pub mod vhost;

use std::collections::{BTreeMap, BTreeSet};

use crate::input::Resources;
use crate::ir::Ir;
use crate::par;
use crate::problem::{Problem, ProblemKind, Severity};
use crate::status::ObjectStatus;
use crate::{Feedback, Options};
use attach::{ParentOutcome, RouteHead};
use backends::{ClusterEntry, ClusterMap};
use context::Ctx;
use memo::{Attached, Compiled, Memo, RouteMemo};
use routes::{compile_routes, finish_clusters};
use statuses::{policy_statuses, route_status};
use std::sync::Arc;

pub struct StageOne {
    pub ir: Ir,
    /// Sorted; shared with `Translator`'s memo, which hands the same list out again while
    /// no status changed.
    pub statuses: Arc<Vec<ObjectStatus>>,
    pub problems: Vec<Problem>,
    /// What stage one finished with, for the caller to free while stage two runs.
    pub garbage: par::Garbage,
}

pub fn run(resources: &Resources, options: &Options, feedback: &Feedback) -> StageOne {
    run_with(resources, options, feedback, None)
}

/// `run`, reusing (and refilling) `memo` when given: see `memo` for what is reused when.
pub fn run_with(
    resources: &Resources,
    options: &Options,
    feedback: &Feedback,
    mut memo: Option<&mut Memo>,
) -> StageOne {
    let gens = memo
        .as_deref_mut()
        .map(|m| m.begin(resources, options, feedback));
    if let (Some(m), Some(g)) = (memo.as_deref_mut(), gens)
        && let Some(stage) = patch::run(resources, options, feedback, m, g)
    {
        return stage;
    }
    let mut ctx = Ctx::new(resources);
    ctx.tls_policies = backend_tls::build(&ctx);
    let (classes, mut statuses) = gateway::classes(&ctx);
    let rejected = rejected_messages(feedback);
    let (mut gateways, sets) = gateway::build(&mut ctx, &classes, options, &rejected);

    let routes = compile_routes(&ctx, resources, memo.as_deref_mut(), gens);
    if let Some(m) = memo.as_deref_mut() {
        m.reuse.routes_reused = routes.iter().filter(|w| w.reused).count();
        m.reuse.routes_compiled = routes.len() - m.reuse.routes_reused;
    }
    // First compiled route wins a cluster name (a name fixes the content anyway). Sorted by
    // reference (stable: the first stays first), then built in bulk: cheaper than thousands
    // of inserts, each with its own key copy.
    let by_name = || {
        let mut named: Vec<&Arc<ClusterEntry>> =
            routes.iter().flat_map(|w| &w.compiled.clusters).collect();
        named.sort_by(|a, b| a.cluster.name.cmp(&b.cluster.name));
        named.dedup_by(|later, first| later.cluster.name == first.cluster.name);
        (named.into_iter())
            .map(|e| (e.cluster.name.clone(), e.clone()))
            .collect::<ClusterMap>()
    };
    // The routes in key order (stable: duplicates keep their input order), found beside
    // the cluster map when there are many.
    let key_order = || {
        let mut order: Vec<usize> = (0..routes.len()).collect();
        order.sort_by(|&a, &b| {
            let key = |i: usize| &routes[i].compiled.route.head.key;
            key(a).cmp(key(b))
        });
        order
    };
    let (mut clusters_by_name, order) =
        par::join(routes.len() >= par::MIN_ITEMS, by_name, key_order);
    let mut unsorted: Vec<Option<routes::RouteWork>> = routes.into_iter().map(Some).collect();
    let routes: Vec<routes::RouteWork> = order.iter().filter_map(|&i| unsorted[i].take()).collect();
    let compiled: Vec<Arc<Compiled>> = routes.iter().map(|w| w.compiled.clone()).collect();
    let mut placements = build::Placements::new();
    let mut policy_uses: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut attached_all = Vec::with_capacity(routes.len());
    let mut attachments_reused = 0;
    // In key order, which is their order in the sorted status list.
    let mut route_statuses: Vec<Arc<Attached>> = Vec::new();
    // Attachments the memo holds, else made (in parallel when many: attaching only reads
    // the Gateways; counting on their listeners follows, in order).
    let attached_list = par::map_or_make(
        &routes,
        |w| {
            let kept = match (&memo, gens) {
                (Some(m), Some(g)) if w.reused => m
                    .routes
                    .get(&w.hash)
                    .filter(|e| e.attach == g.attach)
                    .and_then(|e| e.attached.clone())
                    .inspect(|_| attachments_reused += 1),
                _ => None,
            };
            kept.ok_or(w)
        },
        |w| Arc::new(attach_route(&ctx, &gateways, &sets, &w.compiled.route)),
    );
    for (ri, (w, attached)) in routes.iter().zip(attached_list).enumerate() {
        let route = &w.compiled.route;
        attach::count(&mut gateways, &attached.outcomes);
        // Only the memo keeps every attachment.
        if memo.is_some() {
            attached_all.push(attached.clone());
        }
        let outcomes = &attached.outcomes;
        if attached.status.is_none() {
            continue;
        }
        for o in outcomes.iter().filter(|o| o.result.is_ok()) {
            policy_uses.extend(route.policies.iter().map(|p| (*p, o.gateway)));
        }
        if route.invalid.is_none() {
            for o in outcomes {
                for a in o.result.iter().flatten() {
                    placements
                        .entry((a.gateway, a.listener))
                        .or_default()
                        .push((ri, a.hostnames.clone()));
                }
            }
        }
        report_http_route(&mut ctx, route, outcomes);
        route_statuses.push(attached);
    }
    if let (Some(m), Some(g)) = (memo.as_deref_mut(), gens) {
        m.reuse.attachments_reused = attachments_reused;
        // Updated in place: most entries only get their attachment and stamp refreshed.
        let stamp = m.next_stamp();
        for (w, a) in routes.iter().zip(&attached_all) {
            let Some(revision) = w.revision else {
                continue;
            };
            match m.routes.get_mut(&w.hash) {
                // Reused: the entry has this key, revision and compile generation.
                Some(e) if w.reused => {
                    e.attach = g.attach;
                    e.attached = Some(a.clone());
                    e.stamp = stamp;
                }
                _ => {
                    let entry = RouteMemo {
                        key: w.compiled.route.head.key.clone(),
                        revision,
                        compile: g.compile,
                        deps: w.deps.clone(),
                        compiled: w.compiled.clone(),
                        attach: g.attach,
                        attached: Some(a.clone()),
                        stamp,
                    };
                    m.routes.insert(w.hash, entry);
                }
            }
        }
        m.routes.retain(|_, e| e.stamp == stamp);
    }
    let stream = streams::run(&mut ctx, &mut gateways, &sets, &mut clusters_by_name);
    let finished = finish_clusters(&ctx, &clusters_by_name, memo.as_deref_mut(), gens);
    policy_uses.extend(stream.policy_uses.iter().copied());
    statuses.extend(policy_statuses(&ctx, &gateways, &policy_uses));
    for (head, outcomes, invalid, unresolved, notes) in &stream.statuses {
        report_route(&mut ctx, head, outcomes, notes);
        statuses.push(route_status(
            head,
            outcomes,
            &gateways,
            invalid.as_ref(),
            None,
            unresolved.as_ref(),
        ));
    }

    let mut ir = Ir::default();
    let mut garbage = par::Garbage::default();
    for (gi, gw) in gateways.iter().enumerate() {
        ir.fleets.insert(
            gw.fleet(),
            build::fleet(
                gi,
                gw,
                &compiled,
                &placements,
                &stream.placements,
                &finished,
                memo.as_deref_mut().map(|m| &mut m.vhosts),
                &mut garbage,
            ),
        );
        statuses.push(gateway_status::gateway_status(gw));
        for (i, l) in gw.listeners.iter().enumerate() {
            // Index among the listeners of the same owner (the Gateway or one ListenerSet).
            let index = gw.listeners[..i]
                .iter()
                .filter(|x| x.owner == l.owner)
                .count();
            let owner = match l.owner.kind {
                "Gateway" => gw.key.clone(),
                kind => crate::input::ObjectKey::new(kind, &l.owner.namespace, &l.owner.name),
            };
            for (reason, msg) in [&l.not_accepted, &l.unresolved].into_iter().flatten() {
                let message = format!("listener {}: {reason}: {msg}", l.spec.name);
                ctx.report(
                    &owner,
                    Severity::Error,
                    ProblemKind::NotAccepted,
                    &format!("spec.listeners[{index}]"),
                    message,
                );
            }
        }
    }
    for set in &sets {
        statuses.push(gateway_status::listener_set_status(set, &gateways));
        if let Some((reason, msg)) = &set.not_accepted {
            ctx.report(
                &set.key,
                Severity::Error,
                ProblemKind::NotAccepted,
                "spec.parentRef",
                format!("{reason}: {msg}"),
            );
        }
    }
    let order = |a: &ObjectStatus, b: &ObjectStatus| {
        (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name))
    };
    statuses.sort_by(order);
    // Merge the (sorted) route statuses in; they never share a kind with the others.
    let statuses = match memo.as_deref_mut() {
        Some(m) => {
            let shared =
                (route_statuses.iter()).filter_map(|a| Some((a.status.as_ref()?, Some(a))));
            let own = statuses.iter().map(|s| (s, None));
            m.statuses(&merge_sorted(own, shared, |a, b| order(a.0, b.0)))
        }
        None => {
            // The only references: each status is moved out, not copied.
            let taken =
                par::map_owned(
                    std::mem::take(&mut route_statuses),
                    |a| match Arc::try_unwrap(a) {
                        Ok(a) => a.status,
                        Err(a) => a.status.clone(),
                    },
                );
            let shared = taken.into_iter().flatten();
            Arc::new(merge_sorted(statuses, shared, |a, b| order(a, b)))
        }
    };
    if let Some(m) = memo.as_deref_mut() {
        m.reuse.route_entries_reused = std::mem::take(&mut m.vhosts.reused);
        m.vhosts.end();
    }
    let mut problems = ctx.problems;
    problems.sort();
    problems.dedup();
    if let (Some(m), Some(g)) = (memo, gens) {
        m.last = Some(patch::LastStage {
            gens: g,
            ir: ir.clone(),
            problems: problems.clone(),
            routes: routes.len(),
        });
    }
    // What stage one is done with (without a memo the only references to thousands of
    // compiled routes, attachments and clusters), freed while stage two runs.
    garbage.vec(routes);
    garbage.vec(compiled);
    garbage.vec(attached_all);
    garbage.vec(route_statuses);
    garbage.vec(clusters_by_name.into_iter().collect());
    garbage.one(finished);
    garbage.one(placements);
    StageOne {
        ir,
        statuses,
        problems,
        garbage,
    }
}

/// A compiled HTTPRoute or GRPCRoute attached to its parents (not yet counted on their
/// listeners: `attach::count`), with the status that follows; None status when no parentRef
/// names a Portico parent.
fn attach_route(
    ctx: &Ctx,
    gateways: &[gateway::GatewayModel],
    sets: &[gateway::ListenerSetModel],
    route: &rules::CompiledRoute,
) -> Attached {
    let mut outcomes = attach::attach(ctx, gateways, sets, &route.head, true);
    // Kept by the memo for every route: no spare capacity.
    outcomes.shrink_to_fit();
    for o in &mut outcomes {
        if let Ok(list) = &mut o.result {
            list.shrink_to_fit();
        }
    }
    let status = (!outcomes.is_empty()).then(|| {
        route_status(
            &route.head,
            &outcomes,
            gateways,
            route.invalid.as_ref(),
            route.partially_invalid.as_ref(),
            route.unresolved.as_ref(),
        )
    });
    Attached { outcomes, status }
}

/// Two sorted lists as one, sorted; on a tie the item of `own` comes first.
fn merge_sorted<T>(
    own: impl IntoIterator<Item = T>,
    shared: impl IntoIterator<Item = T>,
    order: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> Vec<T> {
    let (own, shared) = (own.into_iter(), shared.into_iter());
    let mut out = Vec::with_capacity(own.size_hint().0 + shared.size_hint().0);
    let mut shared = shared.peekable();
    for o in own {
        while let Some(s) = shared.next_if(|s| order(s, &o).is_lt()) {
            out.push(s);
        }
        out.push(o);
    }
    out.extend(shared);
    out
}

/// Fleet -> the messages of Envoy's rejections, joined (Gateway status reports them).
fn rejected_messages(feedback: &Feedback) -> BTreeMap<String, String> {
    feedback
        .rejected
        .iter()
        .filter(|(_, r)| !r.is_empty())
        .map(|(fleet, r)| {
            (
                fleet.clone(),
                r.iter()
                    .map(|x| x.message.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
        .collect()
}

/// An HTTPRoute's or GRPCRoute's problems: its parents' refusals, its notes, and its
/// rejection as a whole.
fn report_http_route(ctx: &mut Ctx, route: &rules::CompiledRoute, outcomes: &[ParentOutcome]) {
    report_route(ctx, &route.head, outcomes, &route.notes);
    if let Some((reason, msg)) = &route.invalid {
        ctx.report(
            &route.head.key,
            Severity::Error,
            ProblemKind::NotAccepted,
            "spec.rules",
            format!("{reason}: {msg}"),
        );
    }
}

fn report_route(
    ctx: &mut Ctx,
    head: &RouteHead,
    outcomes: &[ParentOutcome],
    notes: &[(String, String, bool)],
) {
    for (i, o) in outcomes.iter().enumerate() {
        if let Err((reason, msg)) = &o.result {
            let idx = head
                .parent_refs
                .iter()
                .position(|p| *p == o.parent_ref)
                .unwrap_or(i);
            ctx.report(
                &head.key,
                Severity::Error,
                ProblemKind::NotAccepted,
                &format!("spec.parentRefs[{idx}]"),
                format!("{reason}: {msg}"),
            );
        }
    }
    for (field, msg, unsupported) in notes {
        let (sev, kind) = if *unsupported {
            (Severity::Warning, ProblemKind::Unsupported)
        } else {
            (Severity::Error, ProblemKind::Invalid)
        };
        ctx.report(&head.key, sev, kind, field, msg.clone());
    }
}
