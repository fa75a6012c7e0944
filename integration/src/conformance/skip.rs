//! Which cases the runner cannot run yet, and which failures are expected for now.

use std::collections::BTreeMap;
use std::path::Path;

use super::case::Case;

/// Features whose checks need runner machinery not built yet, with the reason printed in the
/// table. (What Portico itself lacks shows as failures, listed in the expected-failures file.)
const SKIPPED_FEATURES: &[(&str, &str)] = &[
    (
        "GatewayBackendClientCertificate",
        "the runner does not check backend client certificates yet",
    ),
    (
        "GatewayFrontendClientCertificateValidation",
        "the runner has no client certificates yet",
    ),
    (
        "GatewayStaticAddresses",
        "needs run-time address input the runner does not supply",
    ),
];

/// Single tests whose traffic the runner cannot produce.
const SKIPPED_TESTS: &[(&str, &str)] = &[(
    "UDPRoute",
    "sends a DNS query to the base coredns Deployment; the runner has no DNS server",
)];

/// Why a case is skipped, or `None` to run it.
pub fn skip_reason(case: &Case) -> Option<String> {
    for (feature, reason) in SKIPPED_FEATURES {
        if case.features.iter().any(|f| f == feature) {
            return Some(format!("{feature}: {reason}"));
        }
    }
    SKIPPED_TESTS
        .iter()
        .find(|(name, _)| *name == case.name)
        .map(|(_, reason)| reason.to_string())
}

/// `integration/conformance-expected-failures.txt`: `<TestName> <reason...>` per line, `#`
/// comments. Missing file = no expected failures.
pub fn expected_failures(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(err) => return Err(err.into()),
    };
    Ok(parse_expected_failures(&text))
}

pub fn parse_expected_failures(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(char::is_whitespace) {
            Some((name, reason)) => (name.to_string(), reason.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_by_feature_and_name() {
        let tls: Case =
            serde_yaml::from_str("{name: A, features: [Gateway, GatewayStaticAddresses]}").unwrap();
        assert!(
            skip_reason(&tls)
                .unwrap()
                .contains("GatewayStaticAddresses")
        );
        let dns: Case = serde_yaml::from_str("{name: UDPRoute, features: [Gateway]}").unwrap();
        assert!(skip_reason(&dns).unwrap().contains("DNS"));
        let http: Case = serde_yaml::from_str(
            "{name: C, features: [Gateway], cases: [{request: {protocol: HTTP}}]}",
        )
        .unwrap();
        assert_eq!(skip_reason(&http), None);
    }

    #[test]
    fn parses_expected_failures() {
        let list = parse_expected_failures(
            "# comment\n\nHTTPRouteCORS  CORS filter not translated\nBare\n",
        );
        assert_eq!(
            list.get("HTTPRouteCORS").map(String::as_str),
            Some("CORS filter not translated")
        );
        assert_eq!(list.get("Bare").map(String::as_str), Some(""));
        assert_eq!(list.len(), 2);
    }
}
