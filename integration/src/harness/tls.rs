//! TLS for the test client: trust exactly the given certificates (as upstream's conformance
//! client trusts exactly the gateway's certificate, or the conformance CA), send a chosen SNI
//! and ALPN.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, anyhow};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How the client opens TLS.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// PEM certificates the client trusts: a server presenting one of them is accepted as is,
    /// and a chain signed by one of them is accepted when it is valid for the SNI.
    pub trusted_cert_pem: String,
    /// Server name sent in the ClientHello.
    pub sni: String,
    /// Offer `h2` (instead of `http/1.1`) in ALPN.
    pub http2: bool,
    /// A certificate to present when the server asks for one.
    pub client_cert: Option<ClientCert>,
}

/// A client certificate, and whether a server asked for it.
#[derive(Clone, Debug)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
    requested: Arc<AtomicBool>,
}

impl ClientCert {
    pub fn new(cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        Self {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
            requested: Arc::default(),
        }
    }

    /// Whether a server has asked for this certificate (sent a CertificateRequest).
    pub fn was_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    fn resolver(&self, provider: &CryptoProvider) -> anyhow::Result<RecordingResolver> {
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("client certificate PEM: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| anyhow!("client key PEM: {e}"))?;
        Ok(RecordingResolver {
            key: Arc::new(CertifiedKey::from_der(chain, key, provider)?),
            requested: self.requested.clone(),
        })
    }
}

/// Presents the certificate and notes that the server asked for it.
#[derive(Debug)]
struct RecordingResolver {
    key: Arc<CertifiedKey>,
    requested: Arc<AtomicBool>,
}

impl ResolvesClientCert for RecordingResolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.requested.store(true, Ordering::SeqCst);
        Some(self.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Opens TLS over `stream` per `options`.
pub async fn connect(
    stream: TcpStream,
    options: &TlsOptions,
) -> anyhow::Result<TlsStream<TcpStream>> {
    connect_with_alpn(stream, options, Some(options.http2)).await
}

/// Like [`connect`]; `alpn: None` offers no ALPN at all (raw TLS streams).
pub async fn connect_with_alpn(
    stream: TcpStream,
    options: &TlsOptions,
    alpn: Option<bool>,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let trusted = CertificateDer::pem_slice_iter(options.trusted_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("trusted certificate PEM: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    // Self-signed leaf certificates are not valid roots; only CAs need to go in.
    let _ = roots.add_parsable_certificates(trusted.iter().cloned());
    let webpki = if roots.is_empty() {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()?,
        )
    };
    let verifier = Trusted {
        exact: trusted.iter().map(|c| c.as_ref().to_vec()).collect(),
        webpki,
        provider: provider.clone(),
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match &options.client_cert {
        Some(cert) => builder.with_client_cert_resolver(Arc::new(cert.resolver(&provider)?)),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = match alpn {
        Some(true) => vec![b"h2".to_vec()],
        Some(false) => vec![b"http/1.1".to_vec()],
        None => Vec::new(),
    };
    let name = ServerName::try_from(options.sni.clone())
        .with_context(|| format!("SNI {:?}", options.sni))?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await?;
    Ok(tls)
}

/// Accepts a server whose certificate is one of the trusted ones, whatever the name (the
/// conformance gateway certificate's SANs `*`, `*.org` cover every name the cases use, and
/// WebPKI rejects some of those wildcard forms), or a chain a trusted CA signed for the name.
#[derive(Debug)]
struct Trusted {
    exact: Vec<Vec<u8>>,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Trusted {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .exact
            .iter()
            .any(|der| der.as_slice() == end_entity.as_ref())
        {
            return Ok(ServerCertVerified::assertion());
        }
        match &self.webpki {
            Some(webpki) => webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
            None => Err(rustls::Error::General(
                "server presented an untrusted certificate".into(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
