//! Echo servers standing in for upstream's Deployments, and the EndpointSlices that point each
//! Service at them.

use std::net::SocketAddr;

use serde_json::Value;

use crate::echo::dns::spawn_dns;
use crate::echo::tcp::{TcpEchoHandle, spawn_tcp};
use crate::echo::udp::spawn_udp;
use crate::echo::{EchoConfig, EchoHandle, EchoTls, spawn};

use super::certs::SetupObjects;
use super::manifests::{
    Deployment, EchoKind, Service, ServicePort, TLS_TARGET_PORT, endpoint_slice, kind,
};

/// One stand-in pod: a cleartext echo listener and, like echo-basic with a certificate, a TLS
/// one for target port 8443.
pub struct Pod {
    pub deployment: String,
    pub namespace: String,
    pub name: String,
    /// The HTTP echo server (HTTP pods only; its log shows mirrored requests).
    pub http: Option<EchoHandle>,
    plain: SocketAddr,
    tls: Option<SocketAddr>,
    _servers: Vec<Server>,
}

/// Servers kept only so that they run as long as the pod (each stops on drop).
type Server = Box<dyn std::any::Any + Send + Sync>;

impl Pod {
    /// Whether this pod's HTTP echo saw a request to `uri`.
    pub fn saw_request_to(&self, uri: &str) -> bool {
        self.http.as_ref().is_some_and(|h| h.saw_request_to(uri))
    }

    fn port_for(&self, port: &ServicePort) -> u16 {
        match self.tls {
            Some(tls) if port.target_port == Some(TLS_TARGET_PORT) => tls.port(),
            _ => self.plain.port(),
        }
    }
}

/// All pods of one case; they stop when this is dropped.
pub struct Backends {
    pub pods: Vec<Pod>,
    /// EndpointSlices for every Service with echo pods behind it.
    pub slices: Vec<Value>,
}

impl Backends {
    /// Starts `replicas` echo servers for every echo-basic Deployment some Service selects.
    pub async fn start(docs: &[Value], setup: &SetupObjects) -> anyhow::Result<Self> {
        let services: Vec<Service> = docs
            .iter()
            .filter(|d| kind(d) == "Service")
            .map(Service::from_doc)
            .collect();
        let deployments: Vec<Deployment> = docs
            .iter()
            .filter(|d| kind(d) == "Deployment")
            .map(Deployment::from_doc)
            .collect();
        let mut pods = Vec::new();
        for deployment in &deployments {
            let Some(echo_kind) = deployment.echo_kind() else {
                continue;
            };
            let Some(service) = services.iter().find(|s| s.selects(deployment)) else {
                continue;
            };
            let tls = deployment
                .tls_secret
                .as_deref()
                .filter(|_| deployment.serves_tls())
                .and_then(|secret| setup.secret(&deployment.namespace, secret))
                .map(|(cert_pem, key_pem)| EchoTls {
                    cert_pem: cert_pem.clone(),
                    key_pem: key_pem.clone(),
                    client_ca_pem: deployment
                        .client_ca_config_map
                        .as_deref()
                        .and_then(|cm| setup.ca_config_map(&deployment.namespace, cm))
                        .cloned(),
                });
            for replica in 0..deployment.replicas.max(1) {
                let name = format!("{}-{replica}", deployment.name);
                let mut config = EchoConfig::new(name.clone(), deployment.namespace.clone());
                config.service = deployment
                    .env
                    .get("SERVICE_NAME")
                    .cloned()
                    .unwrap_or_else(|| service.name.clone());
                pods.push(start_pod(deployment, name, config, echo_kind, tls.clone()).await?);
            }
        }
        let mut slices = Vec::new();
        for service in &services {
            for deployment in deployments.iter().filter(|d| service.selects(d)) {
                for pod in pods.iter().filter(|p| {
                    p.deployment == deployment.name && p.namespace == deployment.namespace
                }) {
                    let ip = pod.plain.ip().to_string();
                    slices.push(endpoint_slice(service, &pod.name, &ip, |p| pod.port_for(p)));
                }
            }
        }
        Ok(Self { pods, slices })
    }

    /// The Deployment behind a pod name, as the echo reports it.
    pub fn deployment_of(&self, pod: &str) -> Option<&str> {
        self.pods
            .iter()
            .find(|p| p.name == pod)
            .map(|p| p.deployment.as_str())
    }

    /// Pods of one Deployment.
    pub fn pods_of<'a>(
        &'a self,
        deployment: &'a str,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a Pod> + 'a {
        self.pods
            .iter()
            .filter(move |p| p.deployment == deployment && p.namespace == namespace)
    }
}

async fn start_pod(
    deployment: &Deployment,
    name: String,
    config: EchoConfig,
    kind: EchoKind,
    tls: Option<EchoTls>,
) -> anyhow::Result<Pod> {
    let tls_config = tls.map(|tls| EchoConfig {
        tls: Some(tls),
        ..config.clone()
    });
    let mut servers = Vec::new();
    let (plain, tls, http) = match kind {
        EchoKind::Http => {
            let plain = spawn(config).await?;
            let addr = plain.addr();
            let tls = match tls_config {
                Some(c) => Some(spawn(c).await?),
                None => None,
            };
            let tls_addr = tls.as_ref().map(EchoHandle::addr);
            servers.extend(tls.map(|t| Box::new(t) as Server));
            (addr, tls_addr, Some(plain))
        }
        EchoKind::Tcp => {
            let plain = spawn_tcp(config).await?;
            let tls = match tls_config {
                Some(c) => Some(spawn_tcp(c).await?),
                None => None,
            };
            let addrs = (plain.addr(), tls.as_ref().map(TcpEchoHandle::addr));
            servers.push(Box::new(plain));
            servers.extend(tls.map(|t| Box::new(t) as Server));
            (addrs.0, addrs.1, None)
        }
        EchoKind::Dns => {
            let dns = spawn_dns(config.bind).await?;
            let addr = dns.addr();
            servers.push(Box::new(dns));
            (addr, None, None)
        }
        EchoKind::Udp => {
            let udp = spawn_udp(config).await?;
            let addr = udp.addr();
            servers.push(Box::new(udp));
            (addr, None, None)
        }
    };
    Ok(Pod {
        deployment: deployment.name.clone(),
        namespace: deployment.namespace.clone(),
        name,
        http,
        plain,
        tls,
        _servers: servers,
    })
}
