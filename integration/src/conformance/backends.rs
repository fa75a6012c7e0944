//! Echo servers standing in for upstream's Deployments, and the EndpointSlices that point each
//! Service at them.

use serde_json::Value;

use crate::echo::{EchoConfig, EchoHandle, spawn};

use super::manifests::{Deployment, Service, endpoint_slice, kind};

/// One stand-in pod.
pub struct Pod {
    pub deployment: String,
    pub namespace: String,
    pub name: String,
    pub echo: EchoHandle,
}

/// All pods of one case; they stop when this is dropped.
pub struct Backends {
    pub pods: Vec<Pod>,
    /// EndpointSlices for every Service with echo pods behind it.
    pub slices: Vec<Value>,
}

impl Backends {
    /// Starts `replicas` echo servers for every echo-basic Deployment some Service selects.
    pub async fn start(docs: &[Value]) -> anyhow::Result<Self> {
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
            if !deployment.is_http_echo() || !services.iter().any(|s| s.selects(deployment)) {
                continue;
            }
            let service = services
                .iter()
                .find(|s| s.selects(deployment))
                .map(|s| s.name.clone());
            for replica in 0..deployment.replicas.max(1) {
                let name = format!("{}-{replica}", deployment.name);
                let mut config = EchoConfig::new(name.clone(), deployment.namespace.clone());
                config.service = deployment
                    .env
                    .get("SERVICE_NAME")
                    .cloned()
                    .or(service.clone())
                    .unwrap_or_default();
                pods.push(Pod {
                    deployment: deployment.name.clone(),
                    namespace: deployment.namespace.clone(),
                    name,
                    echo: spawn(config).await?,
                });
            }
        }
        let mut slices = Vec::new();
        for service in &services {
            for deployment in deployments.iter().filter(|d| service.selects(d)) {
                for pod in pods.iter().filter(|p| {
                    p.deployment == deployment.name && p.namespace == deployment.namespace
                }) {
                    let addr = pod.echo.addr();
                    slices.push(endpoint_slice(
                        service,
                        &pod.name,
                        &addr.ip().to_string(),
                        addr.port(),
                    ));
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
