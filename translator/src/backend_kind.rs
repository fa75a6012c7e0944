//! Portico's own `Backend` kind (`portico.dev/v1alpha1`): endpoints named directly, so users
//! without Kubernetes need no Service/EndpointSlice boilerplate.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "portico.dev";
pub const KIND: &str = "Backend";

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: BackendSpec,
}

// JsonSchema: the CRD in deploy/ is generated from these types (src/kube/crd.rs).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendSpec {
    #[serde(default)]
    pub endpoints: Vec<BackendEndpoint>,
    /// Same values as a Service port's appProtocol (`kubernetes.io/h2c`, `kubernetes.io/ws`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

/// Exactly one of `ip`, `hostname` or `unix`. `port` is required for ip and hostname unless the
/// route's backendRef names one.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendEndpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}
