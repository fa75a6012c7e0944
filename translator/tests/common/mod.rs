//! Shared by the tests that read the portable conformance cases in ../shared/conformance.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use portico_translator::{CONTROLLER_NAME, Resources};
use serde_json::Value;

pub fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")
}

/// A throwaway self-signed test certificate (CN example.com) and its key.
const CERT: &str = "-----BEGIN CERTIFICATE-----\\nMIIBqzCCAVCgAwIBAgIUNgUXpkuoLV6HocArVLBSpk7lPeowCgYIKoZIzj0EAwIw\\nFjEUMBIGA1UEAwwLZXhhbXBsZS5jb20wIBcNMjYxMTI2MDgyODEyWhgPMjEyNjEx\\nMDIwODI4MTJaMBYxFDASBgNVBAMMC2V4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYI\\nKoZIzj0DAQcDQgAEdGeJDSE4kAVwQOOXQjPuVLUzmxbX5ELgOZgCyOxq/Oc3EKbY\\nFb8qH84Sh6V+v0o6385SI8xyzvOR4VP8ggKSxaN6MHgwHQYDVR0OBBYEFLmOyTbC\\n9fNllHXrlq28+VxeR7o1MB8GA1UdIwQYMBaAFLmOyTbC9fNllHXrlq28+VxeR7o1\\nMA8GA1UdEwEB/wQFMAMBAf8wJQYDVR0RBB4wHIINKi5leGFtcGxlLmNvbYILZXhh\\nbXBsZS5jb20wCgYIKoZIzj0EAwIDSQAwRgIhAJsqwLibUEe+oQKh/zNoiSSYG63N\\n5Si5gWCFmzx7nJqCAiEA7nZWE8C1ypyjNqaV5GcjXGRO267LpSjeFXUCibK9F+8=\\n-----END CERTIFICATE-----\\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDVNTm9xCi1HmbWju\\niD9DiCxSHNukx6ULVlQyFPdQKRShRANCAAR0Z4kNITiQBXBA45dCM+5UtTObFtfk\\nQuA5mALI7Gr85zcQptgVvyofzhKHpX6/SjrfzlIjzHLO85HhU/yCApLF\\n-----END PRIVATE KEY-----\\n";

/// What upstream creates at suite setup (CONVENTIONS.md). Every certificate is the same
/// throwaway self-signed test certificate: real PEM, so that Envoy can load it.
pub fn setup_objects() -> String {
    let mut out = String::from(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: portico, generation: 1}\nspec: {controllerName: portico.dev/gateway-controller}\n",
    );
    let secrets = [
        ("gateway-conformance-infra", "tls-checks-certificate"),
        ("gateway-conformance-infra", "tls-checks-client-certificate"),
        (
            "gateway-conformance-infra",
            "tls-passthrough-checks-certificate",
        ),
        (
            "gateway-conformance-app-backend",
            "tls-passthrough-checks-certificate",
        ),
        (
            "gateway-conformance-infra",
            "tls-terminate-checks-certificate",
        ),
        (
            "gateway-conformance-infra",
            "tls-validity-checks-certificate",
        ),
        (
            "gateway-conformance-infra",
            "tls-validity-checks-client-certificate",
        ),
        (
            "gateway-conformance-infra",
            "tls-validity-checks-per-port-client-certificate",
        ),
        ("gateway-conformance-web-backend", "certificate"),
    ];
    for (ns, name) in secrets {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\ntype: kubernetes.io/tls\nstringData: {{tls.crt: \"{CERT}\", tls.key: \"{KEY}\"}}\n"
        ));
    }
    let maps = [
        ("gateway-conformance-infra", "tls-checks-ca-certificate"),
        ("gateway-conformance-infra", "mismatch-ca-certificate"),
        (
            "gateway-conformance-infra",
            "tls-validity-checks-ca-certificate",
        ),
        (
            "gateway-conformance-infra",
            "tls-validity-checks-per-port-ca-certificate",
        ),
        ("gateway-conformance-web-backend", "web-backend-cm"),
    ];
    for (ns, name) in maps {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}}}\ndata: {{ca.crt: \"{CERT}\"}}\n"
        ));
    }
    out
}

pub fn load(case: &Value) -> Resources {
    let dir = shared();
    let mut texts = vec![("setup".to_string(), setup_objects())];
    texts.push((
        "base/manifests.yaml".into(),
        std::fs::read_to_string(dir.join("base/manifests.yaml")).unwrap(),
    ));
    if let Some(m) = case.get("manifests").and_then(Value::as_str) {
        texts.push((
            m.to_string(),
            std::fs::read_to_string(dir.join("cases").join(m)).unwrap(),
        ));
    }
    let mut resources = Resources::default();
    for (file, text) in texts {
        let text = text
            .replace("{GATEWAY_CLASS_NAME}", "portico")
            .replace("{GATEWAY_CONTROLLER_NAME}", CONTROLLER_NAME);
        let (docs, _) = portico_translator::parse_file(&file, &text);
        for doc in docs {
            resources.insert(&file, doc);
        }
    }
    resources
}
