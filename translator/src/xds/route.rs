//! RDS: one route configuration per port; one virtual host per Gateway listener hostname.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, RuntimeFractionalPercent,
    header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, HeaderMatcher, QueryParameterMatcher, RedirectAction, RetryPolicy, Route,
    RouteAction, RouteMatch, WeightedCluster, header_matcher, query_parameter_matcher,
    redirect_action, retry_policy, route, route_action, route_match, weighted_cluster,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatchAndSubstitute, RegexMatcher, StringMatcher, string_matcher,
};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

use crate::ir::{self, Action, HeaderMods, PathMatch, PathRewrite, ValueMatch};
use crate::resolve::http::regex_escape;
use crate::xds::{INVALID_CLUSTER, any, duration_ms};

fn regex(r: &str) -> RegexMatcher {
    RegexMatcher {
        regex: r.to_string(),
        ..Default::default()
    }
}

fn string_matcher(value: &str, is_regex: bool) -> StringMatcher {
    let pattern = if is_regex {
        string_matcher::MatchPattern::SafeRegex(regex(value))
    } else {
        string_matcher::MatchPattern::Exact(value.to_string())
    };
    StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    }
}

fn header(name: &str, value: &str, is_regex: bool) -> HeaderMatcher {
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
            string_matcher(value, is_regex),
        )),
        ..Default::default()
    }
}

/// `:authority` pattern for a route hostname (exact or `*.suffix`), case-insensitive.
fn authority_regex(host: &str) -> String {
    match host.strip_prefix("*.") {
        Some(sfx) => format!("(?i)[^:]+\\.{}(:[0-9]+)?", regex_escape(sfx)),
        None => format!("(?i){}(:[0-9]+)?", regex_escape(host)),
    }
}

fn route_match(r: &ir::Route) -> RouteMatch {
    let m = &r.matcher;
    let path = match &m.path {
        PathMatch::Exact(p) => route_match::PathSpecifier::Path(p.clone()),
        PathMatch::Prefix(p) if p == "/" => route_match::PathSpecifier::Prefix("/".into()),
        PathMatch::Prefix(p) => route_match::PathSpecifier::PathSeparatedPrefix(p.clone()),
        PathMatch::Regex(p) => route_match::PathSpecifier::SafeRegex(regex(p)),
    };
    let mut headers: Vec<HeaderMatcher> = Vec::new();
    if let Some(host) = &r.authority {
        headers.push(header(":authority", &authority_regex(host), true));
    }
    if let Some(method) = &m.method {
        headers.push(header(":method", method, false));
    }
    headers.extend(
        m.headers
            .iter()
            .map(|h: &ValueMatch| header(&h.name, &h.value, h.regex)),
    );
    RouteMatch {
        path_specifier: Some(path),
        headers,
        query_parameters: m
            .query
            .iter()
            .map(|q| QueryParameterMatcher {
                name: q.name.clone(),
                query_parameter_match_specifier: Some(
                    query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(
                        string_matcher(&q.value, q.regex),
                    ),
                ),
            })
            .collect(),
        ..Default::default()
    }
}

fn header_options(mods: &HeaderMods) -> Vec<HeaderValueOption> {
    let opt = |(k, v): &(String, String), action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.clone(),
            value: v.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    let mut out: Vec<_> = mods
        .set
        .iter()
        .map(|h| opt(h, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .collect();
    out.extend(
        mods.add
            .iter()
            .map(|h| opt(h, HeaderAppendAction::AppendIfExistsOrAdd)),
    );
    out
}

// A Route is over 2 KB and a RouteAction over 1 KB: filled field by field in place, where
// a struct literal with `..Default::default()` built a default and moved it, per route.
#[allow(clippy::field_reassign_with_default)]
pub(crate) fn route(r: &ir::Route) -> Route {
    let mut out = Route::default();
    out.name = r.name.clone();
    out.r#match = Some(route_match(r));
    out.request_headers_to_add = header_options(&r.request_headers);
    out.request_headers_to_remove = r.request_headers.remove.clone();
    out.response_headers_to_add = header_options(&r.response_headers);
    out.response_headers_to_remove = r.response_headers.remove.clone();
    match &r.action {
        Action::Direct { status, body } => {
            out.action = Some(route::Action::DirectResponse(DirectResponseAction {
                status: *status,
                body: body.as_ref().map(|b| envoy_types::pb::envoy::config::core::v3::DataSource {
                    specifier: Some(envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineString(b.clone())),
                    ..Default::default()
                }),
                ..Default::default()
            }))
        }
        Action::Redirect(redirect) => {
            out.action = Some(route::Action::Redirect(redirect_action(redirect)))
        }
        Action::Forward(f) => {
            out.action = Some(route::Action::Route(RouteAction::default()));
            if let Some(route::Action::Route(a)) = &mut out.action {
                route_action(a, r, f);
            }
        }
    }
    if let Some(c) = &r.cors {
        out.typed_per_filter_config =
            HashMap::from([("envoy.filters.http.cors".to_string(), any(&cors_policy(c)))]);
    }
    out
}

fn redirect_action(r: &ir::Redirect) -> RedirectAction {
    let response_code = match r.status {
        301 => redirect_action::RedirectResponseCode::MovedPermanently,
        303 => redirect_action::RedirectResponseCode::SeeOther,
        307 => redirect_action::RedirectResponseCode::TemporaryRedirect,
        308 => redirect_action::RedirectResponseCode::PermanentRedirect,
        _ => redirect_action::RedirectResponseCode::Found,
    };
    RedirectAction {
        scheme_rewrite_specifier: r
            .scheme
            .clone()
            .map(redirect_action::SchemeRewriteSpecifier::SchemeRedirect),
        host_redirect: r.hostname.clone().unwrap_or_default(),
        port_redirect: r.port.unwrap_or(0),
        path_rewrite_specifier: r.path.as_ref().map(|p| match p {
            PathRewrite::Full(full) => {
                redirect_action::PathRewriteSpecifier::PathRedirect(full.clone())
            }
            PathRewrite::Prefix {
                matched,
                replacement,
            } => match prefix_rewrite(matched, replacement) {
                Ok(prefix) => redirect_action::PathRewriteSpecifier::PrefixRewrite(prefix),
                Err(re) => redirect_action::PathRewriteSpecifier::RegexRewrite(re),
            },
        }),
        response_code: response_code as i32,
        ..Default::default()
    }
}

/// Gateway API prefix replacement. Envoy's prefix_rewrite works for a path-separated prefix
/// and a non-root replacement; otherwise a regex keeps the path-segment boundary.
fn prefix_rewrite(matched: &str, replacement: &str) -> Result<String, RegexMatchAndSubstitute> {
    let replacement = replacement.trim_end_matches('/');
    let matched = matched.trim_end_matches('/');
    if !matched.is_empty() && !replacement.is_empty() {
        return Ok(replacement.to_string());
    }
    Err(RegexMatchAndSubstitute {
        pattern: Some(regex(&format!("^{}/*", regex_escape(matched)))),
        substitution: format!("{replacement}/"),
    })
}

/// Fills `a` (a default RouteAction) for a forwarding route.
fn route_action(a: &mut RouteAction, r: &ir::Route, f: &ir::Forward) {
    a.cluster_not_found_response_code =
        route_action::ClusterNotFoundResponseCode::InternalServerError as i32;
    let simple = f.backends.len() == 1
        && f.backends[0].cluster.is_some()
        && f.backends[0].request_headers.is_empty()
        && f.backends[0].response_headers.is_empty();
    a.cluster_specifier = Some(if simple {
        route_action::ClusterSpecifier::Cluster(f.backends[0].cluster.clone().unwrap_or_default())
    } else {
        route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: f
                .backends
                .iter()
                .map(|b| weighted_cluster::ClusterWeight {
                    name: b.cluster.clone().unwrap_or_else(|| INVALID_CLUSTER.into()),
                    weight: Some(UInt32Value { value: b.weight }),
                    request_headers_to_add: header_options(&b.request_headers),
                    request_headers_to_remove: b.request_headers.remove.clone(),
                    response_headers_to_add: header_options(&b.response_headers),
                    response_headers_to_remove: b.response_headers.remove.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    });
    if let Some(rw) = &f.rewrite {
        if let Some(h) = &rw.hostname {
            a.host_rewrite_specifier = Some(
                route_action::HostRewriteSpecifier::HostRewriteLiteral(h.clone()),
            );
        }
        match &rw.path {
            Some(PathRewrite::Full(full)) => {
                a.regex_rewrite = Some(RegexMatchAndSubstitute {
                    pattern: Some(regex("^/.*$")),
                    substitution: full.clone(),
                })
            }
            Some(PathRewrite::Prefix {
                matched,
                replacement,
            }) => match prefix_rewrite(matched, replacement) {
                Ok(prefix) => a.prefix_rewrite = prefix,
                Err(re) => a.regex_rewrite = Some(re),
            },
            None => {}
        }
    }
    if let Some(ms) = r.timeout_ms {
        a.timeout = Some(duration_ms(ms));
    }
    if let Some(retry) = &r.retry {
        // The spec: connection errors are always retried once a retry stanza exists.
        let mut on = vec!["connect-failure", "refused-stream", "reset"];
        if !retry.codes.is_empty() {
            on.push("retriable-status-codes");
        }
        a.retry_policy = Some(RetryPolicy {
            retry_on: on.join(","),
            num_retries: Some(UInt32Value {
                value: retry.attempts,
            }),
            retriable_status_codes: retry.codes.clone(),
            per_try_timeout: retry.per_try_timeout_ms.map(duration_ms),
            retry_back_off: retry.backoff_ms.map(|ms| retry_policy::RetryBackOff {
                base_interval: Some(duration_ms(ms.max(1))),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    a.request_mirror_policies = r
        .mirrors
        .iter()
        .map(|m| route_action::RequestMirrorPolicy {
            cluster: m.cluster.clone(),
            runtime_fraction: Some(RuntimeFractionalPercent {
                default_value: Some(FractionalPercent {
                    numerator: ((u64::from(m.numerator) * 1_000_000)
                        / u64::from(m.denominator.max(1))) as u32,
                    denominator: fractional_percent::DenominatorType::Million as i32,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
}

fn cors_policy(c: &ir::Cors) -> CorsPolicy {
    CorsPolicy {
        allow_origin_string_match: c
            .allow_origins
            .iter()
            .map(|o| {
                if o.contains('*') {
                    let re = o
                        .split('*')
                        .map(regex_escape)
                        .collect::<Vec<_>>()
                        .join(".*");
                    string_matcher(&re, true)
                } else {
                    string_matcher(o, false)
                }
            })
            .collect(),
        allow_methods: c.allow_methods.join(", "),
        allow_headers: c.allow_headers.join(", "),
        expose_headers: c.expose_headers.join(", "),
        max_age: c.max_age.map(|m| m.to_string()).unwrap_or_default(),
        allow_credentials: c.allow_credentials.then_some(BoolValue { value: true }),
        // A preflight from an origin that is not allowed is answered here, never forwarded.
        forward_not_matching_preflights: Some(BoolValue { value: false }),
        ..Default::default()
    }
}
