//! HTTPRoute and GRPCRoute -> compiled routes (matches + actions), independent of listeners.

use gateway_api::apis::experimental::grpcroutes::GrpcRoute;
use gateway_api::apis::experimental::httproutes::HttpRoute;

use crate::input::ObjectKey;
use crate::ir::{PathMatch, RouteMatch, ValueMatch};
use crate::resolve::attach::RouteHead;
use crate::resolve::backends::Traffic;
use crate::resolve::context::Ctx;
use crate::resolve::model::{GrpcRouteSpec, HttpRouteSpec, ValueMatchSpec, convert};
use crate::resolve::rules::{CompiledRoute, CompiledRule, RuleField, build_action, duration_ms};
use crate::resolve::validate;

fn head(
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    parent_refs: Vec<crate::resolve::model::ParentRef>,
    hostnames: Vec<String>,
) -> RouteHead {
    RouteHead {
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
        parent_refs,
        hostnames,
    }
}

fn value_matches(specs: &[ValueMatchSpec], fold_case: bool) -> Vec<ValueMatch> {
    let mut out: Vec<ValueMatch> = Vec::new();
    for s in specs {
        let name = if fold_case {
            s.name.to_ascii_lowercase()
        } else {
            s.name.clone()
        };
        // The spec: only the first entry of an equivalent name counts.
        if out.iter().any(|m| m.name == name) {
            continue;
        }
        let regex = s.type_.as_deref() == Some("RegularExpression");
        out.push(ValueMatch {
            name,
            value: s.value.clone(),
            regex,
        });
    }
    out
}

fn rule_label(index: usize, name: &Option<String>) -> String {
    match name {
        Some(n) if !n.is_empty() => format!("rule/{n}"),
        _ => format!("rule/{index}"),
    }
}

pub fn compile_http(
    ctx: &Ctx,
    route: &HttpRoute,
    clusters: &mut crate::resolve::backends::ClusterList,
) -> CompiledRoute {
    let mut spec: HttpRouteSpec = crate::resolve::model::http_route_spec(&route.spec);
    let mut out = CompiledRoute::new(head(
        "HTTPRoute",
        &route.metadata,
        std::mem::take(&mut spec.parent_refs),
        std::mem::take(&mut spec.hostnames),
    ));
    // Exact capacities: the route is kept (`CompiledRoute::shrink`).
    out.rules.reserve_exact(spec.rules.len());
    for (i, rule) in spec.rules.iter().enumerate() {
        let field = RuleField(i);
        if rule.session_persistence.is_some() {
            out.notes.push((
                format!("{field}.sessionPersistence"),
                "session persistence is not supported; ignored".into(),
                true,
            ));
        }
        let mut matches = Vec::with_capacity(rule.matches.len().max(1));
        for m in &rule.matches {
            let path = m.path.as_ref();
            let value = path.and_then(|p| p.value.as_deref()).unwrap_or("/");
            let path = match path
                .and_then(|p| p.type_.as_deref())
                .unwrap_or("PathPrefix")
            {
                "Exact" => PathMatch::Exact(value.to_string()),
                "RegularExpression" => PathMatch::Regex(value.to_string()),
                _ => PathMatch::Prefix(normalize_prefix(value)),
            };
            let m = RouteMatch {
                path,
                headers: value_matches(&m.headers, true),
                query: value_matches(&m.query_params, false),
                method: m.method.clone(),
                grpc: false,
            };
            keep_valid(&mut out, field, m, &mut matches);
        }
        if !rule.matches.is_empty() && matches.is_empty() {
            out.dropped_rules.push(field.to_string());
            continue;
        }
        if matches.is_empty() {
            matches.push(RouteMatch::default());
        }
        let mut action = build_action(
            ctx,
            &mut out,
            field,
            &rule.filters,
            &rule.backend_refs,
            Traffic::Http,
            clusters,
        );
        if let Some(t) = &rule.timeouts {
            let request = t.request.as_deref().and_then(duration_ms);
            let backend = t.backend_request.as_deref().and_then(duration_ms);
            // With retries, backendRequest bounds each attempt and request the whole; without,
            // the tighter of the two bounds the one attempt. 0 disables a timeout.
            action.timeout_ms = match (request, backend) {
                (Some(r), _) if rule.retry.is_some() => Some(r),
                (Some(r), Some(b)) if r != 0 && b != 0 => Some(r.min(b)),
                (Some(0), Some(b)) => Some(b),
                (Some(r), _) => Some(r),
                (None, _) if rule.retry.is_some() => None,
                (None, b) => b,
            };
            if request.is_none() && t.request.is_some()
                || backend.is_none() && t.backend_request.is_some()
            {
                out.notes.push((
                    format!("{field}.timeouts"),
                    "timeout is not a valid duration; ignored".into(),
                    false,
                ));
            }
        }
        if let Some(r) = &rule.retry {
            action.retry = Some(Box::new(crate::ir::Retry {
                attempts: r.attempts.unwrap_or(1).max(0) as u32,
                codes: r
                    .codes
                    .iter()
                    .filter_map(|c| u32::try_from(*c).ok())
                    .collect(),
                backoff_ms: r.backoff.as_deref().and_then(duration_ms),
                per_try_timeout_ms: rule
                    .timeouts
                    .as_ref()
                    .and_then(|t| t.backend_request.as_deref())
                    .and_then(duration_ms),
            }));
        }
        out.rules.push(CompiledRule {
            label: rule_label(i, &rule.name),
            matches,
            action,
        });
    }
    finish(&mut out, !spec.rules.is_empty());
    out
}

/// Gateway API ignores a trailing slash on a path prefix.
fn normalize_prefix(value: &str) -> String {
    let trimmed = value.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.to_string()
    }
}

pub fn compile_grpc(
    ctx: &Ctx,
    route: &GrpcRoute,
    clusters: &mut crate::resolve::backends::ClusterList,
) -> CompiledRoute {
    let mut spec: GrpcRouteSpec = convert(&route.spec);
    let mut out = CompiledRoute::new(head(
        "GRPCRoute",
        &route.metadata,
        std::mem::take(&mut spec.parent_refs),
        std::mem::take(&mut spec.hostnames),
    ));
    for (i, rule) in spec.rules.iter().enumerate() {
        let field = RuleField(i);
        let mut matches = Vec::new();
        for m in &rule.matches {
            let method = m.method.clone().unwrap_or_default();
            let regex = method.type_.as_deref() == Some("RegularExpression");
            let svc = method.service.filter(|s| !s.is_empty());
            let meth = method.method.filter(|s| !s.is_empty());
            let path = match (regex, svc, meth) {
                (false, Some(s), Some(m)) => PathMatch::Exact(format!("/{s}/{m}")),
                (false, Some(s), None) => PathMatch::Prefix(format!("/{s}")),
                (false, None, Some(m)) => PathMatch::Regex(format!("/[^/]+/{}", regex_escape(&m))),
                (true, s, m) if s.is_some() || m.is_some() => PathMatch::Regex(format!(
                    "/{}/{}",
                    s.unwrap_or_else(|| "[^/]+".into()),
                    m.unwrap_or_else(|| "[^/]+".into())
                )),
                _ => PathMatch::Prefix("/".into()),
            };
            let m = RouteMatch {
                path,
                headers: value_matches(&m.headers, true),
                query: Vec::new(),
                method: None,
                grpc: false,
            };
            keep_valid(&mut out, field, m, &mut matches);
        }
        if !rule.matches.is_empty() && matches.is_empty() {
            out.dropped_rules.push(field.to_string());
            continue;
        }
        if matches.is_empty() {
            matches.push(RouteMatch::default());
        }
        let action = build_action(
            ctx,
            &mut out,
            field,
            &rule.filters,
            &rule.backend_refs,
            Traffic::Grpc,
            clusters,
        );
        out.rules.push(CompiledRule {
            label: rule_label(i, &rule.name),
            matches,
            action,
        });
    }
    finish(&mut out, !spec.rules.is_empty());
    out
}

pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Keeps a match only if Envoy would accept it; otherwise reports it (the rest of the route
/// keeps working). `rule_field` is the rule's field path; the match's is built only when needed.
fn keep_valid(
    route: &mut CompiledRoute,
    rule_field: RuleField,
    m: RouteMatch,
    matches: &mut Vec<RouteMatch>,
) {
    match validate::route_match(&m) {
        Ok(()) => matches.push(m),
        Err(e) => route.notes.push((
            format!("{rule_field}.matches[{}]", matches.len()),
            format!("{e}; this match is ignored"),
            false,
        )),
    }
}

/// Drops invalid route hostnames, and marks a route whose every rule was dropped.
fn finish(route: &mut CompiledRoute, had_rules: bool) {
    let mut notes = Vec::new();
    route
        .head
        .hostnames
        .retain(|h| match validate::hostname(h) {
            Ok(()) => true,
            Err(e) => {
                notes.push(("spec.hostnames".to_string(), format!("{e}; ignored"), false));
                false
            }
        });
    route.notes.extend(notes);
    if had_rules && route.rules.is_empty() {
        route.invalid = Some((
            "UnsupportedValue".into(),
            "no rule of this route is valid".into(),
        ));
    } else if !route.dropped_rules.is_empty() {
        // The spec's "Drop Rule(s)" approach: the message starts with "Dropped Rule".
        route.partially_invalid = Some(format!(
            "Dropped Rule(s) {}: no match of the rule is valid",
            route.dropped_rules.join(", ")
        ));
    }
    route.shrink();
}
