//! The TLS Secrets and CA ConfigMaps upstream's suite creates at setup (CONVENTIONS.md,
//! "Objects upstream creates at suite setup"), generated with the `openssl` CLI once per run.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::codec::base64;

const INFRA: &str = "gateway-conformance-infra";
const APP: &str = "gateway-conformance-app-backend";
const WEB: &str = "gateway-conformance-web-backend";

/// What the runner creates at setup.
#[derive(Clone, Debug, Default)]
pub struct SetupObjects {
    /// TLS Secrets by (namespace, name).
    pub secrets: BTreeMap<(String, String), Pair>,
    /// CA ConfigMaps (`ca.crt`) by (namespace, name).
    pub ca_config_maps: BTreeMap<(String, String), String>,
}

impl SetupObjects {
    /// Every Secret and ConfigMap as a Kubernetes object.
    pub fn objects(&self) -> Vec<Value> {
        let secrets = self
            .secrets
            .iter()
            .map(|((ns, name), pair)| tls_secret(ns, name, pair));
        let maps = self
            .ca_config_maps
            .iter()
            .map(|((ns, name), crt)| ca_config_map(ns, name, crt));
        secrets.chain(maps).collect()
    }

    /// The certificate and key of a setup-time Secret.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Pair> {
        self.secrets.get(&(namespace.to_string(), name.to_string()))
    }

    /// The `ca.crt` of a setup-time ConfigMap.
    pub fn ca_config_map(&self, namespace: &str, name: &str) -> Option<&String> {
        self.ca_config_maps
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// What conformance clients trust: the gateway certificate `tls-validity-checks-certificate`
    /// and the CA `tls-checks-ca-certificate`, as PEM.
    pub fn client_trust_pem(&self) -> String {
        let validity = self
            .secret(INFRA, "tls-validity-checks-certificate")
            .map(|p| p.0.clone());
        let ca = self
            .ca_config_maps
            .get(&(INFRA.to_string(), "tls-checks-ca-certificate".to_string()));
        validity
            .into_iter()
            .chain(ca.cloned())
            .collect::<Vec<_>>()
            .join("")
    }

    fn add_secret(&mut self, namespace: &str, name: &str, pair: &Pair) {
        self.secrets
            .insert((namespace.to_string(), name.to_string()), pair.clone());
    }

    fn add_ca(&mut self, namespace: &str, name: &str, crt: &str) {
        self.ca_config_maps
            .insert((namespace.to_string(), name.to_string()), crt.to_string());
    }
}

/// Generates every setup-time Secret and ConfigMap.
pub fn setup_objects(workdir: &Path) -> anyhow::Result<SetupObjects> {
    let mk = Gen { dir: workdir };
    let mut out = SetupObjects::default();
    let validity = mk.self_signed(
        "validity",
        "*",
        &["DNS:*", "DNS:*.org", "DNS:*.wildcard.org"],
    )?;
    out.add_secret(INFRA, "tls-validity-checks-certificate", &validity);

    let ca = mk.self_signed("checks-ca", "tls-checks-ca", &[])?;
    out.add_ca(INFRA, "tls-checks-ca-certificate", &ca.0);
    let sans = [
        "DNS:abc.example.com",
        "URI:spiffe://abc.example.com/test-identity",
        "DNS:other.example.com",
    ];
    let checks = mk.signed("checks", "abc.example.com", &sans, "checks-ca")?;
    out.add_secret(INFRA, "tls-checks-certificate", &checks);
    let client = mk.signed("checks-client", "tls-checks-client", &[], "checks-ca")?;
    out.add_secret(INFRA, "tls-checks-client-certificate", &client);
    let passthrough = mk.signed(
        "passthrough",
        "abc.example.com",
        &["DNS:abc.example.com"],
        "checks-ca",
    )?;
    out.add_secret(INFRA, "tls-passthrough-checks-certificate", &passthrough);
    out.add_secret(APP, "tls-passthrough-checks-certificate", &passthrough);
    let terminate = mk.signed(
        "terminate",
        "tls.example.com",
        &["DNS:tls.example.com"],
        "checks-ca",
    )?;
    out.add_secret(INFRA, "tls-terminate-checks-certificate", &terminate);

    let mismatch = mk.self_signed("mismatch-ca", "mismatch-ca", &[])?;
    out.add_ca(INFRA, "mismatch-ca-certificate", &mismatch.0);

    for (prefix, ca_name, client_name) in [
        (
            "validity-ca",
            "tls-validity-checks-ca-certificate",
            "tls-validity-checks-client-certificate",
        ),
        (
            "per-port-ca",
            "tls-validity-checks-per-port-ca-certificate",
            "tls-validity-checks-per-port-client-certificate",
        ),
    ] {
        let ca = mk.self_signed(prefix, prefix, &[])?;
        out.add_ca(INFRA, ca_name, &ca.0);
        let client = mk.signed(&format!("{prefix}-client"), "client", &[], prefix)?;
        out.add_secret(INFRA, client_name, &client);
    }

    let web = mk.self_signed("web", "*", &["DNS:*"])?;
    out.add_secret(WEB, "certificate", &web);
    let web_ca = mk.self_signed("web-ca", "web-backend-ca", &[])?;
    out.add_ca(WEB, "web-backend-cm", &web_ca.0);
    Ok(out)
}

/// PEM certificate and PEM (PKCS#8) key.
pub type Pair = (String, String);

/// A self-signed certificate for `cn` with subjectAltNames like `DNS:example.org`, made with
/// `openssl` in `dir`.
pub fn self_signed(dir: &Path, cn: &str, sans: &[&str]) -> anyhow::Result<Pair> {
    Gen { dir }.self_signed("self-signed", cn, sans)
}

struct Gen<'a> {
    dir: &'a Path,
}

impl Gen<'_> {
    fn self_signed(&self, name: &str, cn: &str, sans: &[&str]) -> anyhow::Result<Pair> {
        self.req(name, cn, sans, None)
    }

    fn signed(&self, name: &str, cn: &str, sans: &[&str], ca: &str) -> anyhow::Result<Pair> {
        self.req(name, cn, sans, Some(ca))
    }

    fn req(&self, name: &str, cn: &str, sans: &[&str], ca: Option<&str>) -> anyhow::Result<Pair> {
        let crt = self.dir.join(format!("{name}.crt"));
        let key = self.dir.join(format!("{name}.key"));
        let mut cmd = Command::new("openssl");
        cmd.args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args(["-days", "365", "-subj", &format!("/CN={cn}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt);
        if !sans.is_empty() {
            cmd.args(["-addext", &format!("subjectAltName={}", sans.join(","))]);
        }
        match ca {
            Some(ca) => {
                cmd.arg("-CA").arg(self.dir.join(format!("{ca}.crt")));
                cmd.arg("-CAkey").arg(self.dir.join(format!("{ca}.key")));
                cmd.args(["-addext", "basicConstraints=critical,CA:FALSE"]);
            }
            None if sans.is_empty() => {
                cmd.args(["-addext", "basicConstraints=critical,CA:TRUE"]);
            }
            None => {}
        }
        let output = cmd
            .output()
            .context("running openssl (needed for the conformance TLS objects)")?;
        if !output.status.success() {
            bail!(
                "openssl req for {name} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok((
            std::fs::read_to_string(&crt)?,
            std::fs::read_to_string(&key)?,
        ))
    }
}

fn tls_secret(namespace: &str, name: &str, (crt, key): &Pair) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        // `data` (base64) as the API server stores it; stringData exists only on writes.
        "data": {"tls.crt": base64(crt.as_bytes()), "tls.key": base64(key.as_bytes())},
    })
}

fn ca_config_map(namespace: &str, name: &str, crt: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"ca.crt": crt},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_every_setup_object() {
        let dir = tempfile::tempdir().unwrap();
        let setup = setup_objects(dir.path()).unwrap();
        assert_eq!(
            setup
                .client_trust_pem()
                .matches("BEGIN CERTIFICATE")
                .count(),
            2
        );
        let objects = setup.objects();
        let names: Vec<&str> = objects
            .iter()
            .filter_map(|o| o["metadata"]["name"].as_str())
            .collect();
        assert!(
            names.contains(&"tls-validity-checks-certificate"),
            "{names:?}"
        );
        assert!(names.contains(&"web-backend-cm"), "{names:?}");
    }
}
