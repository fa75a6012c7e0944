//! Pieces shared by HTTPRoute and GRPCRoute rules: filters, weighted backends, the compiled
//! route shape that virtual hosts are built from.

use crate::ir::{
    Action, Cors, Forward, HeaderMods, Mirror, PathRewrite, Redirect, Retry, Rewrite, RouteMatch,
    WeightedCluster,
};
use crate::resolve::attach::RouteHead;
use crate::resolve::backends::{self, RefError, Traffic};
use crate::resolve::context::Ctx;
use crate::resolve::model::{BackendRef, Filter, HeaderModifier};

/// A rule's field path, `spec.rules[<index>]`: written out only when a note or a dropped
/// rule names it (most rules have neither).
#[derive(Clone, Copy, Debug)]
pub struct RuleField(pub usize);

impl std::fmt::Display for RuleField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "spec.rules[{}]", self.0)
    }
}

/// Everything about a rule except where it matches.
#[derive(Clone, Debug)]
pub struct RuleAction {
    pub action: Action,
    pub request_headers: HeaderMods,
    pub response_headers: HeaderMods,
    pub mirrors: Vec<Mirror>,
    /// Boxed like `ir::Route`'s, which copies them.
    pub cors: Option<Box<Cors>>,
    pub timeout_ms: Option<u64>,
    pub retry: Option<Box<Retry>>,
}

#[derive(Clone, Debug)]
pub struct CompiledRule {
    /// `rule/0` or `rule/<name>`.
    pub label: String,
    pub matches: Vec<RouteMatch>,
    pub action: RuleAction,
}

/// An HTTPRoute or GRPCRoute, ready to be placed into virtual hosts.
pub struct CompiledRoute {
    pub head: RouteHead,
    pub rules: Vec<CompiledRule>,
    /// ResolvedRefs=False reason and message (first unresolved reference).
    pub unresolved: Option<RefError>,
    /// Accepted=False for every parent (the route as a whole is unusable).
    pub invalid: Option<(String, String)>,
    /// PartiallyInvalid=True message, when some rules were dropped and others kept.
    pub partially_invalid: Option<String>,
    /// Rules dropped as invalid (their field paths).
    pub dropped_rules: Vec<String>,
    /// Problems to report, as (field, message, unsupported?).
    pub notes: Vec<(String, String, bool)>,
    /// BackendTLSPolicies that apply to this route's backends.
    pub policies: std::collections::BTreeSet<usize>,
}

impl CompiledRoute {
    pub fn new(head: RouteHead) -> Self {
        CompiledRoute {
            head,
            rules: Vec::new(),
            unresolved: None,
            invalid: None,
            partially_invalid: None,
            dropped_rules: Vec::new(),
            notes: Vec::new(),
            policies: Default::default(),
        }
    }

    /// Drops spare capacity: a `Translator` keeps every compiled route, and growth by
    /// doubling leaves most of these lists (of large elements) a few times too long.
    pub fn shrink(&mut self) {
        self.rules.shrink_to_fit();
        for rule in &mut self.rules {
            rule.matches.shrink_to_fit();
            if let Action::Forward(f) = &mut rule.action.action {
                f.backends.shrink_to_fit();
            }
            rule.action.mirrors.shrink_to_fit();
        }
        self.head.parent_refs.shrink_to_fit();
        self.head.hostnames.shrink_to_fit();
        self.notes.shrink_to_fit();
        self.dropped_rules.shrink_to_fit();
    }

    pub fn unresolved(&mut self, field: String, err: RefError) {
        self.notes.push((field, err.message.clone(), false));
        if self.unresolved.is_none() {
            self.unresolved = Some(err);
        }
    }
}

pub fn header_mods(m: &HeaderModifier) -> HeaderMods {
    HeaderMods {
        set: m
            .set
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
        add: m
            .add
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
        remove: m.remove.clone(),
    }
}

/// Builds a rule's action from its filters and backendRefs.
pub fn build_action(
    ctx: &Ctx,
    route: &mut CompiledRoute,
    field: RuleField,
    filters: &[Filter],
    backend_refs: &[BackendRef],
    traffic: Traffic,
    clusters: &mut crate::resolve::backends::ClusterList,
) -> RuleAction {
    // The route's key is lent out (instead of copying its kind and namespace per rule) while
    // the rest of the route takes notes; empty strings do not allocate.
    let empty = crate::input::ObjectKey {
        kind: String::new(),
        namespace: String::new(),
        name: String::new(),
    };
    let key = std::mem::replace(&mut route.head.key, empty);
    let from = (key.kind.as_str(), key.namespace.as_str());
    let out = action(
        ctx,
        route,
        from,
        field,
        filters,
        backend_refs,
        traffic,
        clusters,
    );
    route.head.key = key;
    out
}

/// `build_action` for a route of kind and namespace `from`.
#[allow(clippy::too_many_arguments)]
fn action(
    ctx: &Ctx,
    route: &mut CompiledRoute,
    from: (&str, &str),
    field: RuleField,
    filters: &[Filter],
    backend_refs: &[BackendRef],
    traffic: Traffic,
    clusters: &mut crate::resolve::backends::ClusterList,
) -> RuleAction {
    let mut out = RuleAction {
        action: Action::Direct {
            status: 500,
            body: None,
        },
        request_headers: HeaderMods::default(),
        response_headers: HeaderMods::default(),
        mirrors: Vec::new(),
        cors: None,
        timeout_ms: None,
        retry: None,
    };
    let mut redirect = None;
    let mut rewrite: Option<Rewrite> = None;
    let mut broken_filter = false;
    for (i, f) in filters.iter().enumerate() {
        let ffield = format!("{field}.filters[{i}]");
        match f.type_.as_str() {
            "RequestHeaderModifier" => out.request_headers.merge(
                f.request_header_modifier
                    .as_ref()
                    .map(header_mods)
                    .unwrap_or_default(),
            ),
            "ResponseHeaderModifier" => out.response_headers.merge(
                f.response_header_modifier
                    .as_ref()
                    .map(header_mods)
                    .unwrap_or_default(),
            ),
            "RequestRedirect" if traffic == Traffic::Http => {
                let r = f.request_redirect.clone().unwrap_or_default();
                redirect = Some(Redirect {
                    scheme: r.scheme,
                    hostname: r.hostname,
                    port: r.port.and_then(|p| u32::try_from(p).ok()),
                    path: r.path.as_ref().and_then(path_rewrite),
                    status: r
                        .status_code
                        .and_then(|c| u32::try_from(c).ok())
                        .unwrap_or(302),
                });
            }
            "URLRewrite" if traffic == Traffic::Http => {
                let r = f.url_rewrite.clone().unwrap_or_default();
                rewrite = Some(Rewrite {
                    hostname: r.hostname,
                    path: r.path.as_ref().and_then(path_rewrite),
                });
            }
            "RequestMirror" => {
                let Some(m) = &f.request_mirror else { continue };
                let mirror = resolve_mirror(ctx, route, from, &ffield, m, traffic, clusters);
                out.mirrors.extend(mirror);
            }
            "CORS" if traffic == Traffic::Http => {
                let c = f.cors.clone().unwrap_or_default();
                out.cors = Some(Box::new(Cors {
                    allow_origins: c.allow_origins,
                    allow_methods: c.allow_methods,
                    allow_headers: c.allow_headers,
                    expose_headers: c.expose_headers,
                    allow_credentials: c.allow_credentials.unwrap_or(false),
                    max_age: c.max_age.map(i64::from),
                }));
            }
            "ExtensionRef" => {
                let name = f
                    .extension_ref
                    .as_ref()
                    .map(|e| {
                        format!(
                            "{}/{} {}",
                            e.group.clone().unwrap_or_default(),
                            e.kind.clone().unwrap_or_default(),
                            e.name
                        )
                    })
                    .unwrap_or_default();
                route.notes.push((
                    ffield,
                    format!("extensionRef {name} is not supported; matching requests get 500"),
                    true,
                ));
                broken_filter = true;
            }
            other => {
                route.notes.push((
                    ffield,
                    format!("filter type {other} is not supported; matching requests get 500"),
                    true,
                ));
                broken_filter = true;
            }
        }
    }
    for (what, mods) in [
        ("request", &mut out.request_headers),
        ("response", &mut out.response_headers),
    ] {
        for e in crate::resolve::validate::header_mods(mods) {
            route.notes.push((
                format!("{field}.filters"),
                format!("{what} header modifier: {e}; ignored"),
                false,
            ));
        }
    }
    if broken_filter {
        return out;
    }
    if let Some(r) = redirect {
        out.action = Action::Redirect(r);
        return out;
    }
    let mut forward = Forward {
        rewrite,
        // Exact: the route is kept (`CompiledRoute::shrink`), and most rules have one.
        backends: Vec::with_capacity(backend_refs.len()),
        ..Default::default()
    };
    for (i, r) in backend_refs.iter().enumerate() {
        let weight = r.weight.unwrap_or(1).max(0) as u32;
        // Only notes name the field: built when one is taken.
        let bfield = || format!("{field}.backendRefs[{i}]");
        let resolved = backends::resolve(ctx, from, r, traffic, clusters);
        let cluster = match resolved {
            Ok(res) => {
                route.policies.extend(res.policy);
                forward.websocket |= res.websocket;
                Some(res.cluster)
            }
            Err(e) => {
                route.unresolved(bfield(), e);
                None
            }
        };
        let mut wc = WeightedCluster {
            cluster,
            weight,
            request_headers: HeaderMods::default(),
            response_headers: HeaderMods::default(),
        };
        for (j, f) in r.filters.iter().enumerate() {
            match f.type_.as_str() {
                "RequestHeaderModifier" => wc.request_headers.merge(
                    f.request_header_modifier
                        .as_ref()
                        .map(header_mods)
                        .unwrap_or_default(),
                ),
                "ResponseHeaderModifier" => wc.response_headers.merge(
                    f.response_header_modifier
                        .as_ref()
                        .map(header_mods)
                        .unwrap_or_default(),
                ),
                "URLRewrite" if backend_refs.len() == 1 && traffic == Traffic::Http => {
                    // One backend: its rewrite is the rule's rewrite.
                    let u = f.url_rewrite.clone().unwrap_or_default();
                    forward.rewrite = Some(Rewrite {
                        hostname: u.hostname,
                        path: u.path.as_ref().and_then(path_rewrite),
                    });
                }
                // One backend: every request it gets is every request the rule forwards, so its
                // mirror is the rule's mirror. Envoy mirrors per route, not per weighted
                // cluster, so with several backends it cannot be expressed.
                "RequestMirror" if backend_refs.len() == 1 => {
                    if let Some(m) = &f.request_mirror {
                        let ffield = format!("{}.filters[{j}]", bfield());
                        let mirror =
                            resolve_mirror(ctx, route, from, &ffield, m, traffic, clusters);
                        out.mirrors.extend(mirror);
                    }
                }
                "RequestMirror" => route.notes.push((
                    format!("{}.filters[{j}]", bfield()),
                    "RequestMirror on a backendRef is only supported when the rule has a single \
                     backendRef (Envoy mirrors per route); ignored"
                        .into(),
                    true,
                )),
                other => route.notes.push((
                    format!("{}.filters[{j}]", bfield()),
                    format!("backendRef filter {other} is not supported here; ignored"),
                    true,
                )),
            }
        }
        for mods in [&mut wc.request_headers, &mut wc.response_headers] {
            for e in crate::resolve::validate::header_mods(mods) {
                route.notes.push((
                    format!("{}.filters", bfield()),
                    format!("{e}; ignored"),
                    false,
                ));
            }
        }
        if weight > 0 {
            forward.backends.push(wc);
        }
    }
    let total: u32 = forward.backends.iter().map(|b| b.weight).sum();
    if total == 0 || forward.backends.iter().all(|b| b.cluster.is_none()) {
        return out;
    }
    out.action = Action::Forward(forward);
    out
}

/// A RequestMirror filter's target and fraction; an unresolved target is reported (the rule
/// still forwards, without the mirror).
fn resolve_mirror(
    ctx: &Ctx,
    route: &mut CompiledRoute,
    from: (&str, &str),
    ffield: &str,
    m: &crate::resolve::model::RequestMirror,
    traffic: Traffic,
    clusters: &mut crate::resolve::backends::ClusterList,
) -> Option<Mirror> {
    match backends::resolve(ctx, from, &m.backend_ref, traffic, clusters) {
        Ok(res) => {
            route.policies.extend(res.policy);
            let (numerator, denominator) = match (&m.fraction, m.percent) {
                (Some(fr), _) => (
                    fr.numerator.max(0) as u32,
                    fr.denominator.unwrap_or(100).max(1) as u32,
                ),
                (None, Some(p)) => (p.clamp(0, 100) as u32, 100),
                (None, None) => (100, 100),
            };
            Some(Mirror {
                cluster: res.cluster,
                numerator,
                denominator,
            })
        }
        Err(e) => {
            route.unresolved(format!("{ffield}.requestMirror.backendRef"), e);
            None
        }
    }
}

fn path_rewrite(p: &crate::resolve::model::PathModifier) -> Option<PathRewrite> {
    match p.type_.as_str() {
        "ReplaceFullPath" => Some(PathRewrite::Full(
            p.replace_full_path.clone().unwrap_or_else(|| "/".into()),
        )),
        "ReplacePrefixMatch" => Some(PathRewrite::Prefix {
            matched: String::new(),
            replacement: p.replace_prefix_match.clone().unwrap_or_else(|| "/".into()),
        }),
        _ => None,
    }
}

/// Parses a Gateway API Duration (`1h2m3s4ms`) into milliseconds.
pub fn duration_ms(s: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    if s.is_empty() {
        return None;
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'h' => 3_600_000,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            'm' => 60_000,
            's' => 1000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !num.is_empty() {
        return None;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::duration_ms;

    #[test]
    fn durations() {
        assert_eq!(duration_ms("1s"), Some(1000));
        assert_eq!(duration_ms("500ms"), Some(500));
        assert_eq!(duration_ms("1h1m1s1ms"), Some(3_661_001));
        assert_eq!(duration_ms("0s"), Some(0));
        assert_eq!(duration_ms("1"), None);
        assert_eq!(duration_ms("1x"), None);
    }
}
