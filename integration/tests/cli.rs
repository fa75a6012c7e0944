//! The one-shot commands of the CLI contract: `validate` exit codes, `status` and `translate`.

use portico_integration::harness::{ConfigDir, portico_cli};

const CLASS_AND_GATEWAY: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: portico
spec:
  controllerName: portico.dev/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: edge
  namespace: cli
spec:
  gatewayClassName: portico
  listeners:
    - name: http
      protocol: HTTP
      port: 8080
"#;

const INVALID_ROUTE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: bad
  namespace: cli
spec:
  parentRefs: [{name: edge}]
  rules:
    - backendRefs:
        - name: svc
          port: not-a-port
"#;

fn dir_with(files: &[(&str, &str)]) -> ConfigDir {
    let dir = ConfigDir::new().unwrap();
    for (name, text) in files {
        dir.write(name, text).unwrap();
    }
    dir
}

#[tokio::test]
async fn validate_exit_codes() {
    let clean = dir_with(&[("gw.yaml", CLASS_AND_GATEWAY)]);
    let out = portico_cli(&["validate", &clean.path().to_string_lossy()])
        .await
        .unwrap();
    assert_eq!(out.code, Some(0), "clean dir: {out:?}");

    // An object with an invalid field is invalid configuration: exit 1, naming the file.
    let invalid = dir_with(&[("gw.yaml", CLASS_AND_GATEWAY), ("bad.yaml", INVALID_ROUTE)]);
    let out = portico_cli(&["validate", &invalid.path().to_string_lossy()])
        .await
        .unwrap();
    assert_eq!(out.code, Some(1), "invalid object: {out:?}");
    assert!(out.stdout.contains("bad.yaml"), "{out:?}");

    // A file that does not parse as YAML fails too (1 or 2: the contract leaves it open).
    let broken = dir_with(&[
        ("gw.yaml", CLASS_AND_GATEWAY),
        ("bad.yaml", "kind: Gateway\nmetadata: [\n"),
    ]);
    let out = portico_cli(&["validate", &broken.path().to_string_lossy()])
        .await
        .unwrap();
    assert!(matches!(out.code, Some(1 | 2)), "broken dir: {out:?}");

    let out = portico_cli(&["validate", "/nonexistent/portico-config"])
        .await
        .unwrap();
    assert_eq!(out.code, Some(2), "missing dir: {out:?}");
}

#[tokio::test]
async fn status_lists_gateways_with_conditions() {
    let dir = dir_with(&[("gw.yaml", CLASS_AND_GATEWAY)]);
    let out = portico_cli(&["status", &dir.path().to_string_lossy(), "-o", "json"])
        .await
        .unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    let gateway = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "Gateway" && i["metadata"]["name"] == "edge")
        .unwrap_or_else(|| panic!("no Gateway in {}", out.stdout));
    let accepted = gateway["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Accepted" && c["status"] == "True");
    assert!(accepted, "{gateway}");
}

#[tokio::test]
async fn translate_prints_the_fleet_listener() {
    let dir = dir_with(&[("gw.yaml", CLASS_AND_GATEWAY)]);
    let out = portico_cli(&[
        "translate",
        &dir.path().to_string_lossy(),
        "--gateway",
        "cli/edge",
        "-o",
        "json",
    ])
    .await
    .unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("8080"),
        "no listener on 8080 in {}",
        out.stdout
    );
}
