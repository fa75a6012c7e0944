//! BackendTLSPolicy: TLS from Envoy to Services, validated against a CA bundle (ConfigMaps) or
//! the system trust store, with the policy's hostname as SNI and expected SAN.

use serde::Deserialize;

use crate::input::ObjectKey;
use crate::ir::UpstreamTls;
use crate::resolve::context::Ctx;
use crate::resolve::model::convert;
use crate::status::Condition;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PolicySpec {
    #[serde(default)]
    target_refs: Vec<TargetRef>,
    #[serde(default)]
    validation: Validation,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TargetRef {
    #[serde(default)]
    group: String,
    kind: String,
    name: String,
    section_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Validation {
    #[serde(default)]
    ca_certificate_refs: Vec<CaRef>,
    // camelCase would spell it wellKnownCaCertificates.
    #[serde(rename = "wellKnownCACertificates")]
    well_known_ca_certificates: Option<String>,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    subject_alt_names: Vec<San>,
}

#[derive(Deserialize, Default)]
struct CaRef {
    #[serde(default)]
    group: String,
    kind: String,
    name: String,
}

#[derive(Deserialize, Default)]
struct San {
    #[serde(rename = "type")]
    type_: String,
    hostname: Option<String>,
    uri: Option<String>,
}

pub struct PolicyModel {
    pub key: ObjectKey,
    pub generation: Option<i64>,
    created: String,
    /// (service name, section name) in the policy's namespace.
    targets: Vec<(String, Option<String>)>,
    /// The TLS settings, or (Accepted reason, ResolvedRefs reason, message) when invalid.
    pub result: Result<UpstreamTls, (String, String, String)>,
    /// Older policies (indices) that target a Service port this one also targets, and the
    /// message: the spec makes the older one win and this one Accepted=False Conflicted.
    pub conflicts: Option<(Vec<usize>, String)>,
}

impl PolicyModel {
    pub fn conditions(&self) -> Vec<Condition> {
        let mut out = self.own_conditions();
        if let Some((_, msg)) = &self.conflicts {
            out[0] = Condition::new("Accepted", false, "Conflicted", msg.clone());
        }
        out
    }

    fn own_conditions(&self) -> Vec<Condition> {
        match &self.result {
            Ok(_) => vec![
                Condition::new("Accepted", true, "Accepted", "Policy is accepted"),
                Condition::new(
                    "ResolvedRefs",
                    true,
                    "ResolvedRefs",
                    "All references resolved",
                ),
            ],
            Err((accepted, resolved, msg)) => vec![
                Condition::new("Accepted", false, accepted, msg.clone()),
                Condition::new("ResolvedRefs", false, resolved, msg.clone()),
            ],
        }
    }
}

fn pem_certificates(s: &str) -> bool {
    s.contains("-----BEGIN CERTIFICATE-----") && s.contains("-----END CERTIFICATE-----")
}

pub fn build(ctx: &Ctx) -> Vec<PolicyModel> {
    let mut out = Vec::new();
    for p in &ctx.res.backend_tls_policies {
        let ns = p
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let key = ObjectKey::new(
            "BackendTLSPolicy",
            &ns,
            p.metadata.name.as_deref().unwrap_or_default(),
        );
        let spec: PolicySpec = convert(&p.spec);
        let targets = spec
            .target_refs
            .iter()
            .filter(|t| t.group.is_empty() && t.kind == "Service")
            .map(|t| (t.name.clone(), t.section_name.clone()))
            .collect();
        let v = &spec.validation;
        let mut bundle = String::new();
        let mut error = None;
        for r in &v.ca_certificate_refs {
            if !r.group.is_empty() || r.kind != "ConfigMap" {
                error = Some((
                    "InvalidKind",
                    format!("caCertificateRef {}/{} is not a ConfigMap", r.group, r.kind),
                ));
                continue;
            }
            let data = ctx
                .config_maps
                .get(&(ns.clone(), r.name.clone()))
                .and_then(|c| c.data.as_ref())
                .and_then(|d| d.get("ca.crt"));
            match data {
                Some(pem) if pem_certificates(pem) => bundle.push_str(pem),
                Some(_) => {
                    error = Some((
                        "InvalidCACertificateRef",
                        format!("ConfigMap {ns}/{} has no PEM certificate in ca.crt", r.name),
                    ))
                }
                None => {
                    error = Some((
                        "InvalidCACertificateRef",
                        format!("ConfigMap {ns}/{} does not exist or has no ca.crt", r.name),
                    ))
                }
            }
        }
        let system = v.well_known_ca_certificates.as_deref() == Some("System");
        let result = if bundle.is_empty() && !system {
            let (reason, msg) =
                error.unwrap_or(("InvalidCACertificateRef", "no CA certificates".into()));
            Err(("NoValidCACertificate".to_string(), reason.to_string(), msg))
        } else {
            let mut sans: Vec<String> = v
                .subject_alt_names
                .iter()
                .filter_map(|s| match s.type_.as_str() {
                    "URI" => s.uri.clone().map(|u| format!("uri:{u}")),
                    _ => s.hostname.clone().map(|h| format!("dns:{h}")),
                })
                .collect();
            if sans.is_empty() {
                sans.push(format!("dns:{}", v.hostname));
            }
            Ok(UpstreamTls {
                sni: v.hostname.clone(),
                ca_pem: (!bundle.is_empty()).then_some(bundle),
                use_system_ca: bundle_is_empty_and(system, &v.ca_certificate_refs),
                subject_alt_names: sans,
                client_certificate: None,
            })
        };
        out.push(PolicyModel {
            key,
            generation: p.metadata.generation,
            created: p
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
            targets,
            result,
            conflicts: None,
        });
    }
    // Oldest first, then by name: the first policy for a target wins.
    out.sort_by(|a, b| {
        (a.created.is_empty(), &a.created, &a.key).cmp(&(b.created.is_empty(), &b.created, &b.key))
    });
    mark_conflicts(&mut out);
    out
}

/// Two policies conflict when they name the same Service with the same sectionName (or both
/// none) in one namespace. The loser keeps applying to its other targets; `lookup` already
/// gives the contested one to the winner.
fn mark_conflicts(policies: &mut [PolicyModel]) {
    for i in 0..policies.len() {
        let mut winners = Vec::new();
        let mut contested = Vec::new();
        for t in &policies[i].targets {
            let ns = &policies[i].key.namespace;
            // The oldest policy for the target is the one that applies.
            let Some(j) = policies[..i]
                .iter()
                .position(|older| &older.key.namespace == ns && older.targets.contains(t))
            else {
                continue;
            };
            if !winners.contains(&j) {
                winners.push(j);
            }
            let what = match &t.1 {
                Some(s) => format!("Service {} port {s}", t.0),
                None => format!("Service {}", t.0),
            };
            contested.push(format!(
                "{what} (BackendTLSPolicy {} is older)",
                policies[j].key.name
            ));
        }
        if !winners.is_empty() {
            let msg = format!(
                "conflicts with an older policy on {}; the older policy applies there",
                contested.join(", ")
            );
            policies[i].conflicts = Some((winners, msg));
        }
    }
}

fn bundle_is_empty_and(system: bool, refs: &[CaRef]) -> bool {
    system && refs.is_empty()
}

/// The policy for a Service port: one naming the port (sectionName) wins over one for the
/// whole Service; among equals the oldest.
pub fn lookup<'a>(
    policies: &'a [PolicyModel],
    ns: &str,
    service: &str,
    port_name: Option<&str>,
) -> Option<(usize, &'a PolicyModel)> {
    let targets = |p: &PolicyModel, with_section: bool| {
        p.key.namespace == ns
            && p.targets.iter().any(|(name, section)| {
                name == service
                    && match section {
                        Some(s) => with_section && Some(s.as_str()) == port_name,
                        None => !with_section,
                    }
            })
    };
    policies
        .iter()
        .enumerate()
        .find(|(_, p)| targets(p, true))
        .or_else(|| policies.iter().enumerate().find(|(_, p)| targets(p, false)))
}
