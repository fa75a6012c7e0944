//! Gateway listeners (and ListenerSet entries): validation, certificates, conflicts.

use std::collections::BTreeMap;

use crate::ir::{PortProtocol, TlsSecret};
use crate::resolve::context::{Ctx, GATEWAY_GROUP};
use crate::resolve::model::{ListenerSpec, RouteGroupKind};
use crate::status::Condition;

/// Who declared a listener: the Gateway itself or one of its ListenerSets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// "Gateway" or "ListenerSet".
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct ListenerModel {
    pub owner: Owner,
    pub spec: ListenerSpec,
    pub port: u16,
    pub protocol: Option<PortProtocol>,
    pub supported_kinds: Vec<RouteGroupKind>,
    /// Accepted=False reason and message.
    pub not_accepted: Option<(String, String)>,
    /// Conflicted=True reason and message.
    pub conflicted: Option<(String, String)>,
    /// ResolvedRefs=False reason and message.
    pub unresolved: Option<(String, String)>,
    /// TLS passthrough (TLS listeners only).
    pub passthrough: bool,
    /// Certificates served (IR secret names).
    pub certificates: Vec<String>,
    /// tls.options, parsed.
    pub tls_params: crate::ir::TlsParams,
    pub attached_routes: i32,
}

impl ListenerModel {
    /// Routes may attach: the listener is accepted and not conflicted.
    pub fn attachable(&self) -> bool {
        self.not_accepted.is_none() && self.conflicted.is_none()
    }

    /// Goes into Envoy config.
    pub fn programmable(&self) -> bool {
        // Invalid route kinds leave the valid kinds working; broken certificates do not.
        self.attachable()
            && self
                .unresolved
                .as_ref()
                .is_none_or(|(reason, _)| reason == "InvalidRouteKinds")
    }

    pub fn conditions(&self) -> Vec<Condition> {
        let mut out = Vec::new();
        match &self.not_accepted {
            Some((reason, msg)) => out.push(Condition::new("Accepted", false, reason, msg.clone())),
            None => out.push(Condition::new(
                "Accepted",
                true,
                "Accepted",
                "Listener is accepted",
            )),
        }
        match &self.conflicted {
            Some((reason, msg)) => {
                out.push(Condition::new("Conflicted", true, reason, msg.clone()))
            }
            None => out.push(Condition::new(
                "Conflicted",
                false,
                "NoConflicts",
                "No conflicts",
            )),
        }
        match &self.unresolved {
            Some((reason, msg)) => {
                out.push(Condition::new("ResolvedRefs", false, reason, msg.clone()))
            }
            None => out.push(Condition::new(
                "ResolvedRefs",
                true,
                "ResolvedRefs",
                "All references resolved",
            )),
        }
        if self.programmable() {
            out.push(Condition::new(
                "Programmed",
                true,
                "Programmed",
                "Listener is programmed",
            ));
        } else {
            out.push(Condition::new(
                "Programmed",
                false,
                "Invalid",
                "Listener is not valid",
            ));
        }
        out
    }

    pub fn status_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.spec.name,
            "attachedRoutes": self.attached_routes,
            "supportedKinds": self.supported_kinds.iter().map(|k| serde_json::json!({
                "group": k.group.clone().unwrap_or_else(|| GATEWAY_GROUP.into()),
                "kind": k.kind,
            })).collect::<Vec<_>>(),
        })
    }
}

fn kinds_for(protocol: PortProtocol) -> &'static [&'static str] {
    match protocol {
        PortProtocol::Http | PortProtocol::Https => &["HTTPRoute", "GRPCRoute"],
        PortProtocol::Tls => &["TLSRoute"],
        PortProtocol::Tcp => &["TCPRoute"],
        PortProtocol::Udp => &["UDPRoute"],
    }
}

fn protocol_of(name: &str) -> Option<PortProtocol> {
    match name {
        "HTTP" => Some(PortProtocol::Http),
        "HTTPS" => Some(PortProtocol::Https),
        "TLS" => Some(PortProtocol::Tls),
        "TCP" => Some(PortProtocol::Tcp),
        "UDP" => Some(PortProtocol::Udp),
        _ => None,
    }
}

/// Validates one listener and resolves its certificates into `secrets`.
pub fn build(
    ctx: &mut Ctx,
    owner: Owner,
    spec: ListenerSpec,
    secrets: &mut BTreeMap<String, TlsSecret>,
) -> ListenerModel {
    let mut l = ListenerModel {
        owner,
        port: u16::try_from(spec.port).unwrap_or(0),
        protocol: protocol_of(&spec.protocol),
        spec,
        supported_kinds: Vec::new(),
        not_accepted: None,
        conflicted: None,
        unresolved: None,
        passthrough: false,
        certificates: Vec::new(),
        tls_params: Default::default(),
        attached_routes: 0,
    };
    let Some(protocol) = l.protocol else {
        l.not_accepted = Some((
            "UnsupportedProtocol".into(),
            format!("protocol {:?} is not supported", l.spec.protocol),
        ));
        return l;
    };
    if let Some(h) = &l.spec.hostname
        && let Err(e) = crate::resolve::validate::hostname(h)
    {
        l.not_accepted = Some(("UnsupportedValue".into(), e));
        return l;
    }
    if l.port == 0 {
        l.not_accepted = Some((
            "PortUnavailable".into(),
            format!("port {} is out of range", l.spec.port),
        ));
    }
    let allowed = kinds_for(protocol);
    match l.spec.allowed_routes.as_ref().and_then(|a| a.kinds.clone()) {
        Some(kinds) if !kinds.is_empty() => {
            for k in kinds {
                let group_ok = k.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP;
                if group_ok && allowed.contains(&k.kind.as_str()) {
                    let k = RouteGroupKind {
                        group: Some(GATEWAY_GROUP.into()),
                        kind: k.kind,
                    };
                    if !l.supported_kinds.contains(&k) {
                        l.supported_kinds.push(k);
                    }
                } else {
                    l.unresolved = Some((
                        "InvalidRouteKinds".into(),
                        format!(
                            "route kind {}/{} is not supported on a {} listener",
                            k.group.unwrap_or_default(),
                            k.kind,
                            l.spec.protocol
                        ),
                    ));
                }
            }
        }
        _ => {
            l.supported_kinds = allowed
                .iter()
                .map(|k| RouteGroupKind {
                    group: Some(GATEWAY_GROUP.into()),
                    kind: k.to_string(),
                })
                .collect()
        }
    }
    let mode = l
        .spec
        .tls
        .as_ref()
        .and_then(|t| t.mode.clone())
        .unwrap_or_else(|| "Terminate".into());
    match protocol {
        PortProtocol::Https | PortProtocol::Tls => {
            if mode == "Passthrough" {
                if protocol == PortProtocol::Https {
                    l.not_accepted = Some((
                        "UnsupportedValue".into(),
                        "HTTPS listeners terminate TLS (mode Passthrough is for TLS listeners)"
                            .into(),
                    ));
                }
                l.passthrough = true;
            } else {
                resolve_certificates(ctx, &mut l, secrets);
                let options = l.spec.tls.as_ref().map(|t| &t.options);
                match options.map(crate::resolve::tls_options::parse) {
                    Some(Err(e)) => l.not_accepted = Some(("UnsupportedValue".into(), e)),
                    Some(Ok(params)) => l.tls_params = params,
                    None => {}
                }
            }
        }
        _ => {}
    }
    l
}

fn resolve_certificates(
    ctx: &mut Ctx,
    l: &mut ListenerModel,
    secrets: &mut BTreeMap<String, TlsSecret>,
) {
    let refs = l
        .spec
        .tls
        .as_ref()
        .map(|t| t.certificate_refs.clone())
        .unwrap_or_default();
    if refs.is_empty() {
        l.unresolved = Some((
            "InvalidCertificateRef".into(),
            "a TLS listener that terminates TLS needs tls.certificateRefs".into(),
        ));
        return;
    }
    for r in refs {
        match resolve_secret(ctx, (l.owner.kind, &l.owner.namespace), &r) {
            Ok((name, secret)) => {
                secrets.insert(name.clone(), secret);
                if !l.certificates.contains(&name) {
                    l.certificates.push(name);
                }
            }
            Err(e) => l.unresolved = Some(e),
        }
    }
}

/// Resolves a reference to a TLS Secret (certificate and key) made by an object of kind
/// `from.0` in namespace `from.1`: the IR secret name and its PEM, or (reason, message).
pub fn resolve_secret(
    ctx: &Ctx,
    from: (&str, &str),
    r: &crate::resolve::model::ObjectRef,
) -> Result<(String, TlsSecret), (String, String)> {
    let (from_kind, from_ns) = from;
    let group = r.group.clone().unwrap_or_default();
    let kind = r.kind.clone().unwrap_or_else(|| "Secret".into());
    let ns = r.namespace.clone().unwrap_or_else(|| from_ns.to_string());
    if !group.is_empty() || kind != "Secret" {
        return Err((
            "InvalidCertificateRef".into(),
            format!("reference {group}/{kind} is not a core Secret"),
        ));
    }
    if !ctx.ref_allowed(
        (GATEWAY_GROUP, from_kind, from_ns),
        ("", "Secret", &ns, &r.name),
    ) {
        return Err((
            "RefNotPermitted".into(),
            format!(
                "no ReferenceGrant in namespace {ns} allows this {from_kind} to use Secret {}",
                r.name
            ),
        ));
    }
    match ctx
        .secrets
        .get(&(ns.clone(), r.name.clone()))
        .map(|s| tls_pair(s))
    {
        None => Err((
            "InvalidCertificateRef".into(),
            format!("Secret {ns}/{} does not exist", r.name),
        )),
        Some(None) => Err((
            "InvalidCertificateRef".into(),
            format!(
                "Secret {ns}/{} has no PEM certificate and key in tls.crt / tls.key",
                r.name
            ),
        )),
        Some(Some((cert_pem, key_pem))) => {
            let name = format!("{ns}/{}", r.name);
            Ok((
                name.clone(),
                TlsSecret {
                    name,
                    cert_pem,
                    key_pem,
                },
            ))
        }
    }
}

/// A Secret's `tls.crt` and `tls.key`, when both look like PEM.
pub fn tls_pair(secret: &k8s_openapi::api::core::v1::Secret) -> Option<(String, String)> {
    let get = |key: &str| -> Option<String> {
        if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
            return Some(v.clone());
        }
        let bytes = secret.data.as_ref()?.get(key)?;
        String::from_utf8(bytes.0.clone()).ok()
    };
    let cert = get("tls.crt")?;
    let key = get("tls.key")?;
    let is_pem = |s: &str, label: &str| {
        s.contains("-----BEGIN") && s.contains(label) && s.contains("-----END")
    };
    (is_pem(&cert, "CERTIFICATE") && is_pem(&key, "PRIVATE KEY")).then_some((cert, key))
}

/// Marks listeners that cannot share a port with an earlier one. Earlier listeners win
/// (the Gateway's own, then ListenerSets by creation time and name).
pub fn mark_conflicts(listeners: &mut [ListenerModel]) {
    for i in 0..listeners.len() {
        if listeners[i].not_accepted.is_some() {
            continue;
        }
        let Some(p) = listeners[i].protocol else {
            continue;
        };
        for j in 0..i {
            let other = &listeners[j];
            if other.not_accepted.is_some()
                || other.conflicted.is_some()
                || other.port != listeners[i].port
            {
                continue;
            }
            let Some(q) = other.protocol else { continue };
            // UDP has its own port space; TLS and HTTPS share one through SNI.
            if (p == PortProtocol::Udp) != (q == PortProtocol::Udp) {
                continue;
            }
            let tls_family = |x: PortProtocol| matches!(x, PortProtocol::Https | PortProtocol::Tls);
            let compatible = p == q || (tls_family(p) && tls_family(q));
            if !compatible {
                listeners[i].conflicted = Some((
                    "ProtocolConflict".into(),
                    format!(
                        "port {} is already used by listener {} with protocol {}",
                        other.port, other.spec.name, other.spec.protocol
                    ),
                ));
                break;
            }
            let hostnames_matter = !matches!(p, PortProtocol::Tcp | PortProtocol::Udp);
            if !hostnames_matter || other.spec.hostname == listeners[i].spec.hostname {
                listeners[i].conflicted = Some((
                    "HostnameConflict".into(),
                    format!(
                        "listener {} already serves this port and hostname",
                        other.spec.name
                    ),
                ));
                break;
            }
        }
        if let Some((reason, msg)) = listeners[i].conflicted.clone() {
            listeners[i].not_accepted = Some((reason, msg));
        }
    }
}
