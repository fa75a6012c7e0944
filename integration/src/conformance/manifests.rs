//! Reading upstream's manifests and writing what Portico reads: placeholders replaced, our
//! GatewayClass added, Deployments dropped (echo servers stand in for them) and EndpointSlices
//! pointing each Service at its echo pods.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

/// GatewayClass name the runner substitutes for `{GATEWAY_CLASS_NAME}`.
pub const GATEWAY_CLASS: &str = "portico";
/// Portico's controllerName.
pub const CONTROLLER: &str = "portico.dev/gateway-controller";
/// GatewayStaticAddresses' usable address: loopback, so Envoy can bind it.
pub const USABLE_ADDRESS: &str = "127.0.0.250";
/// GatewayStaticAddresses' unusable address: TEST-NET-3, on no interface here.
pub const UNUSABLE_ADDRESS: &str = "203.0.113.1";

/// Parses a multi-document YAML file after replacing the runner placeholders.
pub fn read_documents(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_documents(&text).with_context(|| format!("parsing {}", path.display()))
}

pub fn parse_documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let text = text
        .replace("{GATEWAY_CLASS_NAME}", GATEWAY_CLASS)
        .replace("{GATEWAY_CONTROLLER_NAME}", CONTROLLER)
        .replace(
            r#"value: "PLACEHOLDER_USABLE_ADDRS""#,
            &format!("{{type: IPAddress, value: {USABLE_ADDRESS}}}"),
        )
        .replace(
            r#"value: "PLACEHOLDER_UNUSABLE_ADDRS""#,
            &format!("{{type: IPAddress, value: {UNUSABLE_ADDRESS}}}"),
        );
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(doc)?;
        if value.is_object() {
            out.push(value);
        }
    }
    Ok(out)
}

/// Our GatewayClass.
pub fn gateway_class() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": GATEWAY_CLASS},
        "spec": {"controllerName": CONTROLLER},
    })
}

/// Renders documents as one multi-document YAML file.
pub fn to_yaml(docs: &[Value]) -> anyhow::Result<String> {
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(doc)?);
    }
    Ok(out)
}

pub fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

pub fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

pub fn namespace(doc: &Value) -> &str {
    doc["metadata"]["namespace"].as_str().unwrap_or("default")
}

/// A Deployment that upstream runs, reduced to what the runner needs.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub replicas: u32,
    pub env: BTreeMap<String, String>,
    pub image: String,
    /// The Secret mounted for the server certificate (echo-basic reads TLS_SERVER_CERT there).
    pub tls_secret: Option<String>,
    /// The ConfigMap mounted for client CAs, when echo-basic is given TLS_CLIENT_CACERTS.
    pub client_ca_config_map: Option<String>,
}

impl Deployment {
    pub fn from_doc(doc: &Value) -> Self {
        let template = &doc["spec"]["template"];
        let container = &template["spec"]["containers"][0];
        let env = container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                Some((
                    e["name"].as_str()?.to_string(),
                    e["value"].as_str().unwrap_or("").to_string(),
                ))
            })
            .collect();
        let env_has = |name: &str| {
            container["env"]
                .as_array()
                .is_some_and(|e| e.iter().any(|v| v["name"] == name))
        };
        Self {
            namespace: namespace(doc).to_string(),
            name: name(doc).to_string(),
            labels: string_map(&template["metadata"]["labels"]),
            replicas: doc["spec"]["replicas"].as_u64().unwrap_or(1) as u32,
            env,
            image: container["image"].as_str().unwrap_or_default().to_string(),
            tls_secret: template["spec"]["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|v| v["secret"]["secretName"].as_str())
                .map(str::to_string),
            client_ca_config_map: template["spec"]["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|v| v["configMap"]["name"].as_str())
                .filter(|_| env_has("TLS_CLIENT_CACERTS"))
                .map(str::to_string),
        }
    }

    /// Which echo server stands in for it, if any.
    pub fn echo_kind(&self) -> Option<EchoKind> {
        if self.image.contains("coredns") {
            return Some(EchoKind::Dns);
        }
        if !self.image.contains("echo-basic") {
            return None;
        }
        Some(if self.env.contains_key("TCP_ECHO_SERVER") {
            EchoKind::Tcp
        } else if self.env.contains_key("UDP_ECHO_SERVER") {
            EchoKind::Udp
        } else {
            EchoKind::Http
        })
    }

    /// Whether echo-basic would also serve TLS (on port 8443).
    pub fn serves_tls(&self) -> bool {
        self.env.contains_key("TLS_SERVER_CERT") && self.tls_secret.is_some()
    }
}

/// The echo-basic modes the runner provides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EchoKind {
    /// HTTP/1.1, h2c and gRPC.
    Http,
    /// The TCP echo protocol.
    Tcp,
    /// The UDP echo.
    Udp,
    /// A DNS responder in place of coredns.
    Dns,
}

/// echo-basic's TLS port (HTTPS_PORT / TLS_PORT default).
pub const TLS_TARGET_PORT: u16 = 8443;

/// A Service port, as the EndpointSlice needs it.
#[derive(Clone, Debug)]
pub struct ServicePort {
    pub name: String,
    pub protocol: String,
    pub app_protocol: Option<String>,
    /// Numeric targetPort (defaults to port); named ports are `None`.
    pub target_port: Option<u16>,
}

#[derive(Clone, Debug)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
}

impl Service {
    pub fn from_doc(doc: &Value) -> Self {
        let ports = doc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| ServicePort {
                name: p["name"].as_str().unwrap_or_default().to_string(),
                protocol: p["protocol"].as_str().unwrap_or("TCP").to_string(),
                app_protocol: p["appProtocol"].as_str().map(str::to_string),
                target_port: match &p["targetPort"] {
                    Value::Null => p["port"].as_u64(),
                    target => target.as_u64(),
                }
                .and_then(|t| u16::try_from(t).ok()),
            })
            .collect();
        Self {
            namespace: namespace(doc).to_string(),
            name: name(doc).to_string(),
            selector: string_map(&doc["spec"]["selector"]),
            ports,
        }
    }

    pub fn selects(&self, deployment: &Deployment) -> bool {
        deployment.namespace == self.namespace
            && !self.selector.is_empty()
            && self
                .selector
                .iter()
                .all(|(k, v)| deployment.labels.get(k) == Some(v))
    }
}

/// One EndpointSlice for one pod of a Service; `port_for` gives the pod's port behind each
/// Service port (one echo port serves HTTP/1.1, h2c and gRPC; TLS has its own).
pub fn endpoint_slice(
    service: &Service,
    pod: &str,
    ip: &str,
    port_for: impl Fn(&ServicePort) -> u16,
) -> Value {
    let ports: Vec<Value> = service
        .ports
        .iter()
        .map(|p| {
            let mut port = json!({"name": p.name, "port": port_for(p), "protocol": p.protocol});
            if let Some(app) = &p.app_protocol {
                port["appProtocol"] = json!(app);
            }
            port
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{}-{pod}", service.name),
            "namespace": service.namespace,
            "labels": {"kubernetes.io/service-name": service.name},
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": [{
            "addresses": [ip],
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "targetRef": {"kind": "Pod", "name": pod, "namespace": service.namespace},
        }],
    })
}

/// The port of a Gateway's first listener (where upstream sends requests by default).
pub fn first_listener_port(docs: &[Value], gateway: &str) -> Option<u16> {
    listener_ports(docs, gateway).into_iter().next()
}

/// The ports of a Gateway's listeners, in spec order.
pub fn listener_ports(docs: &[Value], gateway: &str) -> Vec<u16> {
    let Some((ns, gw)) = gateway.split_once('/') else {
        return Vec::new();
    };
    let Some(doc) = docs
        .iter()
        .find(|d| kind(d) == "Gateway" && namespace(d) == ns && name(d) == gw)
    else {
        return Vec::new();
    };
    doc["spec"]["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["port"].as_u64().and_then(|p| u16::try_from(p).ok()))
        .collect()
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: ns}
spec:
  selector: {app: web}
  ports:
    - {name: http, port: 8080, targetPort: 3000, appProtocol: kubernetes.io/h2c}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: ns}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: registry.k8s.io/gateway-api/conformance/echo-basic:v1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ns}
spec:
  gatewayClassName: "{GATEWAY_CLASS_NAME}"
  listeners: [{name: http, port: 80, protocol: HTTP}]
"#;

    #[test]
    fn reads_services_deployments_and_gateways() {
        let docs = parse_documents(DOCS).unwrap();
        assert_eq!(docs.len(), 3);
        let service = Service::from_doc(&docs[0]);
        let deployment = Deployment::from_doc(&docs[1]);
        assert!(service.selects(&deployment));
        assert_eq!(deployment.echo_kind(), Some(EchoKind::Http));
        assert_eq!(deployment.replicas, 2);
        assert_eq!(docs[2]["spec"]["gatewayClassName"], GATEWAY_CLASS);
        assert_eq!(first_listener_port(&docs, "ns/gw"), Some(80));
    }

    #[test]
    fn replaces_static_address_placeholders() {
        let docs = parse_documents(
            "kind: Gateway\nspec:\n  addresses:\n  - value: \"PLACEHOLDER_UNUSABLE_ADDRS\"\n  - value: \"PLACEHOLDER_USABLE_ADDRS\"\n",
        )
        .unwrap();
        let addresses = &docs[0]["spec"]["addresses"];
        assert_eq!(addresses[0]["value"], UNUSABLE_ADDRESS);
        assert_eq!(addresses[1]["type"], "IPAddress");
        assert_eq!(addresses[1]["value"], USABLE_ADDRESS);
    }

    #[test]
    fn slices_map_every_service_port_to_the_pod() {
        let docs = parse_documents(DOCS).unwrap();
        let slice = endpoint_slice(&Service::from_doc(&docs[0]), "web-0", "127.0.0.1", |_| 4000);
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "svc"
        );
        assert_eq!(slice["ports"][0]["port"], 4000);
        assert_eq!(slice["ports"][0]["name"], "http");
        assert_eq!(slice["ports"][0]["appProtocol"], "kubernetes.io/h2c");
        assert_eq!(slice["endpoints"][0]["targetRef"]["name"], "web-0");
    }
}
