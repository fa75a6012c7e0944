//! Traffic-split checks: many requests (or TCP connections), counted per answering
//! Deployment, compared with the configured weights.

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;

use crate::harness::http::{HttpRequest, send};
use crate::harness::tcp::tcp_probe;

use super::case::TrafficCase;
use super::l4;
use super::traffic::{REQUEST_TIMEOUT, TrafficContext};

/// Upstream sends 500 requests per traffic-split batch, 10 at a time.
const WEIGHT_REQUESTS: usize = 500;
const WEIGHT_CONCURRENCY: usize = 10;
const WEIGHT_BATCHES: usize = 3;
const WEIGHT_TOLERANCE: f64 = 5.0;

impl TrafficContext<'_> {
    /// Sends batches until one splits as `weights` say (upstream retries batches too).
    pub(super) async fn check_weights(
        &self,
        case: &TrafficCase,
        gateway: &str,
        port: u16,
        weights: &BTreeMap<String, u32>,
    ) -> Result<(), String> {
        let addr = self.gateway_addr(gateway, port).await?;
        let total_weight: u32 = weights.values().sum();
        let mut last = String::new();
        let l4 = ["TCP", "TLS"]
            .iter()
            .any(|p| case.request.protocol.eq_ignore_ascii_case(p));
        let tls = l4::tls_options(case, addr, &self.trusted_cert_pem);
        for _ in 0..WEIGHT_BATCHES {
            let request = HttpRequest {
                method: "GET".into(),
                path: case.request.path.clone(),
                host: case.request.host.clone(),
                headers: Vec::new(),
                http2: false,
                tls: None,
            };
            let answers: Vec<Option<String>> = futures::stream::iter(0..WEIGHT_REQUESTS)
                .map(|_| {
                    let request = request.clone();
                    let tls = tls.clone();
                    async move {
                        if l4 {
                            let probe =
                                tcp_probe(addr, tls.as_ref(), REQUEST_TIMEOUT).await.ok()?;
                            return Some(probe.assertions.pod);
                        }
                        let response = send(addr, &request, REQUEST_TIMEOUT).await.ok()?;
                        response.echo().map(|e| e.pod)
                    }
                })
                .buffer_unordered(WEIGHT_CONCURRENCY)
                .collect()
                .await;
            let mut counts: HashMap<String, usize> = HashMap::new();
            for answer in &answers {
                let key = match answer {
                    Some(pod) => self.backends.deployment_of(pod).unwrap_or(pod).to_string(),
                    None => "<no echo>".to_string(),
                };
                *counts.entry(key).or_default() += 1;
            }
            match judge_weights(&counts, weights, total_weight) {
                Ok(()) => return Ok(()),
                Err(err) => last = err,
            }
        }
        Err(last)
    }
}

/// Percentages within tolerance, nothing for weight 0, nothing from unnamed backends.
fn judge_weights(
    counts: &HashMap<String, usize>,
    weights: &BTreeMap<String, u32>,
    total_weight: u32,
) -> Result<(), String> {
    let total: usize = counts.values().sum();
    let mut sorted: Vec<_> = counts.iter().collect();
    sorted.sort();
    for (backend, _) in &sorted {
        if !weights.contains_key(backend.as_str()) {
            return Err(format!(
                "traffic split {sorted:?}: {backend} is not a weighted backend"
            ));
        }
    }
    for (backend, weight) in weights {
        let got = counts.get(backend).copied().unwrap_or(0);
        let percent = 100.0 * got as f64 / total.max(1) as f64;
        let want = 100.0 * f64::from(*weight) / f64::from(total_weight.max(1));
        if (*weight == 0 && got > 0) || (percent - want).abs() > WEIGHT_TOLERANCE {
            return Err(format!(
                "traffic split {sorted:?} of {total}: {backend} got {percent:.1}%, want {want:.1}%"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_weights_with_tolerance() {
        let weights: BTreeMap<String, u32> = [
            ("a".to_string(), 70),
            ("b".to_string(), 30),
            ("c".to_string(), 0),
        ]
        .into();
        let counts = |a, b, c| -> HashMap<String, usize> {
            [
                ("a".to_string(), a),
                ("b".to_string(), b),
                ("c".to_string(), c),
            ]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect()
        };
        assert!(judge_weights(&counts(345, 155, 0), &weights, 100).is_ok());
        assert!(judge_weights(&counts(300, 200, 0), &weights, 100).is_err());
        assert!(judge_weights(&counts(349, 150, 1), &weights, 100).is_err());
    }
}
