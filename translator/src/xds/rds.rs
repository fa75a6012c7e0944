//! RDS assembly: one route configuration per HTTP port, one per HTTPS filter chain; one
//! virtual host per Gateway listener. Route protos come from `route::route`; `RdsMemo` keeps
//! each virtual host's protos between calls so that only changed routes are built again.

use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteConfiguration, RouteMatch, VirtualHost, route, route_match,
};
use envoy_types::pb::google::protobuf::BoolValue;

use crate::ir::{self, Port, PortProtocol, TlsChain};
use crate::render::reuse_by_ptr;
use crate::xds::route_config::{RouteConfig, RouteProto, VirtualHostParts};

fn config(name: String, virtual_hosts: Vec<VirtualHostParts>) -> RouteConfig {
    RouteConfig::new(
        RouteConfiguration {
            name,
            // Invalid backends' shares point at a cluster that does not exist, on purpose.
            validate_clusters: Some(BoolValue { value: false }),
            ignore_port_in_host_matching: true,
            ..Default::default()
        },
        virtual_hosts,
    )
}

/// The route configuration an HTTPS filter chain uses.
pub fn chain_route_name(port: &Port, chain: &TlsChain) -> String {
    format!("{}/{}", port.name, chain.listener)
}

/// HTTP ports: one route configuration. HTTPS ports: one per filter chain (Gateway listener),
/// holding that listener's routes and answering 421 for hosts that belong to another listener
/// of the port (or, for a listener with a hostname, to any other host): a connection whose SNI
/// chose one listener must not be used for another's hostname.
pub fn route_configurations(port: &Port, mut memo: Option<&mut RdsMemo>) -> Vec<RouteConfig> {
    if port.protocol == PortProtocol::Http {
        return vec![config(
            port.name.clone(),
            port.virtual_hosts
                .iter()
                .map(|vh| virtual_host(vh, memo.as_deref_mut()))
                .collect(),
        )];
    }
    port.tls_chains
        .iter()
        .filter(|c| c.http)
        .map(|chain| {
            let mut vhosts = Vec::new();
            if let Some(own) = port.virtual_hosts.iter().find(|v| v.name == chain.listener) {
                vhosts.push(virtual_host(own, memo.as_deref_mut()));
            }
            for other in port
                .virtual_hosts
                .iter()
                .filter(|v| v.name != chain.listener)
            {
                vhosts.extend(
                    other
                        .domains
                        .iter()
                        .filter(|d| *d != "*")
                        .map(|d| misdirected(d)),
                );
            }
            if chain.hostname.is_some() {
                vhosts.push(misdirected("*"));
            }
            config(chain_route_name(port, chain), vhosts)
        })
        .collect()
}

fn misdirected(domain: &str) -> VirtualHostParts {
    let route = Route {
        name: "misdirected".into(),
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        action: Some(route::Action::DirectResponse(DirectResponseAction {
            status: 421,
            ..Default::default()
        })),
        ..Default::default()
    };
    VirtualHostParts {
        head: VirtualHost {
            name: format!("misdirected:{domain}"),
            domains: vec![domain.to_string()],
            ..Default::default()
        },
        routes: Arc::new(vec![Arc::new(RouteProto::new(route))]),
    }
}

/// Each virtual host's routes (IR, shared list) and their protos as the last call built
/// them, by virtual host name. A list that is the same `Arc` reuses its protos whole; a new
/// list is walked beside the old one, reusing the proto of every route that is the same
/// `Arc` (a changed route is a new `Arc`); only the others are built and encoded.
#[derive(Default)]
pub struct RdsMemo {
    hosts: HashMap<String, Host>,
    stamp: u64,
}

struct Host {
    routes: Arc<Vec<Arc<ir::Route>>>,
    protos: Arc<Vec<Arc<RouteProto>>>,
    /// The call that last used the entry.
    stamp: u64,
}

impl RdsMemo {
    /// Ends a call: virtual hosts this call did not build are forgotten.
    pub fn end(&mut self) {
        let stamp = self.stamp;
        self.hosts.retain(|_, h| h.stamp == stamp);
        self.stamp += 1;
    }

    fn protos(&mut self, vh: &ir::VirtualHost) -> Arc<Vec<Arc<RouteProto>>> {
        let stamp = self.stamp;
        if let Some(h) = self.hosts.get_mut(&vh.name) {
            if Arc::ptr_eq(&h.routes, &vh.routes) {
                h.stamp = stamp;
                return h.protos.clone();
            }
            let protos = Arc::new(reuse_by_ptr(&h.routes, &h.protos, &vh.routes, |r| {
                Arc::new(RouteProto::new(super::route::route(r)))
            }));
            *h = Host {
                routes: vh.routes.clone(),
                protos: protos.clone(),
                stamp,
            };
            return protos;
        }
        let protos = Arc::new(build_protos(&vh.routes));
        let host = Host {
            routes: vh.routes.clone(),
            protos: protos.clone(),
            stamp,
        };
        self.hosts.insert(vh.name.clone(), host);
        protos
    }
}

fn build_protos(routes: &[Arc<ir::Route>]) -> Vec<Arc<RouteProto>> {
    crate::par::map(routes, |r| {
        Arc::new(RouteProto::new(super::route::route(r)))
    })
}

fn virtual_host(vh: &ir::VirtualHost, memo: Option<&mut RdsMemo>) -> VirtualHostParts {
    let routes = match memo {
        Some(m) => m.protos(vh),
        None => Arc::new(build_protos(&vh.routes)),
    };
    VirtualHostParts {
        head: VirtualHost {
            name: vh.name.clone(),
            domains: vh.domains.clone(),
            ..Default::default()
        },
        routes,
    }
}
