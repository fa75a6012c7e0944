//! Manual sanity check against a real Envoy: serves one fleet ("default/gw") whose listener
//! answers with a direct response, then changes the body every few seconds (replacing the
//! cluster too, to exercise make-before-break) and prints every ACK/NACK.
//!
//! cargo run -p portico-xds --example sanity -- <xds-port> <listener-port>

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ConfigSource, config_source,
};
use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteConfiguration, RouteMatch, VirtualHost, route, route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager::RouteSpecifier, http_filter,
};
use portico_xds::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use portico_xds::{Any, Cache, CacheConfig, Server, Snapshot};
use prost::Name;

fn any<M: Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: 2, // V3
        ..Default::default()
    }
}

fn addr(port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: "127.0.0.1".into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

fn snapshot(listen: u32, n: u32) -> Snapshot {
    let cluster_name = format!("backend-{}", n % 2);
    let mut s = Snapshot::new();
    s.insert(
        CLUSTER,
        &cluster_name,
        any(&Cluster {
            name: cluster_name.clone(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            )),
            eds_cluster_config: Some(cluster::EdsClusterConfig {
                eds_config: Some(ads()),
                ..Default::default()
            }),
            ..Default::default()
        }),
    );
    s.insert(
        ENDPOINT,
        &cluster_name,
        any(&ClusterLoadAssignment {
            cluster_name: cluster_name.clone(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(addr(9)),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
    );
    let direct = Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        action: Some(route::Action::DirectResponse(DirectResponseAction {
            status: 200,
            body: Some(DataSource {
                specifier: Some(data_source::Specifier::InlineString(format!(
                    "hello {n} via {cluster_name}\n"
                ))),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    };
    let to_cluster = Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/backend".into())),
            ..Default::default()
        }),
        action: Some(route::Action::Route(envoy_types::pb::envoy::config::route::v3::RouteAction {
            cluster_specifier: Some(
                envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier::Cluster(
                    cluster_name.clone(),
                ),
            ),
            ..Default::default()
        })),
        ..Default::default()
    };
    s.insert(
        ROUTE,
        "r1",
        any(&RouteConfiguration {
            name: "r1".into(),
            virtual_hosts: vec![VirtualHost {
                name: "all".into(),
                domains: vec!["*".into()],
                routes: vec![to_cluster, direct],
                ..Default::default()
            }],
            ..Default::default()
        }),
    );
    let hcm = HttpConnectionManager {
        stat_prefix: "http".into(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: "r1".into(),
        })),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(
                any(&Router::default()),
            )),
            ..Default::default()
        }],
        ..Default::default()
    };
    s.insert(
        LISTENER,
        "http",
        any(&Listener {
            name: "http".into(),
            address: Some(addr(listen)),
            filter_chains: vec![FilterChain {
                filters: vec![Filter {
                    name: "envoy.filters.network.http_connection_manager".into(),
                    config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
    );
    s
}

#[tokio::main]
async fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (xds, listen) = match args[..] {
        [xds, listen] => (xds, listen),
        _ => {
            eprintln!("usage: sanity <xds-port> <listener-port>");
            std::process::exit(64);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let cache = Cache::new(CacheConfig::default());
    cache.set_snapshot("default/gw", snapshot(listen, 0));
    let mut events = cache.subscribe();
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            println!(
                "event {:?} node={} type={} version={} {}",
                e.kind, e.node_id, e.type_url, e.version, e.message
            );
        }
    });
    let updates = cache.clone();
    tokio::spawn(async move {
        for n in 1.. {
            tokio::time::sleep(Duration::from_secs(3)).await;
            updates.set_snapshot("default/gw", snapshot(listen, n));
            println!("published snapshot {n}");
        }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", xds as u16))
        .await
        .unwrap();
    Server::new(cache)
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .unwrap();
}
