//! End to end TLS (issue #5): listener certificates reach Envoy over SDS, so replacing a
//! Secret rotates the certificate for new handshakes without replacing (draining) the
//! listener; private keys never appear in what Portico prints; and each fleet receives only
//! the Secrets its own Gateway references.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use portico_integration::codec::base64;
use portico_integration::conformance::certs::{Pair, self_signed};
use portico_integration::echo::{EchoConfig, EchoHandle, spawn};
use portico_integration::harness::fixtures;
use portico_integration::harness::http::{HttpRequest, send};
use portico_integration::harness::tls::{TlsOptions, connect};
use portico_integration::harness::{
    ConfigDir, Envoy, EnvoyOptions, Portico, PorticoOptions, eventually, free_port, portico_cli,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;

const NS: &str = "e2e";
const HOST: &str = "app.example.com";
/// Covers Portico's debounce, translation and Envoy applying the update.
const CONVERGE: Duration = Duration::from_secs(20);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Two Gateways (`alpha`, `beta`), each with one HTTPS listener whose certificate is its own
/// Secret, both routing to one echo backend; one Envoy per fleet.
struct World {
    dir: ConfigDir,
    certs: tempfile::TempDir,
    alpha_port: u16,
    beta_port: u16,
    alpha_cert: Pair,
    beta_cert: Pair,
    _echo: EchoHandle,
    alpha: Envoy,
    beta: Envoy,
    portico: Portico,
}

impl World {
    async fn start(delta: bool) -> anyhow::Result<Self> {
        let echo = spawn(EchoConfig::new("app-0", NS)).await?;
        let certs = tempfile::Builder::new()
            .prefix("portico-certs-")
            .tempdir()?;
        let alpha_cert = cert(certs.path(), "alpha-1")?;
        let beta_cert = cert(certs.path(), "beta-1")?;
        let (alpha_port, beta_port) = (free_port(), free_port());
        let dir = ConfigDir::new()?;
        dir.write("gateways.yaml", &gateways_yaml(alpha_port, beta_port))?;
        dir.write(
            "backend.yaml",
            &fixtures::service_yaml(NS, "app", echo.addr()),
        )?;
        dir.write("alpha-cert.yaml", &secret_yaml("alpha-cert", &alpha_cert))?;
        dir.write("beta-cert.yaml", &secret_yaml("beta-cert", &beta_cert))?;
        let portico = Portico::start(dir.path(), PorticoOptions::default()).await?;
        let options = EnvoyOptions {
            delta,
            ..Default::default()
        };
        let alpha = Envoy::start(&portico, "e2e/alpha", options.clone()).await?;
        let beta = Envoy::start(&portico, "e2e/beta", options).await?;
        Ok(Self {
            dir,
            certs,
            alpha_port,
            beta_port,
            alpha_cert,
            beta_cert,
            _echo: echo,
            alpha,
            beta,
            portico,
        })
    }

    fn logs(&self) -> String {
        format!(
            "portico log:\n{}\nalpha envoy log:\n{}\nbeta envoy log:\n{}",
            self.portico.log_tail(),
            self.alpha.log_tail(),
            self.beta.log_tail()
        )
    }
}

/// A self-signed certificate for [`HOST`], distinct per `name`.
fn cert(dir: &Path, name: &str) -> anyhow::Result<Pair> {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub)?;
    self_signed(&sub, HOST, &[&format!("DNS:{HOST}")])
}

fn gateways_yaml(alpha_port: u16, beta_port: u16) -> String {
    let mut out = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: portico
spec:
  controllerName: portico.dev/gateway-controller
---
apiVersion: v1
kind: Namespace
metadata:
  name: {NS}
"#
    );
    for (name, port) in [("alpha", alpha_port), ("beta", beta_port)] {
        out.push_str(&format!(
            r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: {name}
  namespace: {NS}
spec:
  gatewayClassName: portico
  listeners:
    - name: https
      protocol: HTTPS
      port: {port}
      tls:
        mode: Terminate
        certificateRefs:
          - name: {name}-cert
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: {name}-route
  namespace: {NS}
spec:
  parentRefs:
    - name: {name}
  hostnames: ["{HOST}"]
  rules:
    - backendRefs:
        - name: app
          port: 8080
"#
        ));
    }
    out
}

fn secret_yaml(name: &str, (crt, key): &Pair) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: {name}
  namespace: {NS}
type: kubernetes.io/tls
data:
  tls.crt: {crt}
  tls.key: {key}
"#,
        crt = base64(crt.as_bytes()),
        key = base64(key.as_bytes()),
    )
}

fn der(pem: &str) -> anyhow::Result<Vec<u8>> {
    let first = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .context("no certificate in PEM")?
        .map_err(|e| anyhow::anyhow!("certificate PEM: {e}"))?;
    Ok(first.as_ref().to_vec())
}

fn tls_options(trusted: &[&Pair]) -> TlsOptions {
    TlsOptions {
        trusted_cert_pem: trusted.iter().map(|p| p.0.as_str()).collect(),
        sni: HOST.to_string(),
        http2: false,
        client_cert: None,
    }
}

/// A keep-alive HTTP/1.1 connection over TLS, and the certificate the server presented.
struct KeepAlive {
    sender: SendRequest<Empty<Bytes>>,
    server_cert: Vec<u8>,
}

impl KeepAlive {
    async fn open(addr: SocketAddr, options: &TlsOptions) -> anyhow::Result<Self> {
        let open = async {
            let tcp = TcpStream::connect(addr)
                .await
                .with_context(|| format!("connect {addr}"))?;
            let tls = connect(tcp, options).await.context("TLS handshake")?;
            let server_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|c| c.as_ref().to_vec())
                .context("server presented no certificate")?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(conn);
            Ok(Self {
                sender,
                server_cert,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, open)
            .await
            .context("opening TLS connection timed out")?
    }

    /// GET / on this connection; the status code.
    async fn get(&mut self) -> anyhow::Result<u16> {
        let request = http::Request::get("/")
            .header(http::header::HOST, HOST)
            .body(Empty::new())?;
        let exchange = async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let status = response.status().as_u16();
            response.into_body().collect().await?;
            anyhow::Ok(status)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .context("request on the kept-alive connection timed out")?
    }
}

/// Envoy's counters and gauges, by name.
async fn stat(envoy: &Envoy, name: &str) -> anyhow::Result<u64> {
    let text = envoy
        .admin_get(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))
        .await?;
    for line in text.lines() {
        if let Some((key, value)) = line.split_once(": ")
            && key == name
        {
            return Ok(value.trim().parse()?);
        }
    }
    bail!("Envoy has no stat {name}: {text}")
}

/// Opens a fresh TLS connection and waits until the listener serves a request.
async fn until_serving(envoy: &Envoy, port: u16, trusted: &[&Pair]) -> anyhow::Result<KeepAlive> {
    eventually(CONVERGE, || async {
        let mut conn =
            KeepAlive::open(envoy.address_for_port(port).await?, &tls_options(trusted)).await?;
        let status = conn.get().await?;
        ensure!(status == 200, "GET / answered {status}");
        Ok(conn)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_a_secret_reaches_new_handshakes_without_draining_the_listener()
-> anyhow::Result<()> {
    rotation(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_over_delta_ads_does_not_drain_either() -> anyhow::Result<()> {
    rotation(true).await
}

async fn rotation(delta: bool) -> anyhow::Result<()> {
    let world = World::start(delta).await?;
    let old = world.alpha_cert.clone();
    let new = cert(world.certs.path(), "alpha-2")?;
    let trusted = [&old, &new];
    let envoy = &world.alpha;

    let mut kept = until_serving(envoy, world.alpha_port, &trusted)
        .await
        .with_context(|| world.logs())?;
    ensure!(
        kept.server_cert == der(&old.0)?,
        "first handshake did not present the original certificate"
    );
    let modified = stat(envoy, "listener_manager.listener_modified").await?;
    let added = stat(envoy, "listener_manager.listener_added").await?;

    world
        .dir
        .write("alpha-cert.yaml", &secret_yaml("alpha-cert", &new))?;
    let new_der = der(&new.0)?;
    let port = world.alpha_port;
    eventually(CONVERGE, || async {
        let fresh =
            KeepAlive::open(envoy.address_for_port(port).await?, &tls_options(&trusted)).await?;
        ensure!(
            fresh.server_cert == new_der,
            "new handshake still presents the old certificate"
        );
        Ok(())
    })
    .await
    .with_context(|| world.logs())?;

    // The connection opened before the rotation is still served by the same listener.
    let status = kept
        .get()
        .await
        .context("request on the pre-rotation connection")?;
    ensure!(status == 200, "pre-rotation connection answered {status}");
    ensure!(
        stat(envoy, "listener_manager.listener_modified").await? == modified,
        "the listener was modified (drained) by a certificate rotation"
    );
    ensure!(
        stat(envoy, "listener_manager.listener_added").await? == added,
        "a listener was added by a certificate rotation"
    );
    ensure!(
        stat(envoy, "listener_manager.total_listeners_draining").await? == 0,
        "a listener is draining after a certificate rotation"
    );
    Ok(())
}

/// The base64 body lines of a PEM private key: any one of them showing up means the key leaked.
fn key_fragments(key_pem: &str) -> Vec<String> {
    let mut out: Vec<String> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_string)
        .collect();
    // As stored in the Secret (base64 of the whole PEM), in case something echoes input data.
    out.push(base64(key_pem.as_bytes())[..40].to_string());
    out
}

fn leaks(text: &str, key_pem: &str) -> bool {
    key_fragments(key_pem).iter().any(|f| text.contains(f))
}

/// Names of the Secrets an Envoy holds, from its own config dump.
async fn envoy_secret_names(envoy: &Envoy) -> anyhow::Result<Vec<String>> {
    let dump: serde_json::Value = serde_json::from_str(
        &envoy
            .admin_get("/config_dump?resource=dynamic_active_secrets")
            .await?,
    )?;
    let mut names: Vec<String> = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

/// Names of the Secrets Portico sent a node, from Portico's admin config dump.
fn portico_secret_names(dump: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = dump
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(type_url, _)| type_url.ends_with(".Secret"))
        .flat_map(|(_, items)| items.as_array().cloned().unwrap_or_default())
        .filter_map(|item| item["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_keys_stay_hidden_and_fleets_get_only_their_secrets() -> anyhow::Result<()> {
    let world = World::start(false).await?;
    let keys = [&world.alpha_cert.1, &world.beta_cert.1];
    // Both fleets serve: every Secret has reached its Envoy.
    until_serving(&world.alpha, world.alpha_port, &[&world.alpha_cert])
        .await
        .with_context(|| world.logs())?;
    until_serving(&world.beta, world.beta_port, &[&world.beta_cert])
        .await
        .with_context(|| world.logs())?;

    // Each Envoy holds exactly its own Gateway's Secret.
    ensure!(envoy_secret_names(&world.alpha).await? == ["e2e/alpha-cert"]);
    ensure!(envoy_secret_names(&world.beta).await? == ["e2e/beta-cert"]);

    // Portico's admin dump per node: only that fleet's Secret, key redacted.
    for (envoy, own) in [
        (&world.alpha, "e2e/alpha-cert"),
        (&world.beta, "e2e/beta-cert"),
    ] {
        let path = format!("/debug/config_dump?node={}", envoy.node_id);
        let response = send(
            world.portico.admin,
            &HttpRequest::get(&path),
            REQUEST_TIMEOUT,
        )
        .await?;
        ensure!(
            response.status == 200,
            "{path} answered {}",
            response.status
        );
        let text = response.text();
        ensure!(
            portico_secret_names(&serde_json::from_str(&text)?) == [own],
            "{path} lists other fleets' secrets: {text}"
        );
        ensure!(
            !keys.iter().any(|k| leaks(&text, k)),
            "{path} shows a private key"
        );
        ensure!(text.contains("[redacted]"), "{path} has no redacted key");
    }

    // The CLI: translate redacts unless asked, status never shows keys.
    let dir = world.dir.path().to_str().context("config dir path")?;
    for gateway in ["e2e/alpha", "e2e/beta"] {
        let out = portico_cli(&["translate", dir, "--gateway", gateway]).await?;
        ensure!(out.code == Some(0), "translate failed: {}", out.stderr);
        let all = format!("{}{}", out.stdout, out.stderr);
        ensure!(
            !keys.iter().any(|k| leaks(&all, k)),
            "translate {gateway} shows a key"
        );
        ensure!(
            out.stdout.contains("[redacted]"),
            "translate {gateway} redacted nothing"
        );
    }
    // Positive control: the fragments we look for are what an unredacted dump contains.
    let shown =
        portico_cli(&["translate", dir, "--gateway", "e2e/alpha", "--show-secrets"]).await?;
    ensure!(
        leaks(&shown.stdout, &world.alpha_cert.1),
        "--show-secrets did not show the key (the leak check would be vacuous)"
    );
    ensure!(
        !leaks(&shown.stdout, &world.beta_cert.1),
        "fleet alpha's translation carries beta's key"
    );
    for format in ["yaml", "json"] {
        let out = portico_cli(&["status", dir, "-o", format]).await?;
        ensure!(out.code == Some(0), "status failed: {}", out.stderr);
        let all = format!("{}{}", out.stdout, out.stderr);
        ensure!(
            !keys.iter().any(|k| leaks(&all, k)),
            "status -o {format} shows a key"
        );
    }
    Ok(())
}
