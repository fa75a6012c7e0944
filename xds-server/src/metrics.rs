//! Counters and a histogram, rendered as Prometheus text. Hand-rolled: a handful of series does
//! not justify a metrics crate.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the push-to-ACK latency histogram.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    /// Cumulative counts per bucket bound.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Counters {
    pushes: BTreeMap<String, u64>,
    nacks: BTreeMap<String, u64>,
    bytes: BTreeMap<String, u64>,
    encoded: BTreeMap<String, u64>,
    ack_latency: BTreeMap<String, Histogram>,
}

#[derive(Default)]
pub(crate) struct Metrics {
    counters: Mutex<Counters>,
}

/// `map[key] += n`; allocates the key only the first time (pushes and ACKs count on every
/// stream of every change).
fn add(map: &mut BTreeMap<String, u64>, key: &str, n: u64) {
    match map.get_mut(key) {
        Some(v) => *v += n,
        None => {
            map.insert(key.to_string(), n);
        }
    }
}

impl Metrics {
    pub(crate) fn pushed(&self, type_url: &str, bytes: usize) {
        let mut c = lock(&self.counters);
        add(&mut c.pushes, type_url, 1);
        add(&mut c.bytes, type_url, bytes as u64);
    }

    /// A response body was encoded (rather than reused from another stream's push).
    pub(crate) fn encoded(&self, type_url: &str) {
        *lock(&self.counters)
            .encoded
            .entry(type_url.to_string())
            .or_default() += 1;
    }

    pub(crate) fn nacked(&self, type_url: &str) {
        *lock(&self.counters)
            .nacks
            .entry(type_url.to_string())
            .or_default() += 1;
    }

    pub(crate) fn acked(&self, type_url: &str, latency: Duration) {
        let mut c = lock(&self.counters);
        crate::state::ensure(&mut c.ack_latency, type_url);
        let Some(h) = c.ack_latency.get_mut(type_url) else {
            return;
        };
        let secs = latency.as_secs_f64();
        for (count, bound) in h.buckets.iter_mut().zip(BUCKETS) {
            if secs <= bound {
                *count += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// `streams` is (fleet, variant) -> connected stream count, gathered by the caller.
    pub(crate) fn render(&self, streams: &BTreeMap<(String, String), u64>) -> String {
        let c = lock(&self.counters);
        let mut out = String::new();
        header(
            &mut out,
            "portico_xds_connected_streams",
            "gauge",
            "Connected xDS streams.",
        );
        for ((fleet, variant), n) in streams {
            let _ = writeln!(
                out,
                "portico_xds_connected_streams{{fleet=\"{}\",variant=\"{}\"}} {n}",
                escape(fleet),
                escape(variant)
            );
        }
        counter(
            &mut out,
            "portico_xds_pushes_total",
            "Responses sent.",
            &c.pushes,
        );
        counter(
            &mut out,
            "portico_xds_nacks_total",
            "Responses rejected by clients.",
            &c.nacks,
        );
        counter(
            &mut out,
            "portico_xds_config_bytes_sent_total",
            "Encoded bytes of responses sent.",
            &c.bytes,
        );
        counter(
            &mut out,
            "portico_xds_encoded_responses_total",
            "Response bodies encoded; every other push reused one encoded for another stream.",
            &c.encoded,
        );
        header(
            &mut out,
            "portico_xds_push_ack_seconds",
            "histogram",
            "Time from sending a response to its ACK or NACK.",
        );
        for (type_url, h) in &c.ack_latency {
            let t = escape(short_type(type_url));
            for (count, bound) in h.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "portico_xds_push_ack_seconds_bucket{{type=\"{t}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "portico_xds_push_ack_seconds_bucket{{type=\"{t}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "portico_xds_push_ack_seconds_sum{{type=\"{t}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "portico_xds_push_ack_seconds_count{{type=\"{t}\"}} {}",
                h.count
            );
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, values: &BTreeMap<String, u64>) {
    header(out, name, "counter", help);
    for (type_url, n) in values {
        let _ = writeln!(
            out,
            "{name}{{type=\"{}\"}} {n}",
            escape(short_type(type_url))
        );
    }
}

/// `type.googleapis.com/envoy.config.cluster.v3.Cluster` -> `envoy.config.cluster.v3.Cluster`.
fn short_type(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Metrics must never take the server down: a poisoned lock still holds usable counts.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.pushed(crate::type_url::CLUSTER, 100);
        m.pushed(crate::type_url::CLUSTER, 50);
        m.nacked(crate::type_url::LISTENER);
        m.encoded(crate::type_url::CLUSTER);
        m.acked(crate::type_url::CLUSTER, Duration::from_millis(3));
        let mut streams = BTreeMap::new();
        streams.insert(("default/gw".to_string(), "sotw-ads".to_string()), 2);
        let text = m.render(&streams);
        assert!(text.contains(
            "portico_xds_connected_streams{fleet=\"default/gw\",variant=\"sotw-ads\"} 2"
        ));
        assert!(
            text.contains("portico_xds_pushes_total{type=\"envoy.config.cluster.v3.Cluster\"} 2")
        );
        assert!(text.contains(
            "portico_xds_config_bytes_sent_total{type=\"envoy.config.cluster.v3.Cluster\"} 150"
        ));
        assert!(
            text.contains("portico_xds_nacks_total{type=\"envoy.config.listener.v3.Listener\"} 1")
        );
        assert!(text.contains(
            "portico_xds_encoded_responses_total{type=\"envoy.config.cluster.v3.Cluster\"} 1"
        ));
        assert!(text.contains(
            "portico_xds_push_ack_seconds_bucket{type=\"envoy.config.cluster.v3.Cluster\",le=\"0.0025\"} 0"
        ));
        assert!(text.contains(
            "portico_xds_push_ack_seconds_bucket{type=\"envoy.config.cluster.v3.Cluster\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "portico_xds_push_ack_seconds_count{type=\"envoy.config.cluster.v3.Cluster\"} 1"
        ));
    }
}
