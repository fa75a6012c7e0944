//! Which cases the runner cannot run yet, and which failures are expected for now.

use std::collections::BTreeMap;
use std::path::Path;

use super::case::Case;

/// Features whose checks need runner machinery not built yet, with the reason printed in the
/// table. (What Portico itself lacks shows as failures, listed in the expected-failures file.)
const SKIPPED_FEATURES: &[(&str, &str)] = &[];

/// Single tests whose traffic the runner cannot produce.
const SKIPPED_TESTS: &[(&str, &str)] = &[];

/// Upstream features Portico claims, as far as conditional tests ask about them.
const CLAIMED_FEATURES: &[&str] = &["TLSRoute", "TLSRouteModeTerminate"];

/// Tests upstream runs only when a feature is (`true`) or is not (`false`) claimed; their
/// notes say "Conditional upstream".
const CONDITIONAL_TESTS: &[(&str, &str, bool)] = &[
    (
        "TLSRouteListenerTerminateNotSupported",
        "TLSRouteModeTerminate",
        false,
    ),
    ("UDPRouteNotAllowedByListeners", "TLSRoute", true),
];

/// Why a case is skipped, or `None` to run it.
pub fn skip_reason(case: &Case) -> Option<String> {
    for (feature, reason) in SKIPPED_FEATURES {
        if case.features.iter().any(|f| f == feature) {
            return Some(format!("{feature}: {reason}"));
        }
    }
    for (name, feature, wanted) in CONDITIONAL_TESTS {
        let claimed = CLAIMED_FEATURES.contains(feature);
        if *name == case.name && claimed != *wanted {
            let claim = if claimed { "claims" } else { "does not claim" };
            return Some(format!("not applicable: Portico {claim} {feature}"));
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
    fn conditional_tests_follow_claimed_features() {
        let case: Case =
            serde_yaml::from_str("{name: TLSRouteListenerTerminateNotSupported}").unwrap();
        assert!(
            skip_reason(&case)
                .unwrap()
                .contains("claims TLSRouteModeTerminate")
        );
        let case: Case = serde_yaml::from_str("{name: UDPRouteNotAllowedByListeners}").unwrap();
        assert_eq!(skip_reason(&case), None);
    }

    #[test]
    fn skips_nothing_today() {
        let case: Case = serde_yaml::from_str("{name: C, features: [Gateway, HTTPRoute]}").unwrap();
        assert_eq!(skip_reason(&case), None);
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
