//! SDS: listener certificates.

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    Secret, TlsCertificate, secret,
};

use crate::ir::TlsSecret;

fn inline(s: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::InlineString(s.to_string())),
        ..Default::default()
    })
}

pub fn secret(s: &TlsSecret) -> Secret {
    Secret {
        name: s.name.clone(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: inline(&s.cert_pem),
            private_key: inline(&s.key_pem),
            ..Default::default()
        })),
    }
}
