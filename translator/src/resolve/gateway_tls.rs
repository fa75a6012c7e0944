//! Gateway spec.tls: client certificate validation for listeners (frontend) and the client
//! certificate Envoy presents to TLS backends (backend).

use crate::ir::ClientValidation;
use crate::resolve::context::{Ctx, GATEWAY_GROUP};

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTls {
    pub backend: Option<GatewayTlsBackend>,
    pub frontend: Option<Frontend>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Frontend {
    pub default: Option<FrontendTls>,
    #[serde(default)]
    pub per_port: Vec<PerPort>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PerPort {
    pub port: i32,
    #[serde(default)]
    pub tls: FrontendTls,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct FrontendTls {
    pub validation: Option<FrontendValidation>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct FrontendValidation {
    #[serde(default)]
    pub ca_certificate_refs: Vec<crate::resolve::model::ObjectRef>,
    pub mode: Option<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTlsBackend {
    pub client_certificate_ref: Option<crate::resolve::model::ObjectRef>,
}

/// Resolves frontend client-certificate validation: the CA bundle from ConfigMaps (or Secrets)
/// under `ca.crt`, and the mode.
pub fn frontend_validation(
    ctx: &Ctx,
    gw_ns: &str,
    v: &FrontendValidation,
) -> Result<ClientValidation, (String, String)> {
    let mut bundle = String::new();
    for r in &v.ca_certificate_refs {
        let group = r.group.clone().unwrap_or_default();
        let kind = r.kind.clone().unwrap_or_else(|| "ConfigMap".into());
        let ns = r.namespace.clone().unwrap_or_else(|| gw_ns.to_string());
        if !group.is_empty() || !matches!(kind.as_str(), "ConfigMap" | "Secret") {
            return Err((
                "InvalidCACertificateRef".into(),
                format!("caCertificateRef {group}/{kind} is not supported"),
            ));
        }
        if !ctx.ref_allowed((GATEWAY_GROUP, "Gateway", gw_ns), ("", &kind, &ns, &r.name)) {
            return Err((
                "RefNotPermitted".into(),
                format!(
                    "no ReferenceGrant in {ns} allows this Gateway to use {kind} {}",
                    r.name
                ),
            ));
        }
        let pem = match kind.as_str() {
            "ConfigMap" => ctx
                .config_maps
                .get(&(ns.clone(), r.name.clone()))
                .and_then(|c| c.data.as_ref()?.get("ca.crt").cloned()),
            _ => ctx
                .secrets
                .get(&(ns.clone(), r.name.clone()))
                .and_then(|s| {
                    let bytes = s.data.as_ref()?.get("ca.crt")?;
                    String::from_utf8(bytes.0.clone()).ok()
                }),
        };
        match pem {
            Some(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => bundle.push_str(&pem),
            _ => {
                return Err((
                    "InvalidCACertificateRef".into(),
                    format!("{kind} {ns}/{} has no PEM certificate in ca.crt", r.name),
                ));
            }
        }
    }
    if bundle.is_empty() {
        return Err((
            "InvalidCACertificateRef".into(),
            "client certificate validation needs caCertificateRefs".into(),
        ));
    }
    Ok(ClientValidation {
        ca_pem: bundle,
        allow_insecure: v.mode.as_deref() == Some("AllowInsecureFallback"),
    })
}
