//! The resource types the fake API server knows: group, version, kind, plural and scope.

/// One servable resource type, e.g. `gateway.networking.k8s.io/v1 Gateway` at `gateways`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// Empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
}

impl ResourceType {
    pub fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
        }
    }

    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The URL path of the collection, in one namespace or (with `None`) across all.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let root = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) if self.namespaced => format!("{root}/namespaces/{ns}/{}", self.plural),
            _ => format!("{root}/{}", self.plural),
        }
    }
}

const GATEWAY: &str = "gateway.networking.k8s.io";

/// What a Kubernetes cluster with the Gateway API CRDs and Portico's CRD installed serves
/// (the parts Portico reads and writes).
pub fn default_types() -> Vec<ResourceType> {
    vec![
        ResourceType::new("", "v1", "Namespace", "namespaces", false),
        ResourceType::new("", "v1", "Service", "services", true),
        ResourceType::new("", "v1", "Secret", "secrets", true),
        ResourceType::new("", "v1", "ConfigMap", "configmaps", true),
        ResourceType::new(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            true,
        ),
        ResourceType::new("coordination.k8s.io", "v1", "Lease", "leases", true),
        ResourceType::new(GATEWAY, "v1", "GatewayClass", "gatewayclasses", false),
        ResourceType::new(GATEWAY, "v1", "Gateway", "gateways", true),
        ResourceType::new(GATEWAY, "v1", "ListenerSet", "listenersets", true),
        ResourceType::new(GATEWAY, "v1", "HTTPRoute", "httproutes", true),
        ResourceType::new(GATEWAY, "v1", "GRPCRoute", "grpcroutes", true),
        ResourceType::new(GATEWAY, "v1", "TLSRoute", "tlsroutes", true),
        ResourceType::new(GATEWAY, "v1alpha2", "TCPRoute", "tcproutes", true),
        ResourceType::new(GATEWAY, "v1alpha2", "UDPRoute", "udproutes", true),
        ResourceType::new(GATEWAY, "v1", "ReferenceGrant", "referencegrants", true),
        ResourceType::new(
            GATEWAY,
            "v1",
            "BackendTLSPolicy",
            "backendtlspolicies",
            true,
        ),
        ResourceType::new("portico.dev", "v1alpha1", "Backend", "backends", true),
    ]
}

/// Splits `group/version` (or the core `v1`) into its parts.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}
