//! LDS: one listener per port, HTTP connection manager with RDS over ADS, SNI filter chains for
//! HTTPS/TLS, TCP proxy for TCP and TLS routes.

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use envoy_types::pb::envoy::config::core::v3::{TransportSocket, transport_socket};
use envoy_types::pb::envoy::config::listener::v3::{
    AdditionalAddress, Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, filter,
    listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig,
    TlsParameters, certificate_validation_context, common_tls_context, tls_parameters,
};
use envoy_types::pb::google::protobuf::BoolValue;

use envoy_types::pb::envoy::config::listener::v3::UdpListenerConfig;
use envoy_types::pb::envoy::extensions::filters::udp::udp_proxy::v3::{
    Route as UdpRoute, UdpProxyConfig, udp_proxy_config,
};
use envoy_types::pb::xds::core::v3::TypedExtensionConfig as XdsTypedExtensionConfig;
use envoy_types::pb::xds::r#type::matcher::v3::{Matcher, matcher};

use crate::ir::{Port, PortProtocol, StreamRoute, TlsChain, TlsParams, TlsVersion};
use crate::xds::{INVALID_CLUSTER, ads, any, socket};

pub fn listener(port: &Port, addresses: &[String]) -> Listener {
    let primary = addresses.first().map(String::as_str).unwrap_or("0.0.0.0");
    let udp = port.protocol == PortProtocol::Udp;
    let mut l = Listener {
        name: port.name.clone(),
        address: Some(socket(primary, port.port, udp)),
        additional_addresses: addresses
            .iter()
            .skip(1)
            .map(|a| AdditionalAddress {
                address: Some(socket(a, port.port, udp)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    match port.protocol {
        PortProtocol::Http => l.filter_chains.push(FilterChain {
            filters: vec![hcm(&port.name, &port.name)],
            ..Default::default()
        }),
        PortProtocol::Https | PortProtocol::Tls => {
            l.listener_filters.push(ListenerFilter {
                name: "envoy.filters.listener.tls_inspector".into(),
                config_type: Some(listener_filter::ConfigType::TypedConfig(any(
                    &TlsInspector::default(),
                ))),
                ..Default::default()
            });
            for chain in &port.tls_chains {
                l.filter_chains.push(tls_chain(port, chain));
            }
        }
        PortProtocol::Tcp => {
            let route = port.stream.clone().unwrap_or(StreamRoute {
                backends: Vec::new(),
            });
            l.filter_chains.push(FilterChain {
                filters: vec![tcp_proxy(&port.name, &route)],
                ..Default::default()
            });
        }
        PortProtocol::Udp => {
            l.udp_listener_config = Some(UdpListenerConfig::default());
            if let Some(cluster) = port.stream.as_ref().and_then(udp_target) {
                l.listener_filters.push(ListenerFilter {
                    name: "envoy.filters.udp_listener.udp_proxy".into(),
                    config_type: Some(listener_filter::ConfigType::TypedConfig(any(&udp_proxy(
                        &port.name, &cluster,
                    )))),
                    ..Default::default()
                });
            }
        }
    }
    l
}

fn tls_chain(port: &Port, chain: &TlsChain) -> FilterChain {
    let stat_prefix = port.name.as_str();
    let filter = if chain.http {
        hcm(stat_prefix, &crate::xds::rds::chain_route_name(port, chain))
    } else {
        tcp_proxy(
            stat_prefix,
            chain.stream.as_ref().unwrap_or(&StreamRoute {
                backends: Vec::new(),
            }),
        )
    };
    let transport_socket = (!chain.certificates.is_empty()).then(|| {
        let ctx = DownstreamTlsContext {
            common_tls_context: Some(CommonTlsContext {
                tls_certificate_sds_secret_configs: chain
                    .certificates
                    .iter()
                    .map(|name| SdsSecretConfig {
                        name: name.clone(),
                        sds_config: Some(ads()),
                    })
                    .collect(),
                validation_context_type: chain.client_validation.as_ref().map(|v| {
                    common_tls_context::ValidationContextType::ValidationContext(CertificateValidationContext {
                        trusted_ca: Some(DataSource {
                            specifier: Some(data_source::Specifier::InlineString(v.ca_pem.clone())),
                            ..Default::default()
                        }),
                        // AllowInsecureFallback: still ask for a certificate, accept any or none.
                        trust_chain_verification: if v.allow_insecure {
                            certificate_validation_context::TrustChainVerification::AcceptUntrusted as i32
                        } else {
                            0
                        },
                        ..Default::default()
                    })
                }),
                tls_params: tls_params(&chain.params),
                alpn_protocols: if chain.http {
                    vec!["h2".into(), "http/1.1".into()]
                } else {
                    Vec::new()
                },
                ..Default::default()
            }),
            require_client_certificate: chain
                .client_validation
                .as_ref()
                .map(|v| BoolValue { value: !v.allow_insecure }),
            ..Default::default()
        };
        TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(any(&ctx))),
        }
    });
    FilterChain {
        name: chain.listener.clone(),
        filter_chain_match: chain.hostname.as_ref().map(|h| FilterChainMatch {
            server_names: vec![h.clone()],
            ..Default::default()
        }),
        filters: vec![filter],
        transport_socket,
        ..Default::default()
    }
}

fn hcm(stat_prefix: &str, route_config: &str) -> Filter {
    let hcm = HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route_config.to_string(),
        })),
        http_filters: vec![
            HttpFilter {
                name: "envoy.filters.http.cors".into(),
                config_type: Some(http_filter::ConfigType::TypedConfig(any(&Cors::default()))),
                ..Default::default()
            },
            HttpFilter {
                name: "envoy.filters.http.router".into(),
                config_type: Some(http_filter::ConfigType::TypedConfig(
                    any(&Router::default()),
                )),
                ..Default::default()
            },
        ],
        upgrade_configs: vec![http_connection_manager::UpgradeConfig {
            upgrade_type: "websocket".into(),
            ..Default::default()
        }],
        // The Host header reaches backends as the client sent it (port included); route
        // matching ignores the port (RouteConfiguration.ignore_port_in_host_matching).
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.http_connection_manager".into(),
        config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
    }
}

fn tcp_proxy(stat_prefix: &str, route: &StreamRoute) -> Filter {
    let valid: Vec<_> = route.backends.iter().filter(|b| b.weight > 0).collect();
    let specifier = match valid.as_slice() {
        [] => tcp_proxy::ClusterSpecifier::Cluster(INVALID_CLUSTER.into()),
        [one] => tcp_proxy::ClusterSpecifier::Cluster(
            one.cluster
                .clone()
                .unwrap_or_else(|| INVALID_CLUSTER.into()),
        ),
        many => tcp_proxy::ClusterSpecifier::WeightedClusters(tcp_proxy::WeightedCluster {
            clusters: many
                .iter()
                .map(|b| tcp_proxy::weighted_cluster::ClusterWeight {
                    name: b.cluster.clone().unwrap_or_else(|| INVALID_CLUSTER.into()),
                    weight: b.weight,
                    ..Default::default()
                })
                .collect(),
        }),
    };
    let proxy = TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(specifier),
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.tcp_proxy".into(),
        config_type: Some(filter::ConfigType::TypedConfig(any(&proxy))),
    }
}

/// UDP proxying sends each session to one cluster: the heaviest valid backend (the UDP proxy's
/// route action has no weights).
fn udp_target(route: &StreamRoute) -> Option<String> {
    route
        .backends
        .iter()
        .filter(|b| b.weight > 0)
        .max_by_key(|b| b.weight)
        .and_then(|b| b.cluster.clone())
}

fn udp_proxy(stat_prefix: &str, cluster: &str) -> UdpProxyConfig {
    let route = UdpRoute {
        cluster: cluster.to_string(),
    };
    let action = XdsTypedExtensionConfig {
        name: "route".into(),
        typed_config: Some(any(&route)),
    };
    UdpProxyConfig {
        stat_prefix: stat_prefix.to_string(),
        route_specifier: Some(udp_proxy_config::RouteSpecifier::Matcher(Matcher {
            on_no_match: Some(Box::new(matcher::OnMatch {
                on_match: Some(matcher::on_match::OnMatch::Action(action)),
                ..Default::default()
            })),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Listener tls.options as Envoy's TlsParameters; None keeps Envoy's defaults.
fn tls_params(p: &TlsParams) -> Option<TlsParameters> {
    if *p == TlsParams::default() {
        return None;
    }
    let version = |v: Option<TlsVersion>| {
        v.map_or(tls_parameters::TlsProtocol::TlsAuto, |v| match v {
            TlsVersion::V1_0 => tls_parameters::TlsProtocol::TlSv10,
            TlsVersion::V1_1 => tls_parameters::TlsProtocol::TlSv11,
            TlsVersion::V1_2 => tls_parameters::TlsProtocol::TlSv12,
            TlsVersion::V1_3 => tls_parameters::TlsProtocol::TlSv13,
        }) as i32
    };
    Some(TlsParameters {
        tls_minimum_protocol_version: version(p.min_version),
        tls_maximum_protocol_version: version(p.max_version),
        cipher_suites: p.cipher_suites.clone(),
        ..Default::default()
    })
}
