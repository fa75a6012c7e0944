//! Plain views of the Gateway API spec fields Portico reads, shared by every route and listener
//! kind. The generated `gateway-api` types differ per kind (`HttpRouteParentRefs`,
//! `GrpcRouteParentRefs`, ...) for identical shapes; converting through JSON gives one type each.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Converts between two serde types of the same JSON shape.
pub fn convert<T: Serialize, U: DeserializeOwned + Default>(value: &T) -> U {
    // Through bytes rather than a `Value` tree: far fewer allocations (no floats in these
    // shapes, so nothing depends on float round-tripping).
    serde_json::to_vec(value)
        .ok()
        .and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_default()
}

/// A unit enum variant's serde name (`PathPrefix`, `GET`): what `convert` would write.
fn unit_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// `convert(spec)`, field by field for what nearly every HTTPRoute has (parentRefs,
/// hostnames, matches, backendRefs): the JSON round trip was most of a route's compile time.
/// Filters, retry and session persistence still go through `convert` when present.
pub fn http_route_spec(
    spec: &gateway_api::apis::experimental::httproutes::HttpRouteSpec,
) -> HttpRouteSpec {
    HttpRouteSpec {
        parent_refs: spec
            .parent_refs
            .iter()
            .flatten()
            .map(|p| ParentRef {
                group: p.group.clone(),
                kind: p.kind.clone(),
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                section_name: p.section_name.clone(),
                port: p.port,
            })
            .collect(),
        hostnames: spec.hostnames.clone().unwrap_or_default(),
        rules: spec.rules.iter().flatten().map(http_rule).collect(),
    }
}

fn http_rule(r: &gateway_api::apis::experimental::httproutes::HttpRouteRules) -> HttpRule {
    // Spelled as serde spells them (the test against `convert` checks it).
    use gateway_api::apis::experimental::httproutes::{
        HttpRouteRulesMatchesHeadersType as HeaderType, HttpRouteRulesMatchesPathType as PathType,
    };
    HttpRule {
        name: r.name.clone(),
        matches: r
            .matches
            .iter()
            .flatten()
            .map(|m| HttpMatch {
                path: m.path.as_ref().map(|p| PathMatchSpec {
                    type_: p.r#type.as_ref().map(|t| {
                        match t {
                            PathType::Exact => "Exact",
                            PathType::PathPrefix => "PathPrefix",
                            PathType::RegularExpression => "RegularExpression",
                        }
                        .to_string()
                    }),
                    value: p.value.clone(),
                }),
                headers: (m.headers.iter().flatten())
                    .map(|h| ValueMatchSpec {
                        type_: h.r#type.as_ref().map(|t| {
                            match t {
                                HeaderType::Exact => "Exact",
                                HeaderType::RegularExpression => "RegularExpression",
                            }
                            .to_string()
                        }),
                        name: h.name.clone(),
                        value: h.value.clone(),
                    })
                    .collect(),
                query_params: (m.query_params.iter().flatten())
                    .map(|q| ValueMatchSpec {
                        type_: q.r#type.as_ref().map(unit_name),
                        name: q.name.clone(),
                        value: q.value.clone(),
                    })
                    .collect(),
                method: m.method.as_ref().map(unit_name),
            })
            .collect(),
        filters: r.filters.as_ref().map(convert).unwrap_or_default(),
        backend_refs: r
            .backend_refs
            .iter()
            .flatten()
            .map(|b| BackendRef {
                group: b.group.clone(),
                kind: b.kind.clone(),
                namespace: b.namespace.clone(),
                name: b.name.clone(),
                port: b.port,
                weight: b.weight,
                filters: b.filters.as_ref().map(convert).unwrap_or_default(),
            })
            .collect(),
        timeouts: r.timeouts.as_ref().map(|t| Timeouts {
            request: t.request.clone(),
            backend_request: t.backend_request.clone(),
        }),
        retry: r.retry.as_ref().map(convert),
        session_persistence: r.session_persistence.as_ref().map(convert),
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: String,
    pub section_name: Option<String>,
    pub port: Option<i32>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: String,
    pub port: Option<i32>,
    pub weight: Option<i32>,
    #[serde(default)]
    pub filters: Vec<Filter>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let value = labels.get(&e.key);
                match e.operator.as_str() {
                    "In" => value.is_some_and(|v| e.values.contains(v)),
                    "NotIn" => !value.is_some_and(|v| e.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSpec {
    pub name: String,
    pub hostname: Option<String>,
    #[serde(default)]
    pub port: i32,
    #[serde(default)]
    pub protocol: String,
    pub tls: Option<ListenerTls>,
    pub allowed_routes: Option<AllowedRoutes>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    pub mode: Option<String>,
    #[serde(default)]
    pub certificate_refs: Vec<ObjectRef>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// A typed reference to another object (certificateRefs, caCertificateRefs, ...).
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRoutes {
    pub namespaces: Option<RouteNamespaces>,
    pub kinds: Option<Vec<RouteGroupKind>>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct RouteNamespaces {
    pub from: Option<String>,
    pub selector: Option<LabelSelector>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct RouteGroupKind {
    pub group: Option<String>,
    pub kind: String,
}

/// HTTPRoute and GRPCRoute filters (GRPCRoute uses a subset).
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(rename = "type")]
    pub type_: String,
    pub request_header_modifier: Option<HeaderModifier>,
    pub response_header_modifier: Option<HeaderModifier>,
    pub request_redirect: Option<RequestRedirect>,
    pub url_rewrite: Option<UrlRewrite>,
    pub request_mirror: Option<RequestMirror>,
    pub cors: Option<CorsFilter>,
    pub extension_ref: Option<ObjectRef>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct HeaderModifier {
    #[serde(default)]
    pub set: Vec<NameValue>,
    #[serde(default)]
    pub add: Vec<NameValue>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct RequestRedirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
    pub port: Option<i32>,
    pub status_code: Option<i64>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct UrlRewrite {
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct PathModifier {
    #[serde(rename = "type")]
    pub type_: String,
    pub replace_full_path: Option<String>,
    pub replace_prefix_match: Option<String>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct RequestMirror {
    pub backend_ref: BackendRef,
    pub percent: Option<i32>,
    pub fraction: Option<Fraction>,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct Fraction {
    pub numerator: i32,
    pub denominator: Option<i32>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct CorsFilter {
    #[serde(default)]
    pub allow_origins: Vec<String>,
    #[serde(default)]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    pub allow_credentials: Option<bool>,
    pub max_age: Option<i32>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub rules: Vec<HttpRule>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpRule {
    pub name: Option<String>,
    #[serde(default)]
    pub matches: Vec<HttpMatch>,
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
    pub timeouts: Option<Timeouts>,
    pub retry: Option<RetrySpec>,
    pub session_persistence: Option<serde_json::Value>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatch {
    pub path: Option<PathMatchSpec>,
    #[serde(default)]
    pub headers: Vec<ValueMatchSpec>,
    #[serde(default)]
    pub query_params: Vec<ValueMatchSpec>,
    pub method: Option<String>,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct PathMatchSpec {
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub value: Option<String>,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct ValueMatchSpec {
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub name: String,
    pub value: String,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    pub request: Option<String>,
    pub backend_request: Option<String>,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct RetrySpec {
    pub attempts: Option<i64>,
    pub backoff: Option<String>,
    #[serde(default)]
    pub codes: Vec<i64>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub rules: Vec<GrpcRule>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRule {
    pub name: Option<String>,
    #[serde(default)]
    pub matches: Vec<GrpcMatch>,
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct GrpcMatch {
    pub method: Option<GrpcMethodMatch>,
    #[serde(default)]
    pub headers: Vec<ValueMatchSpec>,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct GrpcMethodMatch {
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub service: Option<String>,
    pub method: Option<String>,
}

/// TCPRoute, UDPRoute and TLSRoute.
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct StreamRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub rules: Vec<StreamRule>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct StreamRule {
    pub name: Option<String>,
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
}
