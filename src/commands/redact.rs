//! Keeps private keys out of everything Portico prints.

use serde_json::Value;

/// Fields whose DataSource holds secret material (TLS private keys, key passwords, session
/// ticket keys, HMAC secrets, generic secrets).
const SECRET_FIELDS: &[&str] = &["private_key", "password", "keys", "secret", "privateKey"];

/// Replaces the inline content of every secret DataSource in an Envoy JSON document.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if SECRET_FIELDS.contains(&key.as_str()) {
                    redact_data_sources(child);
                } else {
                    redact(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

fn redact_data_sources(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if matches!(
                    key.as_str(),
                    "inline_bytes" | "inline_string" | "inlineBytes" | "inlineString"
                ) {
                    *child = Value::String("[redacted]".into());
                } else {
                    redact_data_sources(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_data_sources),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn private_keys_are_redacted_everywhere() {
        let mut v = json!({"secrets": [{"name": "s", "tls_certificate": {
            "certificate_chain": {"inline_bytes": "Y2VydA=="},
            "private_key": {"inline_bytes": "a2V5"}}}]});
        redact(&mut v);
        let cert = &v["secrets"][0]["tls_certificate"];
        assert_eq!(cert["private_key"]["inline_bytes"], "[redacted]");
        assert_eq!(cert["certificate_chain"]["inline_bytes"], "Y2VydA==");
    }
}
