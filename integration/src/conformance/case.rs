//! The portable conformance case format (`shared/conformance/SCHEMA.md` and CONVENTIONS.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// One `cases/<Name>.yaml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Case {
    pub name: String,
    pub description: String,
    pub features: Vec<String>,
    /// File name beside the case, or an empty list (`[]`) when only base manifests are used.
    pub manifests: ManifestsRef,
    pub gateways: Vec<String>,
    pub status: Vec<StatusExpectation>,
    pub cases: Vec<TrafficCase>,
    pub notes: String,
    /// Where the case was read from (not in the file).
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum ManifestsRef {
    File(String),
    List(Vec<String>),
}

impl Default for ManifestsRef {
    fn default() -> Self {
        Self::List(Vec::new())
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StatusExpectation {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    /// `ns/name` or `ns/name/section` of a route's parent (or a policy's ancestor).
    pub parent_ref: Option<String>,
    /// Kind of the parent named by `parentRef` (default Gateway).
    pub parent_kind: Option<String>,
    pub conditions: Vec<ConditionExpectation>,
    pub listeners: Option<Vec<ListenerExpectation>>,
    pub attached_listener_sets: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConditionExpectation {
    #[serde(rename = "type")]
    pub type_: String,
    /// Absent = any status.
    pub status: Option<String>,
    /// Absent = any reason.
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ListenerExpectation {
    pub name: String,
    pub attached_routes: Option<i64>,
    pub conditions: Vec<ConditionExpectation>,
    pub supported_kinds: Option<Vec<GroupKind>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct GroupKind {
    pub group: String,
    pub kind: String,
}

/// One request (or connection) and what must come of it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TrafficCase {
    pub gateway: Option<String>,
    pub request: RequestSpec,
    pub expected_request: Option<ExpectedRequest>,
    pub response: Option<ResponseSpec>,
    /// Deployment-name prefix of the pod that must answer; `""` = none may.
    pub backend: Option<String>,
    pub namespace: Option<String>,
    pub redirect: Option<RedirectSpec>,
    pub mirrored_to: Vec<MirrorSpec>,
    pub weights: Option<BTreeMap<String, u32>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RequestSpec {
    pub protocol: String,
    pub method: String,
    pub host: Option<String>,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub port: Option<u16>,
    pub sni: Option<String>,
    pub client_cert_secret: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExpectedRequest {
    pub method: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub absent_headers: Vec<String>,
    pub sni: Option<String>,
    pub tls: Option<bool>,
    pub client_cert_secret: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ResponseSpec {
    pub status_codes: Vec<u16>,
    pub headers: BTreeMap<String, String>,
    pub absent_headers: Vec<String>,
    pub grpc_codes: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RedirectSpec {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct MirrorSpec {
    pub backend: String,
    pub namespace: String,
}

impl Case {
    /// The test's own manifests file, if any.
    pub fn manifests_path(&self) -> Option<PathBuf> {
        match &self.manifests {
            ManifestsRef::File(name) if !name.is_empty() => {
                Some(self.path.parent().unwrap_or(Path::new(".")).join(name))
            }
            _ => None,
        }
    }

    /// Every Gateway the case sends traffic through, in order, without duplicates.
    pub fn traffic_gateways(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let named = self.cases.iter().filter_map(|c| c.gateway.clone());
        for gateway in self.gateways.iter().cloned().chain(named) {
            if !out.contains(&gateway) {
                out.push(gateway);
            }
        }
        out
    }
}

/// Reads every `cases/*.yaml` (not `*.manifests.yaml`) under `dir`, sorted by name.
pub fn load_cases(dir: &Path) -> anyhow::Result<Vec<Case>> {
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !name.ends_with(".yaml") || name.ends_with(".manifests.yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let mut case: Case =
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        case.path = path;
        cases.push(case);
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_case() {
        let case: Case = serde_yaml::from_str(
            r#"
name: T
features: [Gateway]
manifests: []
gateways: [ns/gw]
status:
  - kind: HTTPRoute
    namespace: ns
    name: r
    parentRef: ns/gw
    conditions: [{type: Accepted, status: "True", reason: Accepted}]
cases:
  - request: {protocol: HTTP, method: GET, path: /}
    response: {statusCodes: [200]}
    backend: b
    weights: {b: 100}
"#,
        )
        .unwrap();
        assert!(case.manifests_path().is_none());
        assert_eq!(
            case.status[0].conditions[0].reason.as_deref(),
            Some("Accepted")
        );
        assert_eq!(
            case.cases[0].response.as_ref().unwrap().status_codes,
            vec![200]
        );
        assert_eq!(case.traffic_gateways(), vec!["ns/gw".to_string()]);
    }
}
