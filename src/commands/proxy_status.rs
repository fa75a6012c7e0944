//! `portico proxy-status`: one line per connected Envoy, like `istioctl proxy-status`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// Fetches `/debug/proxy-status` from a running Portico and prints it as a table.
pub fn proxy_status(admin: &str, node: Option<&str>) -> anyhow::Result<ExitCode> {
    let body = http_get(admin, "/debug/proxy-status")?;
    let nodes: Vec<Value> = serde_json::from_str(&body).context("decoding /debug/proxy-status")?;
    match node {
        Some(id) => {
            let Some(n) = nodes.iter().find(|n| n["node"] == id) else {
                bail!("no connected node {id:?}");
            };
            print!("{}", serde_yaml::to_string(n)?);
        }
        None => print!("{}", super::proxy_table::table(&nodes)),
    }
    Ok(ExitCode::SUCCESS)
}

/// A minimal HTTP/1.0 GET: the admin server is on loopback and answers small documents, so
/// this avoids a client stack in the binary.
fn http_get(address: &str, path: &str) -> anyhow::Result<String> {
    let addr = address
        .to_socket_addrs()
        .with_context(|| format!("bad admin address {address:?}"))?
        .next()
        .with_context(|| format!("admin address {address:?} resolves to nothing"))?;
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot reach Portico's admin server at {address}"))?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("{path}: HTTP {status}: {}", body.trim());
    }
    Ok(body.to_string())
}
