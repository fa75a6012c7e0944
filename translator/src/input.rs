//! The one input struct (all resources by kind) and the YAML parser that fills it.
//!
//! The same format serves the file source and the golden tests.

use std::collections::BTreeMap;
use std::fmt;

use gateway_api::apis::experimental::{
    gatewayclasses::GatewayClass, gateways::Gateway, grpcroutes::GrpcRoute, httproutes::HttpRoute,
    listenersets::ListenerSet, referencegrants::ReferenceGrant, tcproutes::TcpRoute,
    tlsroutes::TlsRoute, udproutes::UdpRoute,
};
use gateway_api::apis::standard::backendtlspolicies::BackendTlsPolicy;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::backend_kind::Backend;
use crate::changes::{ChangeLog, KINDS, Sizes};
use crate::problem::{Problem, ProblemKind, Severity};

/// Every input object, by kind.
#[derive(Default, Clone, Debug)]
pub struct Resources {
    pub gateway_classes: Vec<GatewayClass>,
    pub gateways: Vec<Gateway>,
    pub listener_sets: Vec<ListenerSet>,
    pub http_routes: Vec<HttpRoute>,
    pub grpc_routes: Vec<GrpcRoute>,
    pub tls_routes: Vec<TlsRoute>,
    pub tcp_routes: Vec<TcpRoute>,
    pub udp_routes: Vec<UdpRoute>,
    pub reference_grants: Vec<ReferenceGrant>,
    pub backend_tls_policies: Vec<BackendTlsPolicy>,
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    pub secrets: Vec<Secret>,
    pub config_maps: Vec<ConfigMap>,
    pub namespaces: Vec<Namespace>,
    /// Portico's own kind: endpoints without Kubernetes.
    pub backends: Vec<Backend>,
    /// Where each object came from (for error messages): file and 1-based line of its document.
    pub sources: BTreeMap<ObjectKey, SourceLocation>,
    /// A content fingerprint per object, for `Translator` (incremental translation): equal
    /// revisions promise equal objects. The source supplies them (`insert` records each
    /// document's, a hash of its text); an object without one is treated as changed on
    /// every call, so a source that supplies none is merely slower, never wrong.
    pub revisions: BTreeMap<ObjectKey, u64>,
    /// What `insert` and `remove` changed, for `Translator` (see `changes`). Direct edits of
    /// the fields above are allowed: a change in any list's or map's size makes `Translator`
    /// compare everything instead. An edit that keeps every size (replacing an object in
    /// place) must also replace its revision and go through `remove` + `insert`.
    log: ChangeLog,
}

/// Identifies an input object. `namespace` is empty for cluster-scoped kinds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ObjectKey {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        ObjectKey {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceLocation {
    pub file: String,
    pub line: usize,
}

/// One parsed object of a known kind.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Object {
    GatewayClass(GatewayClass),
    Gateway(Gateway),
    ListenerSet(ListenerSet),
    HttpRoute(HttpRoute),
    GrpcRoute(GrpcRoute),
    TlsRoute(TlsRoute),
    TcpRoute(TcpRoute),
    UdpRoute(UdpRoute),
    ReferenceGrant(ReferenceGrant),
    BackendTlsPolicy(BackendTlsPolicy),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Secret(Secret),
    ConfigMap(ConfigMap),
    Namespace(Namespace),
    Backend(Backend),
}

/// One parsed YAML document (or one item of a `kind: List`).
#[derive(Clone, Debug)]
pub struct Document {
    pub key: ObjectKey,
    /// 1-based line where the document starts.
    pub line: usize,
    pub object: Object,
    /// Hash of the document's text (and its position in a `kind: List`): see
    /// `Resources::revisions`.
    pub revision: u64,
}

impl Resources {
    /// Adds a parsed document, remembering where it came from (nothing for an empty `file`:
    /// an object from the API server has no file and line). An object with the same key stays
    /// (a duplicate): `remove` it first to replace it.
    pub fn insert(&mut self, file: &str, doc: Document) {
        let revised = self
            .revisions
            .insert(doc.key.clone(), doc.revision)
            .is_none();
        if !file.is_empty() {
            self.sources.insert(
                doc.key.clone(),
                SourceLocation {
                    file: file.to_string(),
                    line: doc.line,
                },
            );
        }
        match doc.object {
            Object::GatewayClass(o) => self.gateway_classes.push(o),
            Object::Gateway(o) => self.gateways.push(o),
            Object::ListenerSet(o) => self.listener_sets.push(o),
            Object::HttpRoute(o) => self.http_routes.push(o),
            Object::GrpcRoute(o) => self.grpc_routes.push(o),
            Object::TlsRoute(o) => self.tls_routes.push(o),
            Object::TcpRoute(o) => self.tcp_routes.push(o),
            Object::UdpRoute(o) => self.udp_routes.push(o),
            Object::ReferenceGrant(o) => self.reference_grants.push(o),
            Object::BackendTlsPolicy(o) => self.backend_tls_policies.push(o),
            Object::Service(o) => self.services.push(o),
            Object::EndpointSlice(o) => self.endpoint_slices.push(o),
            Object::Secret(o) => self.secrets.push(o),
            Object::ConfigMap(o) => self.config_maps.push(o),
            Object::Namespace(o) => self.namespaces.push(o),
            Object::Backend(o) => self.backends.push(o),
        }
        let (revisions, sources) = (self.revisions.len(), self.sources.len());
        self.log
            .record(&doc.key, 1, isize::from(revised), revisions, sources);
    }

    /// Removes every object with this key, its source and its revision; returns how many
    /// objects it removed.
    pub fn remove(&mut self, key: &ObjectKey) -> usize {
        self.sources.remove(key);
        let revised = self.revisions.remove(key).is_some();
        macro_rules! drop_from {
            ($list:expr) => {{
                let before = $list.len();
                $list.retain(|o| !crate::objects::is(key, &o.metadata));
                before - $list.len()
            }};
        }
        let removed = match key.kind.as_str() {
            "GatewayClass" => drop_from!(self.gateway_classes),
            "Gateway" => drop_from!(self.gateways),
            "ListenerSet" => drop_from!(self.listener_sets),
            "HTTPRoute" => drop_from!(self.http_routes),
            "GRPCRoute" => drop_from!(self.grpc_routes),
            "TLSRoute" => drop_from!(self.tls_routes),
            "TCPRoute" => drop_from!(self.tcp_routes),
            "UDPRoute" => drop_from!(self.udp_routes),
            "ReferenceGrant" => drop_from!(self.reference_grants),
            "BackendTLSPolicy" => drop_from!(self.backend_tls_policies),
            "Service" => drop_from!(self.services),
            "EndpointSlice" => drop_from!(self.endpoint_slices),
            "Secret" => drop_from!(self.secrets),
            "ConfigMap" => drop_from!(self.config_maps),
            "Namespace" => drop_from!(self.namespaces),
            "Backend" => drop_from!(self.backends),
            _ => 0,
        };
        let (revisions, sources) = (self.revisions.len(), self.sources.len());
        self.log.record(
            key,
            -(removed as isize),
            -isize::from(revised),
            revisions,
            sources,
        );
        removed
    }

    /// The change log, when the lists still have the sizes it recorded (no direct edit
    /// changed a size); `Translator` compares everything otherwise.
    pub fn changes(&self) -> Option<&ChangeLog> {
        let sizes = Sizes {
            kinds: [
                self.gateway_classes.len(),
                self.gateways.len(),
                self.listener_sets.len(),
                self.http_routes.len(),
                self.grpc_routes.len(),
                self.tls_routes.len(),
                self.tcp_routes.len(),
                self.udp_routes.len(),
                self.reference_grants.len(),
                self.backend_tls_policies.len(),
                self.services.len(),
                self.endpoint_slices.len(),
                self.secrets.len(),
                self.config_maps.len(),
                self.namespaces.len(),
                self.backends.len(),
            ],
            revisions: self.revisions.len(),
            sources: self.sources.len(),
        };
        debug_assert_eq!(sizes.kinds.len(), KINDS.len());
        self.log.matches(&sizes).then_some(&self.log)
    }

    /// Parses a whole text and inserts every document that parsed (tests and examples).
    pub fn from_yaml(file: &str, text: &str) -> (Resources, Vec<Problem>) {
        let mut resources = Resources::default();
        let (docs, problems) = parse_file(file, text);
        for doc in docs {
            resources.insert(file, doc);
        }
        (resources, problems)
    }

    /// Where an object was defined, if known.
    pub fn source(&self, key: &ObjectKey) -> Option<&SourceLocation> {
        self.sources.get(key)
    }
}

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// Maps apiVersion + kind to whether Portico knows the kind and whether it is namespaced.
fn known_kind(api_version: &str, kind: &str) -> Option<bool> {
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    match (group, kind) {
        (GATEWAY_GROUP, "GatewayClass") => Some(false),
        (
            GATEWAY_GROUP,
            "Gateway" | "ListenerSet" | "HTTPRoute" | "GRPCRoute" | "TLSRoute" | "TCPRoute"
            | "UDPRoute" | "ReferenceGrant" | "BackendTLSPolicy",
        ) => Some(true),
        ("", "Namespace") if api_version == "v1" => Some(false),
        ("", "Service" | "Secret" | "ConfigMap") if api_version == "v1" => Some(true),
        ("discovery.k8s.io", "EndpointSlice") => Some(true),
        ("portico.dev", "Backend") => Some(true),
        _ => None,
    }
}

/// Parses one file's text: multi-document YAML, empty documents skipped, `kind: List` expanded.
pub fn parse_file(file: &str, text: &str) -> (Vec<Document>, Vec<Problem>) {
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    for chunk in split_documents(text) {
        let value: Value = match serde_yaml::from_str(&chunk.text) {
            Ok(v) => v,
            Err(err) => {
                let line = err.location().map(|l| chunk.first_line + l.line() - 1);
                let message = strip_location(&err.to_string());
                problems.push(
                    Problem::new(
                        Severity::Error,
                        ProblemKind::Parse,
                        format!("YAML syntax error: {message}"),
                    )
                    .at(file, line.or(Some(chunk.content_line))),
                );
                continue;
            }
        };
        if value.is_null() {
            continue;
        }
        let items = match list_items(&value) {
            Some(items) => items,
            None => vec![value],
        };
        let text_hash = xxhash_rust::xxh3::xxh3_64(chunk.text.as_bytes());
        for (index, item) in items.into_iter().enumerate() {
            match parse_object(item) {
                Ok(Some((key, object))) => docs.push(Document {
                    key,
                    line: chunk.content_line,
                    object,
                    revision: xxhash_rust::xxh3::xxh3_64_with_seed(
                        &text_hash.to_le_bytes(),
                        index as u64,
                    ),
                }),
                Ok(None) => {}
                Err(problem) => problems.push(problem.at(file, Some(chunk.content_line))),
            }
        }
    }
    (docs, problems)
}

fn list_items(value: &Value) -> Option<Vec<Value>> {
    let kind = value.get("kind")?.as_str()?;
    if kind != "List" && !kind.ends_with("List") {
        return None;
    }
    match value.get("items") {
        Some(Value::Sequence(items)) => Some(items.clone()),
        _ => Some(Vec::new()),
    }
}

/// Turns one YAML object into a typed object. Unknown kinds come back as a Warning problem.
fn parse_object(mut value: Value) -> Result<Option<(ObjectKey, Object)>, Box<Problem>> {
    let invalid = |field: &str, msg: String| {
        Box::new(Problem::new(Severity::Error, ProblemKind::Invalid, msg).field(field))
    };
    if !value.is_mapping() {
        return Err(invalid(
            "",
            "document is not a mapping (expected a Kubernetes object)".into(),
        ));
    }
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if api_version.is_empty() {
        return Err(invalid("apiVersion", "missing".into()));
    }
    if kind.is_empty() {
        return Err(invalid("kind", "missing".into()));
    }
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(namespaced) = known_kind(&api_version, &kind) else {
        let mut p = Problem::new(
            Severity::Warning,
            ProblemKind::Unsupported,
            format!("unsupported kind {kind} (apiVersion {api_version}), ignored"),
        );
        if !name.is_empty() {
            let ns = value
                .get("metadata")
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            p = p.object(ObjectKey {
                kind: kind.clone(),
                namespace: ns,
                name,
            });
        }
        return Err(Box::new(p));
    };
    if name.is_empty() {
        return Err(invalid("metadata.name", format!("{kind} without a name")));
    }
    let mut namespace = String::new();
    if namespaced {
        namespace = value
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string();
        if let Some(Value::Mapping(meta)) = value.get_mut("metadata") {
            meta.insert(Value::from("namespace"), Value::from(namespace.clone()));
        }
    } else if let Some(Value::Mapping(meta)) = value.get_mut("metadata") {
        // A cluster-scoped object has no namespace (the API server drops a stray one); keeping
        // it would make the object disagree with its key.
        meta.remove(Value::from("namespace"));
    }
    // The API server starts every object at generation 1; a file rarely says so, and status
    // must still carry an observedGeneration that matches.
    if let Some(Value::Mapping(meta)) = value.get_mut("metadata") {
        let generation = Value::from("generation");
        if meta.get(&generation).is_none_or(Value::is_null) {
            meta.insert(generation, Value::from(1));
        }
    }
    let key = ObjectKey {
        kind: kind.clone(),
        namespace,
        name,
    };
    let fail = |p: Box<Problem>| Box::new(p.object(key.clone()));
    let object = match kind.as_str() {
        "GatewayClass" => Object::GatewayClass(typed(value).map_err(fail)?),
        "Gateway" => Object::Gateway(typed(value).map_err(fail)?),
        "ListenerSet" => Object::ListenerSet(typed(value).map_err(fail)?),
        "HTTPRoute" => Object::HttpRoute(typed(value).map_err(fail)?),
        "GRPCRoute" => Object::GrpcRoute(typed(value).map_err(fail)?),
        "TLSRoute" => Object::TlsRoute(typed(value).map_err(fail)?),
        "TCPRoute" => Object::TcpRoute(typed(value).map_err(fail)?),
        "UDPRoute" => Object::UdpRoute(typed(value).map_err(fail)?),
        "ReferenceGrant" => Object::ReferenceGrant(typed(value).map_err(fail)?),
        "BackendTLSPolicy" => Object::BackendTlsPolicy(typed(value).map_err(fail)?),
        "Service" => Object::Service(typed(value).map_err(fail)?),
        "EndpointSlice" => Object::EndpointSlice(typed(value).map_err(fail)?),
        "Secret" => Object::Secret(typed(value).map_err(fail)?),
        "ConfigMap" => Object::ConfigMap(typed(value).map_err(fail)?),
        "Namespace" => Object::Namespace(typed(value).map_err(fail)?),
        "Backend" => Object::Backend(typed(value).map_err(fail)?),
        _ => return Ok(None),
    };
    Ok(Some((key, object)))
}

fn typed<T: DeserializeOwned>(value: Value) -> Result<T, Box<Problem>> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." { String::new() } else { path };
        Box::new(
            Problem::new(
                Severity::Error,
                ProblemKind::Invalid,
                strip_location(&err.inner().to_string()),
            )
            .field(field),
        )
    })
}

/// serde_yaml appends " at line L column C"; the problem carries the line itself.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

struct Chunk {
    text: String,
    /// 1-based line of the chunk's first line in the file.
    first_line: usize,
    /// 1-based line of the chunk's first line that is not blank or a comment.
    content_line: usize,
}

/// Splits at `---` / `...` markers, keeping line numbers. Markers sit at column 0, so block
/// scalars (always indented) cannot contain one.
fn split_documents(text: &str) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut first_line = 1;
    let mut content_line = None;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let is_marker = |m: &str| {
            line == m || line.starts_with(&format!("{m} ")) || line.starts_with(&format!("{m}\t"))
        };
        if is_marker("---") || is_marker("...") {
            chunks.push(Chunk {
                text: std::mem::take(&mut current),
                first_line,
                content_line: content_line.unwrap_or(first_line),
            });
            first_line = lineno + 1;
            content_line = None;
            continue;
        }
        let trimmed = line.trim();
        if content_line.is_none() && !trimmed.is_empty() && !trimmed.starts_with('#') {
            content_line = Some(lineno);
        }
        current.push_str(line);
        current.push('\n');
    }
    chunks.push(Chunk {
        text: current,
        first_line,
        content_line: content_line.unwrap_or(first_line),
    });
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_scoped_object_with_a_stray_namespace_is_removed_by_its_key() {
        let yaml = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  name: gc\n  namespace: stray\nspec:\n  controllerName: x\n";
        let (mut resources, problems) = Resources::from_yaml("a.yaml", yaml);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(resources.gateway_classes[0].metadata.namespace, None);
        assert_eq!(
            resources.remove(&ObjectKey::new("GatewayClass", "", "gc")),
            1
        );
        assert!(resources.gateway_classes.is_empty());
    }
}
