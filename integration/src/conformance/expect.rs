//! Pure comparisons of one response against one traffic case, following upstream's
//! `CompareRoundTrip` as written down in CONVENTIONS.md.

use std::collections::BTreeMap;

use crate::echo::grpc::code_name;
use crate::harness::http::{GrpcResult, HttpResponse};

use super::case::TrafficCase;

/// What was actually sent (after `{uuid}` and request-id substitution).
#[derive(Clone, Debug)]
pub struct Sent {
    pub scheme: String,
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    pub headers: BTreeMap<String, String>,
    /// PEM certificate the backend must report the gateway presented
    /// (`expectedRequest.clientCertSecret`, resolved).
    pub backend_client_cert: Option<String>,
}

/// Checks an HTTP response; `Err` says what differs.
pub fn check_http(case: &TrafficCase, sent: &Sent, response: &HttpResponse) -> Result<(), String> {
    let codes = case
        .response
        .as_ref()
        .map(|r| r.status_codes.clone())
        .unwrap_or_else(|| vec![200]);
    if !codes.contains(&response.status) {
        return Err(format!(
            "status {}, want one of {codes:?}; body {}",
            response.status,
            snippet(&response.text())
        ));
    }
    if let Some(redirect) = &case.redirect {
        let location = response
            .header("location")
            .ok_or("redirect without Location header")?;
        check_location(&location, redirect, sent)?;
    }
    // Upstream compares the rest only on 200/204.
    if response.status != 200 && response.status != 204 {
        return Ok(());
    }
    let echo = response.echo();
    match &case.expected_request {
        Some(expected) if expected.path.as_deref() == Some("") => {
            if let Some(echo) = &echo {
                return Err(format!(
                    "expected the gateway to answer itself, but backend {} echoed",
                    echo.pod
                ));
            }
        }
        expected => {
            let echo = echo
                .ok_or_else(|| format!("no echo in response body {}", snippet(&response.text())))?;
            let (method, path, host, headers, absent) = match expected {
                Some(e) => (
                    e.method.clone(),
                    e.path.clone(),
                    e.host.clone(),
                    e.headers.clone(),
                    e.absent_headers.clone(),
                ),
                None => (
                    Some(sent.method.clone()),
                    Some(sent.path.clone()),
                    sent.host.clone(),
                    sent.headers.clone(),
                    Vec::new(),
                ),
            };
            compare("method", method.as_deref(), &echo.method)?;
            compare("path", path.as_deref(), &echo.path)?;
            compare("host", host.as_deref(), &echo.host)?;
            // The TLS server name the (TLS) backend got from the gateway.
            let sni = expected.as_ref().and_then(|e| e.sni.as_deref());
            compare("SNI", sni, &echo.sni)?;
            if let Some(cert) = &sent.backend_client_cert {
                let peers = echo
                    .tls
                    .as_ref()
                    .map(|t| t.peer_certificates.as_slice())
                    .unwrap_or_default();
                if !peers.iter().any(|p| pem_body(p) == pem_body(cert)) {
                    return Err(format!(
                        "backend did not get the expected client certificate from the gateway ({} peer certificate(s))",
                        peers.len()
                    ));
                }
            }
            for (name, want) in &headers {
                match echo.header(name) {
                    Some(got) if got == *want => {}
                    got => {
                        return Err(format!("backend saw header {name}: {got:?}, want {want:?}"));
                    }
                }
            }
            for name in &absent {
                if let Some(got) = echo.header(name) {
                    return Err(format!(
                        "backend saw header {name}: {got:?}, want it absent"
                    ));
                }
            }
            if let Some(ns) = &case.namespace {
                compare("namespace", Some(ns), &echo.namespace)?;
            }
            if let Some(backend) = case.backend.as_deref().filter(|b| !b.is_empty())
                && !echo.pod.starts_with(backend)
            {
                return Err(format!(
                    "answered by pod {}, want a pod of {backend}",
                    echo.pod
                ));
            }
        }
    }
    if let Some(spec) = &case.response {
        for (name, want) in &spec.headers {
            match response.header(&name.to_ascii_lowercase()) {
                Some(got) if got == *want => {}
                got => return Err(format!("response header {name}: {got:?}, want {want:?}")),
            }
        }
        for name in &spec.absent_headers {
            if let Some(got) = response.header(&name.to_ascii_lowercase()) {
                return Err(format!("response header {name}: {got:?}, want it absent"));
            }
        }
    }
    Ok(())
}

/// The base64 body of a PEM block, without whitespace, for comparing certificates.
fn pem_body(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.split_whitespace())
        .collect()
}

fn compare(what: &str, want: Option<&str>, got: &str) -> Result<(), String> {
    match want {
        Some(want) if want != got => Err(format!("backend saw {what} {got:?}, want {want:?}")),
        _ => Ok(()),
    }
}

fn check_location(
    location: &str,
    want: &super::case::RedirectSpec,
    sent: &Sent,
) -> Result<(), String> {
    let (scheme, rest) = location
        .split_once("://")
        .ok_or_else(|| format!("Location {location:?} is not absolute"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = path.split('?').next().unwrap_or(path);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
            (h, p.parse::<u16>().ok())
        }
        _ => (authority, None),
    };
    let want_scheme = want.scheme.as_deref().unwrap_or(&sent.scheme);
    let fail = |what: &str| {
        Err(format!(
            "redirect {what} differs: Location {location:?}, want {want:?}"
        ))
    };
    if !scheme.eq_ignore_ascii_case(want_scheme) {
        return fail("scheme");
    }
    if want.host.as_deref().is_some_and(|h| h != host) {
        return fail("host");
    }
    match want.port {
        Some(p) if port != Some(p) => return fail("port"),
        None => {
            let default = if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            if port.is_some_and(|p| p != default) {
                return fail("port");
            }
        }
        _ => {}
    }
    if want.path.as_deref().is_some_and(|p| p != path) {
        return fail("path");
    }
    Ok(())
}

/// gRPC code a client reports when the answer carries no grpc-status (gRPC's HTTP mapping).
fn code_from_http(status: u16) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

/// Checks a unary gRPC result: the code by name, and on OK the echoed method, namespace, pod.
pub fn check_grpc(
    case: &TrafficCase,
    full_method: &str,
    result: &GrpcResult,
) -> Result<(), String> {
    let code = match (result.grpc_status, result.http_status) {
        (Some(code), _) => code,
        (None, 200) => 13,
        (None, http) => code_from_http(http),
    };
    let name = code_name(code);
    let wanted = case
        .response
        .as_ref()
        .map(|r| r.grpc_codes.clone())
        .unwrap_or_else(|| vec!["OK".into()]);
    if !wanted.contains(&name) {
        return Err(format!(
            "gRPC code {name} (HTTP {}, message {:?}), want one of {wanted:?}",
            result.http_status, result.grpc_message
        ));
    }
    if code != 0 {
        return Ok(());
    }
    let assertions = result
        .response
        .as_ref()
        .and_then(|r| r.assertions.clone())
        .ok_or("OK without an EchoResponse")?;
    if assertions.fully_qualified_method != full_method {
        return Err(format!(
            "backend saw method {}, want {full_method}",
            assertions.fully_qualified_method
        ));
    }
    let context = assertions.context.unwrap_or_default();
    if let Some(ns) = &case.namespace {
        compare("namespace", Some(ns), &context.namespace)?;
    }
    if let Some(backend) = case.backend.as_deref().filter(|b| !b.is_empty())
        && !context.pod.starts_with(backend)
    {
        return Err(format!(
            "answered by pod {}, want a pod of {backend}",
            context.pod
        ));
    }
    Ok(())
}

fn snippet(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.len() > 160 {
        format!("{}...", &flat[..flat.floor_char_boundary(160)])
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo::EchoedRequest;
    use http::HeaderMap;

    fn case(yaml: &str) -> TrafficCase {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn sent(path: &str) -> Sent {
        Sent {
            scheme: "http".into(),
            method: "GET".into(),
            path: path.into(),
            host: None,
            headers: BTreeMap::new(),
            backend_client_cert: None,
        }
    }

    fn echo_response(pod: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        let echo = EchoedRequest {
            path: path.into(),
            method: "GET".into(),
            namespace: "ns".into(),
            pod: pod.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
                .collect(),
            ..Default::default()
        };
        HttpResponse {
            status: 200,
            headers: HeaderMap::new(),
            body: serde_json::to_vec(&echo).unwrap().into(),
        }
    }

    #[test]
    fn unchanged_request_and_backend() {
        let c = case(
            "{request: {protocol: HTTP, method: GET, path: /a}, response: {statusCodes: [200]}, backend: web, namespace: ns}",
        );
        assert_eq!(
            check_http(&c, &sent("/a"), &echo_response("web-0", "/a", &[])),
            Ok(())
        );
        assert!(
            check_http(&c, &sent("/a"), &echo_response("api-0", "/a", &[]))
                .unwrap_err()
                .contains("pod api-0")
        );
        assert!(
            check_http(&c, &sent("/a"), &echo_response("web-0", "/b", &[]))
                .unwrap_err()
                .contains("path")
        );
    }

    #[test]
    fn expected_headers_compare_case_insensitively() {
        let c = case(
            "{request: {method: GET, path: /a}, expectedRequest: {path: /a, headers: {x-foo: bar}, absentHeaders: [X-Gone]}}",
        );
        assert_eq!(
            check_http(
                &c,
                &sent("/a"),
                &echo_response("p", "/a", &[("X-Foo", "bar")])
            ),
            Ok(())
        );
        let gone = echo_response("p", "/a", &[("X-Foo", "bar"), ("X-Gone", "1")]);
        assert!(check_http(&c, &sent("/a"), &gone).is_err());
    }

    #[test]
    fn redirects_compare_location() {
        let c = case(
            "{request: {method: GET, path: /a}, response: {statusCodes: [302]}, redirect: {scheme: http, host: example.org, path: /b}}",
        );
        let mut r = HttpResponse {
            status: 302,
            headers: HeaderMap::new(),
            body: Default::default(),
        };
        r.headers
            .insert("location", "http://example.org/b".parse().unwrap());
        assert_eq!(check_http(&c, &sent("/a"), &r), Ok(()));
        r.headers
            .insert("location", "http://example.org:8080/b".parse().unwrap());
        assert!(
            check_http(&c, &sent("/a"), &r)
                .unwrap_err()
                .contains("port")
        );
        r.status = 200;
        assert!(
            check_http(&c, &sent("/a"), &r)
                .unwrap_err()
                .contains("status 200")
        );
    }

    #[test]
    fn grpc_codes_by_name() {
        let c = case(
            "{request: {protocol: GRPC, path: /s/M}, response: {grpcCodes: [Unimplemented, NotFound]}}",
        );
        let result = GrpcResult {
            http_status: 404,
            grpc_status: None,
            grpc_message: None,
            response: None,
        };
        assert_eq!(check_grpc(&c, "/s/M", &result), Ok(()));
        let ok = GrpcResult {
            grpc_status: Some(0),
            http_status: 200,
            ..result
        };
        assert!(
            check_grpc(&c, "/s/M", &ok)
                .unwrap_err()
                .contains("gRPC code OK")
        );
    }
}
