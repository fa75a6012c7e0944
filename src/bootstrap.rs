//! `portico bootstrap`: an Envoy bootstrap that points Envoy at Portico over ADS.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::cli::BootstrapArgs;

/// Name of the static cluster through which Envoy reaches Portico.
const XDS_CLUSTER: &str = "portico-xds";

pub fn run(args: &BootstrapArgs) -> anyhow::Result<ExitCode> {
    print!("{}", render(args)?);
    Ok(ExitCode::SUCCESS)
}

pub fn render(args: &BootstrapArgs) -> anyhow::Result<String> {
    let value = bootstrap(args)?;
    Ok(serde_yaml::to_string(&value)?)
}

fn bootstrap(args: &BootstrapArgs) -> anyhow::Result<Value> {
    let (ns, name) = split_gateway(&args.gateway)?;
    let (host, port) = split_host_port(&args.xds_address)?;
    let node_id = args
        .node_id
        .clone()
        .unwrap_or_else(|| format!("{ns}.{name}.{}", hostname()));
    // An IP needs no resolver; a host name is resolved by Envoy and re-resolved on reconnect.
    let discovery = if host.parse::<IpAddr>().is_ok() {
        "STATIC"
    } else {
        "LOGICAL_DNS"
    };
    let config_source = json!({"ads": {}, "resource_api_version": "V3"});
    Ok(json!({
        "node": {"id": node_id, "cluster": format!("{ns}/{name}")},
        "dynamic_resources": {
            "ads_config": {
                "api_type": if args.delta { "DELTA_GRPC" } else { "GRPC" },
                "transport_api_version": "V3",
                "set_node_on_first_message_only": true,
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
            },
            "cds_config": config_source,
            "lds_config": config_source,
        },
        "static_resources": {"clusters": [{
            "name": XDS_CLUSTER,
            "type": discovery,
            "connect_timeout": "1s",
            "load_assignment": {"cluster_name": XDS_CLUSTER, "endpoints": [{"lb_endpoints": [{
                "endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}
            }]}]},
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {
                        // Detects a dead control plane connection instead of waiting on TCP.
                        "connection_keepalive": {"interval": "30s", "timeout": "5s"}
                    }},
                }
            },
        }]},
        "admin": {"address": {"socket_address": {"address": args.admin_bind.to_string(), "port_value": args.admin_port}}},
    }))
}

pub fn split_gateway(gateway: &str) -> anyhow::Result<(&str, &str)> {
    match gateway.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns, name))
        }
        _ => bail!("--gateway must be NAMESPACE/NAME, got {gateway:?}"),
    }
}

fn split_host_port(address: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = address
        .rsplit_once(':')
        .with_context(|| format!("--xds-address must be HOST:PORT, got {address:?}"))?;
    let port = port
        .parse()
        .with_context(|| format!("bad port in --xds-address {address:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("--xds-address must be HOST:PORT, got {address:?}");
    }
    Ok((host.to_string(), port))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "envoy".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(delta: bool) -> BootstrapArgs {
        BootstrapArgs {
            gateway: "infra/edge".into(),
            node_id: Some("n1".into()),
            xds_address: "127.0.0.1:18000".into(),
            admin_port: 9901,
            admin_bind: std::net::Ipv4Addr::LOCALHOST.into(),
            delta,
        }
    }

    #[test]
    fn node_cluster_is_the_fleet() {
        let v = bootstrap(&args(false)).unwrap();
        assert_eq!(v["node"]["cluster"], "infra/edge");
        assert_eq!(v["node"]["id"], "n1");
        assert_eq!(v["dynamic_resources"]["ads_config"]["api_type"], "GRPC");
    }

    #[test]
    fn delta_selects_delta_grpc_and_hostnames_use_dns() {
        let mut a = args(true);
        a.xds_address = "portico.svc:18000".into();
        let v = bootstrap(&a).unwrap();
        assert_eq!(
            v["dynamic_resources"]["ads_config"]["api_type"],
            "DELTA_GRPC"
        );
        assert_eq!(v["static_resources"]["clusters"][0]["type"], "LOGICAL_DNS");
    }

    #[test]
    fn rejects_bad_gateway_names() {
        for bad in ["edge", "/edge", "infra/", "a/b/c"] {
            let mut a = args(false);
            a.gateway = bad.into();
            assert!(bootstrap(&a).is_err(), "{bad}");
        }
    }
}
