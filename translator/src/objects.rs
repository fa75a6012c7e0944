//! Single objects of a `Resources`, by key: a copy of one (for last-good stand-ins and
//! demoted duplicates), and all of them moved out at once (for bulk rebuilds).
//!
//! Sources keep every object once, in the `Resources` they hand to the translator, so these
//! are the way back from it to `Document`s.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::input::{Document, Object, ObjectKey, Resources};

/// Whether objects of this kind live in a namespace (the parser's key has "" otherwise).
fn namespaced(kind: &str) -> bool {
    !matches!(kind, "GatewayClass" | "Namespace")
}

/// Whether an object's metadata names the object with this key.
pub(crate) fn is(key: &ObjectKey, meta: &ObjectMeta) -> bool {
    meta.name.as_deref() == Some(key.name.as_str())
        && (!namespaced(&key.kind) || meta.namespace.as_deref().unwrap_or("") == key.namespace)
}

impl Resources {
    /// A copy of the object with this key, with the line and revision `insert` recorded.
    pub fn get(&self, key: &ObjectKey) -> Option<Document> {
        get(self, key)
    }

    /// Every object, moved out (no copies), with the line and revision `insert` recorded.
    pub fn into_documents(self) -> Vec<Document> {
        drain(self)
    }
}

fn get(resources: &Resources, key: &ObjectKey) -> Option<Document> {
    macro_rules! find {
        ($list:expr, $variant:ident) => {
            $list
                .iter()
                .find(|o| is(key, &o.metadata))
                .map(|o| Object::$variant(o.clone()))
        };
    }
    let object = match key.kind.as_str() {
        "GatewayClass" => find!(resources.gateway_classes, GatewayClass),
        "Gateway" => find!(resources.gateways, Gateway),
        "ListenerSet" => find!(resources.listener_sets, ListenerSet),
        "HTTPRoute" => find!(resources.http_routes, HttpRoute),
        "GRPCRoute" => find!(resources.grpc_routes, GrpcRoute),
        "TLSRoute" => find!(resources.tls_routes, TlsRoute),
        "TCPRoute" => find!(resources.tcp_routes, TcpRoute),
        "UDPRoute" => find!(resources.udp_routes, UdpRoute),
        "ReferenceGrant" => find!(resources.reference_grants, ReferenceGrant),
        "BackendTLSPolicy" => find!(resources.backend_tls_policies, BackendTlsPolicy),
        "Service" => find!(resources.services, Service),
        "EndpointSlice" => find!(resources.endpoint_slices, EndpointSlice),
        "Secret" => find!(resources.secrets, Secret),
        "ConfigMap" => find!(resources.config_maps, ConfigMap),
        "Namespace" => find!(resources.namespaces, Namespace),
        "Backend" => find!(resources.backends, Backend),
        _ => None,
    }?;
    Some(Document {
        key: key.clone(),
        line: resources.sources.get(key).map_or(0, |s| s.line),
        object,
        revision: resources.revisions.get(key).copied().unwrap_or_default(),
    })
}

fn drain(resources: Resources) -> Vec<Document> {
    let Resources {
        gateway_classes,
        gateways,
        listener_sets,
        http_routes,
        grpc_routes,
        tls_routes,
        tcp_routes,
        udp_routes,
        reference_grants,
        backend_tls_policies,
        services,
        endpoint_slices,
        secrets,
        config_maps,
        namespaces,
        backends,
        sources,
        revisions,
        ..
    } = resources;
    let mut out = Vec::new();
    macro_rules! take {
        ($list:expr, $kind:literal, $variant:ident) => {
            for o in $list {
                let namespace = match namespaced($kind) {
                    true => o.metadata.namespace.clone().unwrap_or_default(),
                    false => String::new(),
                };
                let name = o.metadata.name.clone().unwrap_or_default();
                let key = ObjectKey {
                    kind: $kind.to_string(),
                    namespace,
                    name,
                };
                out.push(Document {
                    line: sources.get(&key).map_or(0, |s| s.line),
                    revision: revisions.get(&key).copied().unwrap_or_default(),
                    key,
                    object: Object::$variant(o),
                });
            }
        };
    }
    take!(gateway_classes, "GatewayClass", GatewayClass);
    take!(gateways, "Gateway", Gateway);
    take!(listener_sets, "ListenerSet", ListenerSet);
    take!(http_routes, "HTTPRoute", HttpRoute);
    take!(grpc_routes, "GRPCRoute", GrpcRoute);
    take!(tls_routes, "TLSRoute", TlsRoute);
    take!(tcp_routes, "TCPRoute", TcpRoute);
    take!(udp_routes, "UDPRoute", UdpRoute);
    take!(reference_grants, "ReferenceGrant", ReferenceGrant);
    take!(backend_tls_policies, "BackendTLSPolicy", BackendTlsPolicy);
    take!(services, "Service", Service);
    take!(endpoint_slices, "EndpointSlice", EndpointSlice);
    take!(secrets, "Secret", Secret);
    take!(config_maps, "ConfigMap", ConfigMap);
    take!(namespaces, "Namespace", Namespace);
    take!(backends, "Backend", Backend);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: a\nspec: {}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n  namespace: stray\n";

    #[test]
    fn get_and_drain_give_back_what_was_inserted() {
        let (docs, problems) = crate::parse_file("f.yaml", TEXT);
        assert!(problems.is_empty(), "{problems:?}");
        let (resources, _) = Resources::from_yaml("f.yaml", TEXT);
        for doc in &docs {
            let got = resources.get(&doc.key).unwrap();
            assert_eq!(
                (&got.key, got.line, got.revision),
                (&doc.key, doc.line, doc.revision)
            );
            assert_eq!(format!("{:?}", got.object), format!("{:?}", doc.object));
        }
        assert!(
            resources
                .get(&ObjectKey::new("HTTPRoute", "default", "b"))
                .is_none()
        );
        let drained = resources.into_documents();
        let summary = |d: &[Document]| {
            let mut s: Vec<_> = d
                .iter()
                .map(|d| format!("{:?} {} {} {:?}", d.key, d.line, d.revision, d.object))
                .collect();
            s.sort();
            s
        };
        assert_eq!(summary(&drained), summary(&docs));
    }
}
