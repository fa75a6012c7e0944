//! The kinds Portico watches, and the decoding of one API object into the translator's input.
//!
//! Objects are watched untyped and decoded one by one with the file source's parser, so a
//! malformed object costs a warning for that object alone (a typed list would fail whole)
//! and both sources accept exactly the same input.

use gateway_api::apis::experimental::{
    gatewayclasses::GatewayClass, gateways::Gateway, grpcroutes::GrpcRoute, httproutes::HttpRoute,
    listenersets::ListenerSet, referencegrants::ReferenceGrant, tcproutes::TcpRoute,
    tlsroutes::TlsRoute, udproutes::UdpRoute,
};
use gateway_api::apis::standard::backendtlspolicies::BackendTlsPolicy;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ApiResource, GroupVersionKind};
use portico_translator::{Document, ObjectKey, Problem, ProblemKind, Severity};
use serde_json::Value;

/// One watched kind.
#[derive(Clone, Debug)]
pub struct Kind {
    pub resource: ApiResource,
    pub namespaced: bool,
    /// Portico writes this kind's status (Gateway API kinds and its own).
    pub owns_status: bool,
}

impl Kind {
    fn new(resource: ApiResource, namespaced: bool, owns_status: bool) -> Self {
        Kind {
            resource,
            namespaced,
            owns_status,
        }
    }

    pub fn name(&self) -> &str {
        &self.resource.kind
    }
}

/// Every kind the translator reads, in a fixed order.
pub fn all() -> Vec<Kind> {
    let backend = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            portico_translator::backend_kind::GROUP,
            BACKEND_VERSION,
            "Backend",
        ),
        BACKEND_PLURAL,
    );
    vec![
        Kind::new(ApiResource::erase::<GatewayClass>(&()), false, true),
        Kind::new(ApiResource::erase::<Gateway>(&()), true, true),
        Kind::new(ApiResource::erase::<ListenerSet>(&()), true, true),
        Kind::new(ApiResource::erase::<HttpRoute>(&()), true, true),
        Kind::new(ApiResource::erase::<GrpcRoute>(&()), true, true),
        Kind::new(ApiResource::erase::<TlsRoute>(&()), true, true),
        Kind::new(ApiResource::erase::<TcpRoute>(&()), true, true),
        Kind::new(ApiResource::erase::<UdpRoute>(&()), true, true),
        Kind::new(ApiResource::erase::<ReferenceGrant>(&()), true, false),
        Kind::new(ApiResource::erase::<BackendTlsPolicy>(&()), true, true),
        Kind::new(ApiResource::erase::<Service>(&()), true, false),
        Kind::new(ApiResource::erase::<EndpointSlice>(&()), true, false),
        Kind::new(ApiResource::erase::<Secret>(&()), true, false),
        Kind::new(ApiResource::erase::<ConfigMap>(&()), true, false),
        Kind::new(ApiResource::erase::<Namespace>(&()), false, false),
        Kind::new(backend, true, true),
    ]
}

pub const BACKEND_VERSION: &str = "v1alpha1";
pub const BACKEND_PLURAL: &str = "backends";

/// Decodes one object as the API server sent it. The error is a problem naming the object;
/// for Secrets it never quotes a value.
pub fn decode(kind: &Kind, mut object: Value) -> Result<Document, Box<Problem>> {
    // List items may come without apiVersion and kind; the watch says what they are.
    if let Some(map) = object.as_object_mut() {
        map.insert(
            "apiVersion".into(),
            Value::from(kind.resource.api_version.clone()),
        );
        map.insert("kind".into(), Value::from(kind.resource.kind.clone()));
    }
    let key = key_of(kind, &object);
    let fail = |message: String, field: String| {
        Box::new(
            Problem::new(Severity::Error, ProblemKind::Invalid, message)
                .object(key.clone())
                .field(field),
        )
    };
    // The file source's parser, fed YAML: one decoder, one set of rules, for both sources.
    let text = serde_yaml::to_string(&object)
        .map_err(|e| fail(format!("cannot re-encode: {e}"), String::new()))?;
    let (mut docs, problems) = portico_translator::parse_file("", &text);
    if let Some(problem) = problems.into_iter().next() {
        let message = if kind.name() == "Secret" {
            "does not decode as a Secret".to_string()
        } else {
            problem.message
        };
        return Err(fail(message, problem.field));
    }
    match docs.pop() {
        Some(doc) if docs.is_empty() => Ok(doc),
        _ => Err(fail(
            "did not decode to exactly one object".into(),
            String::new(),
        )),
    }
}

/// The translator's key for an object (namespace empty for cluster-scoped kinds).
pub fn key_of(kind: &Kind, object: &Value) -> ObjectKey {
    let meta = &object["metadata"];
    let namespace = if kind.namespaced {
        meta["namespace"].as_str().unwrap_or("")
    } else {
        ""
    };
    ObjectKey::new(kind.name(), namespace, meta["name"].as_str().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind(name: &str) -> Kind {
        all().into_iter().find(|k| k.name() == name).unwrap()
    }

    #[test]
    fn kinds_match_the_translator_and_the_crds() {
        let names: Vec<String> = all()
            .iter()
            .map(|k| format!("{} {}", k.resource.api_version, k.resource.plural))
            .collect();
        assert!(
            names.contains(&"gateway.networking.k8s.io/v1 gateways".to_string()),
            "{names:?}"
        );
        assert!(
            names.contains(&"gateway.networking.k8s.io/v1alpha2 tcproutes".to_string()),
            "{names:?}"
        );
        assert!(
            names.contains(&"portico.dev/v1alpha1 backends".to_string()),
            "{names:?}"
        );
        assert!(
            names.contains(&"discovery.k8s.io/v1 endpointslices".to_string()),
            "{names:?}"
        );
        assert_eq!(names.len(), 16);
    }

    #[test]
    fn decodes_list_items_without_type_meta() {
        let object = json!({"metadata": {"name": "r", "namespace": "ns"}, "spec": {"hostnames": ["a.example"]}});
        let doc = decode(&kind("HTTPRoute"), object).unwrap();
        assert_eq!(doc.key, ObjectKey::new("HTTPRoute", "ns", "r"));
    }

    #[test]
    fn a_malformed_object_is_a_problem_naming_it() {
        let object = json!({"metadata": {"name": "r", "namespace": "ns"}, "spec": {"hostnames": {"not": "a list"}}});
        let problem = decode(&kind("HTTPRoute"), object).unwrap_err();
        assert_eq!(problem.object, Some(ObjectKey::new("HTTPRoute", "ns", "r")));
        assert_eq!(problem.kind, ProblemKind::Invalid);
    }

    #[test]
    fn secret_problems_never_quote_values() {
        let object = json!({"metadata": {"name": "s", "namespace": "ns"}, "data": {"tls.key": "not base64 !!! SECRET"}});
        let problem = decode(&kind("Secret"), object).unwrap_err();
        assert!(!problem.to_string().contains("SECRET"), "{problem}");
    }
}
