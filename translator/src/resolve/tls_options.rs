//! Listener `tls.options`: implementation-specific keys. Portico understands a few, all under
//! its own prefix; anything else would silently not do what the user asked, so it makes the
//! listener not Accepted (UnsupportedValue) instead of being ignored.

use std::collections::BTreeMap;

use crate::ir::{TlsParams, TlsVersion};

pub const MIN_VERSION: &str = "portico.dev/tls-min-version";
pub const MAX_VERSION: &str = "portico.dev/tls-max-version";
pub const CIPHER_SUITES: &str = "portico.dev/tls-cipher-suites";

fn version(key: &str, value: &str) -> Result<TlsVersion, String> {
    match value.trim() {
        "1.0" => Ok(TlsVersion::V1_0),
        "1.1" => Ok(TlsVersion::V1_1),
        "1.2" => Ok(TlsVersion::V1_2),
        "1.3" => Ok(TlsVersion::V1_3),
        other => Err(format!(
            "tls.options {key}: {other:?} is not one of 1.0, 1.1, 1.2, 1.3"
        )),
    }
}

/// A cipher suite name as BoringSSL spells it (letters, digits, `-`, `_`, `[`, `]`, `|`), so a
/// typo surfaces here and not as a NACK of the whole listener update.
fn cipher(key: &str, value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_[]|".contains(c));
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!(
            "tls.options {key}: {value:?} is not a cipher suite name"
        ))
    }
}

/// Parses the options; an error is the UnsupportedValue message.
pub fn parse(options: &BTreeMap<String, String>) -> Result<TlsParams, String> {
    let mut params = TlsParams::default();
    for (key, value) in options {
        match key.as_str() {
            MIN_VERSION => params.min_version = Some(version(key, value)?),
            MAX_VERSION => params.max_version = Some(version(key, value)?),
            CIPHER_SUITES => {
                params.cipher_suites = value
                    .split(',')
                    .map(|c| cipher(key, c.trim()))
                    .collect::<Result<_, _>>()?;
            }
            other => {
                return Err(format!(
                    "tls.options key {other:?} is not supported (known: {MIN_VERSION}, \
                     {MAX_VERSION}, {CIPHER_SUITES})"
                ));
            }
        }
    }
    if let (Some(min), Some(max)) = (params.min_version, params.max_version)
        && min > max
    {
        return Err(format!("tls.options {MIN_VERSION} is above {MAX_VERSION}"));
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn known_keys_parse() {
        let p = parse(&opts(&[
            (MIN_VERSION, "1.2"),
            (MAX_VERSION, "1.3"),
            (
                CIPHER_SUITES,
                "ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256",
            ),
        ]))
        .unwrap();
        assert_eq!(
            p,
            TlsParams {
                min_version: Some(TlsVersion::V1_2),
                max_version: Some(TlsVersion::V1_3),
                cipher_suites: vec![
                    "ECDHE-ECDSA-AES128-GCM-SHA256".into(),
                    "ECDHE-RSA-AES128-GCM-SHA256".into()
                ],
            }
        );
    }

    #[test]
    fn bad_values_and_unknown_keys_are_errors() {
        assert!(parse(&opts(&[(MIN_VERSION, "TLS1.2")])).is_err());
        assert!(parse(&opts(&[(MIN_VERSION, "1.3"), (MAX_VERSION, "1.2")])).is_err());
        assert!(parse(&opts(&[(CIPHER_SUITES, "AES128 GCM")])).is_err());
        assert!(parse(&opts(&[("example.com/other", "x")])).is_err());
        assert_eq!(parse(&BTreeMap::new()), Ok(TlsParams::default()));
    }
}
