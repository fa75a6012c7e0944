//! CDS: one cluster per backend (Service port, Backend).

use std::collections::HashMap;
use std::sync::LazyLock;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{DataSource, Metadata, data_source};
use envoy_types::pb::envoy::config::core::v3::{
    Http1ProtocolOptions, Http2ProtocolOptions, TransportSocket, transport_socket,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SdsSecretConfig, SubjectAltNameMatcher,
    UpstreamTlsContext, common_tls_context, subject_alt_name_matcher,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::Any;

use prost::Message;
use prost::encoding::string;

use crate::ir::{Cluster as IrCluster, Discovery, UpstreamProtocol, UpstreamTls};
use crate::render::{self, Packed};
use crate::xds::{ads, any, duration_ms, endpoint};

const HTTP_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// Packs a fleet's clusters. An EDS cluster without TLS is its name plus fields that depend
/// only on its protocol and the fleet's metadata: those are encoded once per protocol, and
/// such a cluster costs a copy. prost writes field 1 (the name) first, so the name's field
/// followed by the rest is the cluster's encoding byte for byte (the tests check). Other
/// clusters are built whole.
pub struct Packer {
    metadata: Option<Metadata>,
    /// The encoding of a nameless EDS cluster without TLS, by `slot` of its protocol.
    templates: [Vec<u8>; 4],
}

const PROTOCOLS: [UpstreamProtocol; 4] = [
    UpstreamProtocol::Http1,
    UpstreamProtocol::H2c,
    UpstreamProtocol::Ws,
    UpstreamProtocol::Stream,
];

fn slot(protocol: UpstreamProtocol) -> usize {
    PROTOCOLS.iter().position(|p| *p == protocol).unwrap_or(0)
}

impl Packer {
    /// For clusters carrying the Gateway's infrastructure `metadata`.
    pub fn new(metadata: Option<Metadata>) -> Self {
        let templates = PROTOCOLS.map(|protocol| {
            let nameless = IrCluster {
                name: String::new(),
                protocol,
                discovery: Discovery::Eds(Vec::new()),
                tls: None,
                origins: Vec::new(),
            };
            cluster(&nameless, metadata.clone()).encode_to_vec()
        });
        Packer {
            metadata,
            templates,
        }
    }

    pub fn pack(&self, c: &IrCluster) -> Packed<Cluster> {
        if !matches!(c.discovery, Discovery::Eds(_)) || c.tls.is_some() {
            return Packed::new(
                &c.name,
                render::CLUSTER,
                &*cluster(c, self.metadata.clone()),
            );
        }
        let template = &self.templates[slot(c.protocol)];
        let mut value = Vec::with_capacity(string::encoded_len(1, &c.name) + template.len());
        if !c.name.is_empty() {
            string::encode(1, &c.name, &mut value);
        }
        value.extend_from_slice(template);
        Packed::from_encoded(&c.name, render::CLUSTER, value)
    }
}

/// The cluster proto, with the Gateway's infrastructure `metadata`. Built where it lives: a
/// Cluster is over 3 KB, and building it on the stack moved it several times (`Box::default`
/// constructs in place, fields are then set one by one).
fn cluster(c: &IrCluster, metadata: Option<Metadata>) -> Box<Cluster> {
    let mut out = Box::<Cluster>::default();
    fill(&mut out, c, metadata);
    out
}

fn fill(out: &mut Cluster, c: &IrCluster, metadata: Option<Metadata>) {
    out.name = c.name.clone();
    out.connect_timeout = Some(duration_ms(10_000));
    out.metadata = metadata;
    match &c.discovery {
        Discovery::Eds(_) => {
            out.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            ));
            out.eds_cluster_config = Some(cluster::EdsClusterConfig {
                eds_config: Some(ads()),
                service_name: String::new(),
            });
        }
        Discovery::Dns(endpoints) => {
            out.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::StrictDns as i32,
            ));
            out.dns_lookup_family = cluster::DnsLookupFamily::V4Preferred as i32;
            out.load_assignment = Some(endpoint::load_assignment(&c.name, endpoints));
        }
    }
    let options = match c.protocol {
        UpstreamProtocol::H2c => Some(&*HTTP2_OPTIONS),
        UpstreamProtocol::Http1 | UpstreamProtocol::Ws => Some(&*HTTP1_OPTIONS),
        UpstreamProtocol::Stream => None,
    };
    if let Some(options) = options {
        out.typed_extension_protocol_options =
            HashMap::from([(HTTP_OPTIONS.to_string(), options.clone())]);
    }
    if let Some(tls) = &c.tls {
        out.transport_socket = Some(TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(any(
                &upstream_tls(tls),
            ))),
        });
    }
}

/// The packed HttpProtocolOptions every HTTP/1 cluster carries (packed once, copied per cluster).
static HTTP1_OPTIONS: LazyLock<Any> = LazyLock::new(|| {
    http_options(
        http_protocol_options::explicit_http_config::ProtocolConfig::HttpProtocolOptions(
            Http1ProtocolOptions::default(),
        ),
    )
});

/// The same for HTTP/2 (h2c, gRPC) clusters.
static HTTP2_OPTIONS: LazyLock<Any> = LazyLock::new(|| {
    http_options(
        http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
            Http2ProtocolOptions::default(),
        ),
    )
});

fn http_options(config: http_protocol_options::explicit_http_config::ProtocolConfig) -> Any {
    any(&HttpProtocolOptions {
        upstream_protocol_options: Some(
            http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                http_protocol_options::ExplicitHttpConfig {
                    protocol_config: Some(config),
                },
            ),
        ),
        ..Default::default()
    })
}

/// The system trust store of the Envoy host (BackendTLSPolicy wellKnownCACertificates: System).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// TLS to the backend: SNI and SAN from the BackendTLSPolicy hostname, the policy's CA bundle
/// (or the system store), and the Gateway's client certificate when it has one.
fn upstream_tls(tls: &UpstreamTls) -> UpstreamTlsContext {
    let validation = CertificateValidationContext {
        trusted_ca: match &tls.ca_pem {
            Some(pem) => Some(DataSource {
                specifier: Some(data_source::Specifier::InlineString(pem.clone())),
                ..Default::default()
            }),
            // Envoy refuses SAN checks with `system_root_certs` ("SAN-based verification ...
            // without trusted CA"), so the system store is named by its file, as Envoy's
            // images and Debian/Alpine/Fedora-compat layouts ship it.
            None if tls.use_system_ca => Some(DataSource {
                specifier: Some(data_source::Specifier::Filename(SYSTEM_CA_BUNDLE.into())),
                ..Default::default()
            }),
            None => None,
        },
        match_typed_subject_alt_names: tls
            .subject_alt_names
            .iter()
            .map(|san| {
                let (kind, value) = match san.split_once(':') {
                    Some(("uri", v)) => (subject_alt_name_matcher::SanType::Uri, v),
                    Some((_, v)) => (subject_alt_name_matcher::SanType::Dns, v),
                    None => (subject_alt_name_matcher::SanType::Dns, san.as_str()),
                };
                SubjectAltNameMatcher {
                    san_type: kind as i32,
                    matcher: Some(StringMatcher {
                        match_pattern: Some(string_matcher::MatchPattern::Exact(value.to_string())),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            })
            .collect(),
        ..Default::default()
    };
    UpstreamTlsContext {
        sni: tls.sni.clone(),
        common_tls_context: Some(CommonTlsContext {
            validation_context_type: Some(
                common_tls_context::ValidationContextType::ValidationContext(validation),
            ),
            tls_certificate_sds_secret_configs: tls
                .client_certificate
                .iter()
                .map(|name| SdsSecretConfig {
                    name: name.clone(),
                    sds_config: Some(ads()),
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Endpoint;
    use crate::xds::metadata;

    #[test]
    fn packer_matches_prost() {
        let infra = crate::ir::Infrastructure {
            labels: [("team".to_string(), "a".to_string())].into(),
            annotations: Default::default(),
        };
        let endpoints = vec![Endpoint::Socket {
            address: "10.0.0.1".into(),
            port: 8080,
        }];
        let tls = UpstreamTls {
            sni: "be.example".into(),
            ca_pem: None,
            use_system_ca: true,
            subject_alt_names: vec!["be.example".into()],
            client_certificate: None,
        };
        for metadata in [None, metadata::infrastructure(&infra)] {
            let packer = Packer::new(metadata.clone());
            for protocol in PROTOCOLS {
                for discovery in [
                    Discovery::Eds(endpoints.clone()),
                    Discovery::Dns(endpoints.clone()),
                ] {
                    for tls in [None, Some(tls.clone())] {
                        // Names past one length byte, and none.
                        for name in ["", "httproute/ns/r/rule/0", &"x".repeat(300)] {
                            let c = IrCluster {
                                name: name.into(),
                                protocol,
                                discovery: discovery.clone(),
                                tls: tls.clone(),
                                origins: Vec::new(),
                            };
                            let packed = packer.pack(&c);
                            let whole = render::pack(&*cluster(&c, metadata.clone()));
                            assert_eq!(*packed.any(), whole, "{name} {protocol:?}");
                            assert_eq!(packed.name(), name);
                        }
                    }
                }
            }
        }
    }
}
