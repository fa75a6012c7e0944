//! Config fixtures the end-to-end tests share.

use std::net::{IpAddr, SocketAddr};

/// A Service (port `http` 8080) and the EndpointSlice that points it at one echo server, the
/// way Kubernetes would describe a Service backed by one ready pod.
pub fn service_yaml(namespace: &str, name: &str, backend: SocketAddr) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}
spec:
  selector:
    app: {name}
  ports:
    - name: http
      port: 8080
      targetPort: 3000
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: {namespace}
  labels:
    kubernetes.io/service-name: {name}
addressType: IPv4
ports:
  - name: http
    port: {port}
    protocol: TCP
endpoints:
  - addresses: ["{ip}"]
    conditions:
      ready: true
"#,
        ip = backend.ip(),
        port = backend.port()
    )
}

/// Portico's GatewayClass `portico`, the Namespace, and a Gateway `namespace/name` with one
/// HTTP listener on `port`, bound to `address` when given (else every address).
pub fn gateway_yaml(namespace: &str, name: &str, address: Option<IpAddr>, port: u16) -> String {
    let addresses = address
        .map(|ip| format!("  addresses:\n    - type: IPAddress\n      value: \"{ip}\"\n"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: portico
spec:
  controllerName: portico.dev/gateway-controller
---
apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: {name}
  namespace: {namespace}
spec:
  gatewayClassName: portico
{addresses}  listeners:
    - name: http
      protocol: HTTP
      port: {port}
"#
    )
}
