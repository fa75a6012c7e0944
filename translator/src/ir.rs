//! Stage one's output: what each fleet should do, with no Kubernetes types and with endpoints
//! resolved. Stage two (`xds`) turns it into Envoy protos.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::input::ObjectKey;

#[derive(Default, Clone, Debug, Serialize)]
pub struct Ir {
    /// "namespace/name" of the Gateway -> its fleet.
    pub fleets: BTreeMap<String, Fleet>,
}

#[derive(Default, Clone, Debug, Serialize)]
pub struct Fleet {
    /// Addresses the listeners bind; the first is the primary. Empty = 0.0.0.0.
    pub addresses: Vec<String>,
    /// One per port, sorted by port.
    pub ports: Vec<Port>,
    /// By name (shared with `Translator`'s memo, which hands out the previous call's map
    /// again while it holds the same clusters).
    pub clusters: std::sync::Arc<BTreeMap<String, std::sync::Arc<Cluster>>>,
    /// Certificates served by listeners, by name.
    pub secrets: BTreeMap<String, TlsSecret>,
    /// Gateway spec.infrastructure labels and annotations, for the fleet's listeners and
    /// clusters (the Envoy objects Portico creates for this Gateway).
    pub infrastructure: Infrastructure,
}

#[derive(Default, Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Infrastructure {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum PortProtocol {
    Http,
    Https,
    Tls,
    Tcp,
    Udp,
}

/// One Envoy listener: every Gateway listener of one port.
#[derive(Clone, Debug, Serialize)]
pub struct Port {
    /// Envoy listener name, e.g. `http-8080`; also the RDS route configuration name.
    pub name: String,
    pub port: u16,
    pub protocol: PortProtocol,
    /// HTTP(S): one per Gateway listener hostname, most specific first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub virtual_hosts: Vec<VirtualHost>,
    /// HTTPS / TLS: filter chains chosen by SNI, most specific first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls_chains: Vec<TlsChain>,
    /// TCP / UDP: where the traffic goes (first accepted route wins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamRoute>,
    /// Sorted. Shared: `Translator` hands out the previous call's list again while equal.
    pub origins: std::sync::Arc<Vec<ObjectKey>>,
}

/// An SNI-selected filter chain.
#[derive(Clone, Debug, Serialize)]
pub struct TlsChain {
    /// Gateway listener hostname; None = any SNI (and clients without SNI).
    pub hostname: Option<String>,
    /// Terminate: secrets to serve (by name). Empty for passthrough.
    pub certificates: Vec<String>,
    /// Passthrough / terminated TLSRoute: TCP proxy target per SNI hostname of routes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamRoute>,
    /// HTTPS: true (HTTP connection manager with the port's route config).
    pub http: bool,
    /// Listener name in status (for errors and stats).
    pub listener: String,
    /// Client certificate validation (Gateway spec.tls.frontend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_validation: Option<ClientValidation>,
    /// Protocol versions and cipher suites (listener tls.options).
    pub params: TlsParams,
}

/// Downstream TLS parameters; defaults leave Envoy's own.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct TlsParams {
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
    pub cipher_suites: Vec<String>,
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_0,
    V1_1,
    V1_2,
    V1_3,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ClientValidation {
    /// PEM bundle of CAs that sign acceptable client certificates.
    pub ca_pem: String,
    /// AllowInsecureFallback: ask for a certificate but accept any, or none.
    pub allow_insecure: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct StreamRoute {
    pub backends: Vec<WeightedCluster>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VirtualHost {
    /// Unique within the port: `gateway-ns/gateway-name/listener-name`.
    pub name: String,
    /// Envoy domains: the listener hostname, or `*`.
    pub domains: Vec<String>,
    /// In match order. Shared: `Translator` hands out the same list again while the
    /// listener's routes are unchanged, and stage two tells that by the pointer.
    pub routes: std::sync::Arc<Vec<std::sync::Arc<Route>>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Route {
    /// Unique within the virtual host.
    pub name: String,
    pub origin: ObjectKey,
    /// A route hostname narrower than the virtual host's, matched on `:authority`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    pub matcher: RouteMatch,
    pub action: Action,
    #[serde(skip_serializing_if = "HeaderMods::is_empty")]
    pub request_headers: HeaderMods,
    #[serde(skip_serializing_if = "HeaderMods::is_empty")]
    pub response_headers: HeaderMods,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<Mirror>,
    /// Boxed, as `retry`: rarely set, and every route is built and moved per listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Box<Cors>>,
    /// Whole-request timeout in milliseconds (0 = disabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Box<Retry>>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RouteMatch {
    pub path: PathMatch,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<ValueMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// gRPC requests only (content-type application/grpc).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub grpc: bool,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub enum PathMatch {
    /// Whole path.
    Exact(String),
    /// Path-element prefix: `/foo` matches `/foo` and `/foo/bar`, not `/foobar`. `/` matches all.
    Prefix(String),
    /// RE2 regular expression on the whole path.
    Regex(String),
}

impl Default for PathMatch {
    fn default() -> Self {
        PathMatch::Prefix("/".into())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ValueMatch {
    pub name: String,
    pub value: String,
    pub regex: bool,
}

#[derive(Clone, Debug, Serialize)]
pub enum Action {
    Forward(Forward),
    Redirect(Redirect),
    Direct { status: u32, body: Option<String> },
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Forward {
    /// Clusters and their weights; `cluster: None` is a share answered with 500.
    pub backends: Vec<WeightedCluster>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// WebSocket upgrades allowed (a backend speaks kubernetes.io/ws or wss).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub websocket: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct WeightedCluster {
    pub cluster: Option<String>,
    pub weight: u32,
    #[serde(skip_serializing_if = "HeaderMods::is_empty")]
    pub request_headers: HeaderMods,
    #[serde(skip_serializing_if = "HeaderMods::is_empty")]
    pub response_headers: HeaderMods,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct HeaderMods {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl HeaderMods {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    pub fn merge(&mut self, other: HeaderMods) {
        self.set.extend(other.set);
        self.add.extend(other.add);
        self.remove.extend(other.remove);
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Rewrite {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
}

#[derive(Clone, Debug, Serialize)]
pub enum PathRewrite {
    Full(String),
    /// Replace the matched path-prefix (`matched`) with `replacement`.
    Prefix {
        matched: String,
        replacement: String,
    },
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Redirect {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Port written into Location; None = no port (the scheme's well-known one). Stage one
    /// resolves the Gateway API defaults per listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
    pub status: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct Mirror {
    pub cluster: String,
    /// Percent of requests mirrored, as numerator/denominator.
    pub numerator: u32,
    pub denominator: u32,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Cors {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Retry {
    pub attempts: u32,
    pub codes: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    /// Per-attempt timeout (backendRequest) in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_try_timeout_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum UpstreamProtocol {
    Http1,
    /// HTTP/2 cleartext (h2c, gRPC).
    H2c,
    /// WebSocket over HTTP/1.1.
    Ws,
    /// Raw TCP / UDP (stream routes).
    Stream,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub protocol: UpstreamProtocol,
    pub discovery: Discovery,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
    pub origins: Vec<ObjectKey>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub enum Discovery {
    /// EDS over ADS, with these endpoints.
    Eds(Vec<Endpoint>),
    /// Names resolved by Envoy (ExternalName, Backend hostnames).
    Dns(Vec<Endpoint>),
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    Socket { address: String, port: u16 },
    Unix { path: String },
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct UpstreamTls {
    pub sni: String,
    /// PEM bundle of trusted CAs; None = system trust store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    pub use_system_ca: bool,
    pub subject_alt_names: Vec<String>,
    /// Client certificate secret (by name) to present to the backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TlsSecret {
    pub name: String,
    pub cert_pem: String,
    #[serde(serialize_with = "redacted")]
    pub key_pem: String,
}

fn redacted<S: serde::Serializer>(_: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
}
