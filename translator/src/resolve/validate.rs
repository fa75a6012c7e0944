//! Checks on values that the Kubernetes API server would have rejected but a directory of
//! files does not: an invalid regex or header name reaching Envoy would make it reject the
//! whole update (a NACK) for every route of the fleet, so stage one drops the offending part.

use std::sync::LazyLock;

static HEADER_NAME: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$").expect("static regex"));
static HOSTNAME: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .expect("static regex")
});

/// Whether Envoy's RE2 would accept the pattern (Rust's regex syntax is a close superset check:
/// no backreferences or lookaround in either).
pub fn regex(pattern: &str) -> Result<(), String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map(|_| ())
        .map_err(|e| {
            format!(
                "invalid regular expression {pattern:?}: {}",
                e.to_string().lines().last().unwrap_or_default()
            )
        })
}

pub fn header_name(name: &str) -> Result<(), String> {
    if HEADER_NAME.is_match(name) {
        Ok(())
    } else {
        Err(format!("invalid header name {name:?}"))
    }
}

pub fn header_value(value: &str) -> Result<(), String> {
    if value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
        Err(format!("invalid header value {value:?}"))
    } else {
        Ok(())
    }
}

/// RFC 1123 hostname, optionally with a leading `*.` label; no IP addresses.
pub fn hostname(h: &str) -> Result<(), String> {
    if h.len() <= 253 && HOSTNAME.is_match(h) && h.parse::<std::net::IpAddr>().is_err() {
        Ok(())
    } else {
        Err(format!("invalid hostname {h:?}"))
    }
}

/// Every regex and header name of a match.
pub fn route_match(m: &crate::ir::RouteMatch) -> Result<(), String> {
    if let crate::ir::PathMatch::Regex(r) = &m.path {
        regex(r)?;
    }
    for h in &m.headers {
        header_name(&h.name)?;
        if h.regex {
            regex(&h.value)?;
        } else {
            header_value(&h.value)?;
        }
    }
    for q in m.query.iter().filter(|q| q.regex) {
        regex(&q.value)?;
    }
    Ok(())
}

/// Drops header modifications Envoy would reject; returns why.
pub fn header_mods(mods: &mut crate::ir::HeaderMods) -> Vec<String> {
    let mut errors = Vec::new();
    let mut ok = |name: &str, value: &str| match header_name(name).and_then(|_| header_value(value))
    {
        Ok(()) => true,
        Err(e) => {
            errors.push(e);
            false
        }
    };
    mods.set.retain(|(n, v)| ok(n, v));
    mods.add.retain(|(n, v)| ok(n, v));
    mods.remove.retain(|n| ok(n, ""));
    errors
}

#[cfg(test)]
mod tests {
    #[test]
    fn checks() {
        assert!(super::regex("/items/[0-9]+").is_ok());
        assert!(super::regex("(unclosed").is_err());
        assert!(super::header_name("X-Foo").is_ok());
        assert!(super::header_name("X Foo").is_err());
        assert!(super::header_value("a\nb").is_err());
        assert!(super::hostname("*.example.com").is_ok());
        assert!(super::hostname("foo.*.com").is_err());
        assert!(super::hostname("10.0.0.1").is_err());
    }
}
