//! xDS server benchmarks (issue #7), without translation or file watching in the way.
//!
//! `snapshot_build/N`: a snapshot of N clusters, N endpoint assignments, one listener and one
//! route configuration with N routes (hashing and reference extraction included).
//! `snapshot_one_change/N`: a copy of that snapshot with the route configuration replaced.
//! `snapshot_rebuild_reusing/N`: a new snapshot of all resources (one route changed) built with
//! `Snapshot::reusing` the previous one (inputs cloned outside the timing).
//! `fanout_sotw/S` and `fanout_delta/S`: S in-process ADS streams hold a 1000-route config;
//! one iteration publishes a changed route configuration and waits until every stream has
//! ACKed it.
//!
//! Run: `cargo bench -p portico-xds --bench fanout`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ConfigSource, Node, config_source,
};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, Rds, http_connection_manager,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use portico_xds::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use portico_xds::{Any, Cache, CacheConfig, Server, Snapshot};
use prost::{Message, Name};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::UnboundedReceiverStream;

const FLEET: &str = "bench/gw";
const ROUTE_CONFIG: &str = "http-10080";

fn pack<T: Message + Name>(m: &T) -> Any {
    Any {
        type_url: T::type_url(),
        value: m.encode_to_vec(),
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

/// (type URL, name, body) of every resource of an N-route fleet; `tag` changes route 0.
fn resources(n: usize, tag: &str) -> Vec<(&'static str, String, Any)> {
    let mut out = Vec::with_capacity(2 * n + 2);
    for i in 0..n {
        let name = format!("backend/bench/be-{i}");
        let c = Cluster {
            name: name.clone(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            )),
            eds_cluster_config: Some(cluster::EdsClusterConfig {
                eds_config: Some(ads()),
                service_name: String::new(),
            }),
            ..Default::default()
        };
        out.push((CLUSTER, name.clone(), pack(&c)));
        let cla = ClusterLoadAssignment {
            cluster_name: name.clone(),
            ..Default::default()
        };
        out.push((ENDPOINT, name, pack(&cla)));
    }
    let routes = (0..n)
        .map(|i| Route {
            name: format!("r-{i}"),
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Prefix(if i == 0 {
                    format!("/r-0-{tag}")
                } else {
                    format!("/r-{i}")
                })),
                ..Default::default()
            }),
            action: Some(route::Action::Route(RouteAction {
                cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(format!(
                    "backend/bench/be-{i}"
                ))),
                ..Default::default()
            })),
            ..Default::default()
        })
        .collect();
    let rc = RouteConfiguration {
        name: ROUTE_CONFIG.into(),
        virtual_hosts: vec![VirtualHost {
            name: "all".into(),
            domains: vec!["*".into()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    };
    out.push((ROUTE, ROUTE_CONFIG.into(), pack(&rc)));
    let hcm = HttpConnectionManager {
        stat_prefix: "http".into(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: ROUTE_CONFIG.into(),
        })),
        ..Default::default()
    };
    let listener = Listener {
        name: ROUTE_CONFIG.into(),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(pack(&hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    out.push((LISTENER, ROUTE_CONFIG.into(), pack(&listener)));
    out
}

fn snapshot_of(resources: &[(&'static str, String, Any)]) -> Snapshot {
    let mut s = Snapshot::new();
    for (t, name, any) in resources {
        s.insert(t, name.clone(), any.clone());
    }
    s
}

fn snapshots(c: &mut Criterion) {
    for n in [100, 1_000, 10_000] {
        let all = resources(n, "a");
        let route = resources(n, "b")
            .into_iter()
            .find(|(t, _, _)| *t == ROUTE)
            .expect("route config");
        let base = snapshot_of(&all);
        let mut group = c.benchmark_group("snapshot");
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(3));
        group.bench_with_input(BenchmarkId::new("snapshot_build", n), &all, |b, all| {
            b.iter(|| {
                let s = snapshot_of(all);
                black_box(s.version(ROUTE))
            })
        });
        // What `portico serve` can do on a change: rebuild from the translation, taking over
        // the previous snapshot's resources where the bytes are the same.
        let changed: Vec<_> = all
            .iter()
            .map(|(t, name, any)| match *t == ROUTE {
                true => route.clone(),
                false => (*t, name.clone(), any.clone()),
            })
            .collect();
        group.bench_with_input(
            BenchmarkId::new("snapshot_rebuild_reusing", n),
            &changed,
            |b, changed| {
                b.iter_batched(
                    || changed.clone(),
                    |changed| {
                        let mut s = Snapshot::reusing(&base);
                        for (t, name, any) in changed {
                            s.insert(t, name, any);
                        }
                        black_box(s.same_content(&base))
                    },
                    criterion::BatchSize::LargeInput,
                )
            },
        );
        group.bench_with_input(
            BenchmarkId::new("snapshot_one_change", n),
            &route,
            |b, (t, name, any)| {
                b.iter(|| {
                    let mut s = base.clone();
                    s.insert(t, name.clone(), any.clone());
                    black_box(s.same_content(&base))
                })
            },
        );
        group.finish();
    }
}

/// A minimal ADS client that knows the names it needs: wildcard CDS and LDS, then every EDS
/// name and the one route configuration; ACKs everything and counts RDS ACKs.
async fn stream(
    mut client: AggregatedDiscoveryServiceClient<tonic::transport::Channel>,
    id: usize,
    n: usize,
    delta: bool,
    acks: Arc<(AtomicUsize, Notify)>,
) {
    let node = Node {
        id: format!("n{id}"),
        cluster: FLEET.into(),
        ..Default::default()
    };
    let eds: Vec<String> = (0..n).map(|i| format!("backend/bench/be-{i}")).collect();
    let wanted = [
        (CLUSTER, vec![]),
        (ENDPOINT, eds),
        (LISTENER, vec![]),
        (ROUTE, vec![ROUTE_CONFIG.to_string()]),
    ];
    if delta {
        let (tx, rx) = mpsc::unbounded_channel();
        for (i, (t, names)) in wanted.into_iter().enumerate() {
            let node = (i == 0).then(|| node.clone());
            let _ = tx.send(DeltaDiscoveryRequest {
                node,
                type_url: t.into(),
                resource_names_subscribe: names,
                ..Default::default()
            });
        }
        let mut rx = client
            .delta_aggregated_resources(UnboundedReceiverStream::new(rx))
            .await
            .expect("stream")
            .into_inner();
        while let Ok(Some(r)) = rx.message().await {
            let _ = tx.send(DeltaDiscoveryRequest {
                type_url: r.type_url.clone(),
                response_nonce: r.nonce,
                ..Default::default()
            });
            if r.type_url == ROUTE {
                acks.0.fetch_add(1, Ordering::SeqCst);
                acks.1.notify_waiters();
            }
        }
    } else {
        let (tx, rx) = mpsc::unbounded_channel();
        for (i, (t, names)) in wanted.iter().enumerate() {
            let node = (i == 0).then(|| node.clone());
            let _ = tx.send(DiscoveryRequest {
                node,
                type_url: (*t).into(),
                resource_names: names.clone(),
                ..Default::default()
            });
        }
        let mut rx = client
            .stream_aggregated_resources(UnboundedReceiverStream::new(rx))
            .await
            .expect("stream")
            .into_inner();
        while let Ok(Some(r)) = rx.message().await {
            let names = wanted
                .iter()
                .find(|(t, _)| *t == r.type_url)
                .map(|(_, n)| n.clone())
                .unwrap_or_default();
            let _ = tx.send(DiscoveryRequest {
                version_info: r.version_info,
                response_nonce: r.nonce,
                type_url: r.type_url.clone(),
                resource_names: names,
                ..Default::default()
            });
            if r.type_url == ROUTE {
                acks.0.fetch_add(1, Ordering::SeqCst);
                acks.1.notify_waiters();
            }
        }
    }
}

/// Waits until `target` RDS ACKs were counted; panics after a minute (a stream died).
async fn wait_acks(acks: &(AtomicUsize, Notify), target: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let notified = acks.1.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let count = acks.0.load(Ordering::SeqCst);
        if count >= target {
            return;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            panic!("only {count} of {target} RDS ACKs after a minute");
        }
    }
}

fn fanout(c: &mut Criterion) {
    let routes = 1_000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let configs = [
        snapshot_of(&resources(routes, "a")),
        snapshot_of(&resources(routes, "b")),
    ];
    // Criterion's name filter, if any: setting up a thousand streams is skipped for benches
    // that will not run.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    for delta in [false, true] {
        for streams in [100, 1_000] {
            let name = if delta { "fanout_delta" } else { "fanout_sotw" };
            let id = format!("fanout/{name}/{streams}");
            if filter.as_ref().is_some_and(|f| !id.contains(f.as_str())) {
                continue;
            }
            let cache = Cache::new(CacheConfig {
                debounce: Duration::ZERO,
                max_delay: Duration::ZERO,
            });
            cache.set_snapshot(FLEET, configs[0].clone());
            let acks = Arc::new((AtomicUsize::new(0), Notify::new()));
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let addr = listener.local_addr().expect("addr");
                tokio::spawn(Server::new(cache.clone()).serve(listener, std::future::pending()));
                // Connected one after the other: a burst of a thousand connects overflows the
                // accept backlog.
                for id in 0..streams {
                    let client =
                        AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
                            .await
                            .expect("connect")
                            .max_decoding_message_size(64 << 20);
                    tokio::spawn(stream(client, id, routes, delta, acks.clone()));
                }
                wait_acks(&acks, streams).await;
            });
            let mut flip = 0;
            let mut group = c.benchmark_group("fanout");
            group
                .sample_size(10)
                .measurement_time(Duration::from_secs(5));
            group.bench_function(BenchmarkId::new(name, streams), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        flip ^= 1;
                        let target = acks.0.load(Ordering::SeqCst) + streams;
                        let started = Instant::now();
                        cache.set_snapshot(FLEET, configs[flip].clone());
                        runtime.block_on(wait_acks(&acks, target));
                        total += started.elapsed();
                    }
                    total
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, snapshots, fanout);
criterion_main!(benches);
