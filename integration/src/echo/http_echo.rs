//! The HTTP side of the echo server: the JSON echo, `X-Echo-Set-Header`, `?delay=`,
//! `/status/<code>` and the flaky `/retry/...` backend.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::{Conn, EchoBody, EchoState, full_body, parse_go_duration};

/// The JSON document echo-basic answers with: the request as the backend saw it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EchoedRequest {
    /// The request URI: path and query, as received.
    pub path: String,
    pub host: String,
    pub method: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub proto: String,
    /// Header names in Go's canonical form, each with all its values.
    pub headers: BTreeMap<String, Vec<String>>,
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    pub pod: String,
    /// TLS server name the client sent to this backend (empty over cleartext).
    pub sni: String,
    /// Present when the request came over TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
}

/// The part of echo-basic's TLS assertions the tests use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TlsInfo {
    pub server_name: String,
    /// PEM certificates the client (the gateway) presented.
    pub peer_certificates: Vec<String>,
}

impl EchoedRequest {
    /// All values of a header (case-insensitive name), joined by `,` as the conformance
    /// conventions compare them; `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.join(","))
    }
}

pub(crate) async fn respond<B>(
    state: &Arc<EchoState>,
    conn: &Conn,
    req: Request<B>,
) -> Response<EchoBody> {
    let uri = request_uri(&req);
    state.record(format!(
        "Echoing back request made to {uri} to client ({})",
        conn.peer
    ));
    let path = req.uri().path();
    if path == "/health" {
        return plain(StatusCode::OK, "OK");
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok());
        return plain(status.unwrap_or(StatusCode::BAD_REQUEST), "");
    }
    let query = parse_query(req.uri().query().unwrap_or(""));
    if let Some(delay) = query.get("delay") {
        match parse_go_duration(delay) {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("invalid delay {delay:?}"),
                );
            }
        }
    }
    if path.starts_with("/retry")
        && let Some(failure) = retry_failure(state, conn, &query).await
    {
        return failure;
    }
    echo(state, conn, &req, uri)
}

/// echo-basic's flaky backend: the first `succeedAfter` requests carrying one `uuid` fail,
/// after sleeping `delayRetry`, with `responseCode` or (without it) a TCP reset.
async fn retry_failure(
    state: &EchoState,
    conn: &Conn,
    query: &BTreeMap<String, String>,
) -> Option<Response<EchoBody>> {
    let uuid = query.get("uuid").cloned().unwrap_or_default();
    let succeed_after: u32 = query
        .get("succeedAfter")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let attempt = {
        let mut retries = state.retries.lock().ok()?;
        let seen = retries.entry(uuid).or_insert(0);
        *seen += 1;
        *seen
    };
    if attempt > succeed_after {
        return None;
    }
    if let Some(delay) = query.get("delayRetry").and_then(|d| parse_go_duration(d)) {
        tokio::time::sleep(delay).await;
    }
    match query
        .get("responseCode")
        .and_then(|c| c.parse::<u16>().ok())
    {
        Some(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(error(
                status,
                &format!("failing attempt {attempt} of {succeed_after}"),
            ))
        }
        None => {
            conn.reset();
            // The connection is torn down with RST; this response is never written.
            std::future::pending::<()>().await;
            None
        }
    }
}

fn echo<B>(state: &EchoState, conn: &Conn, req: &Request<B>, uri: String) -> Response<EchoBody> {
    let host = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in req.headers() {
        if name == http::header::HOST {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(canonical_header_key(name.as_str()))
            .or_default()
            .push(value);
    }
    let config = &state.config;
    let echoed = EchoedRequest {
        path: uri,
        host,
        method: req.method().to_string(),
        proto: format!("{:?}", req.version()),
        headers,
        namespace: config.namespace.clone(),
        ingress: config.ingress.clone(),
        service: config.service.clone(),
        pod: config.pod.clone(),
        sni: conn.sni.clone().unwrap_or_default(),
        tls: conn.tls.then(|| TlsInfo {
            server_name: conn.sni.clone().unwrap_or_default(),
            peer_certificates: conn.peer_certs.clone(),
        }),
    };
    let body = serde_json::to_vec_pretty(&echoed).unwrap_or_default();
    let mut response = Response::new(full_body(Bytes::from(body)));
    let out = response.headers_mut();
    for (name, value) in echo_set_headers(req) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            out.insert(name, value);
        }
    }
    out.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `X-Echo-Set-Header: Name:value,Name2:value2`; a repeated name appends `,value`.
fn echo_set_headers<B>(req: &Request<B>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for list in req.headers().get_all("x-echo-set-header") {
        let Ok(list) = list.to_str() else { continue };
        for pair in list.split(',') {
            let Some((name, value)) = pair.trim().split_once(':') else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                Some((_, existing)) => {
                    existing.push(',');
                    existing.push_str(value.trim());
                }
                None => out.push((name.to_string(), value.to_string())),
            }
        }
    }
    out
}

/// Path and query as the client sent them (Go's `RequestURI`).
fn request_uri<B>(req: &Request<B>) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(|| "/".to_string(), |pq| pq.as_str().to_string())
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), String::new()),
        })
        .collect()
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: `x-foo-bar` -> `X-Foo-Bar`.
pub(crate) fn canonical_header_key(name: &str) -> String {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !name.chars().all(token) {
        return name.to_string();
    }
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

fn plain(status: StatusCode, text: &'static str) -> Response<EchoBody> {
    let mut response = Response::new(full_body(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

fn error(status: StatusCode, message: &str) -> Response<EchoBody> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut response = Response::new(full_body(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalizes_like_go() {
        assert_eq!(canonical_header_key("x-header-add"), "X-Header-Add");
        assert_eq!(canonical_header_key("USER-agent"), "User-Agent");
        assert_eq!(canonical_header_key("bad header"), "bad header");
    }

    #[test]
    fn echo_set_header_appends_repeated_names() {
        let req = Request::builder()
            .header("x-echo-set-header", "X-A:1, X-B:2,X-A: 3")
            .body(())
            .unwrap();
        assert_eq!(
            echo_set_headers(&req),
            vec![
                ("X-A".to_string(), "1,3".to_string()),
                ("X-B".to_string(), "2".to_string())
            ]
        );
    }

    #[test]
    fn parses_queries() {
        let q = parse_query("a=1&b&c=x=y");
        assert_eq!(q.get("a").map(String::as_str), Some("1"));
        assert_eq!(q.get("b").map(String::as_str), Some(""));
        assert_eq!(q.get("c").map(String::as_str), Some("x=y"));
    }
}
