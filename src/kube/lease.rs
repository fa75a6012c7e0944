//! Leader election through a `coordination.k8s.io/v1` Lease: every replica serves xDS, only
//! the leader writes status.
//!
//! The holder renews the Lease every retry period with a resourceVersion-guarded replace;
//! another replica takes over once the record it sees has not changed for the lease
//! duration (measured on its own clock, like client-go, so clock skew does not matter). A
//! leader that stops releases the Lease so a successor takes over at its next retry. A
//! leader that cannot renew for two thirds of the duration steps down on its own.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

impl LeaseConfig {
    /// How often the Lease is read and renewed.
    fn retry_period(&self) -> Duration {
        (self.duration / 3).clamp(Duration::from_millis(200), Duration::from_secs(2))
    }

    /// A leader that could not renew for this long stops acting as one.
    fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }
}

/// What the elector saw of the Lease last time, and since when.
struct Observed {
    record: String,
    since: Instant,
}

/// Runs the election until `stop` turns true; `leader` says whether this replica leads.
pub async fn run(
    api: Api<Lease>,
    config: LeaseConfig,
    leader: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut observed: Option<Observed> = None;
    let mut renewed: Option<Instant> = None;
    loop {
        match attempt(&api, &config, &mut observed).await {
            Ok(true) => {
                renewed = Some(Instant::now());
                set(&leader, true, &config);
            }
            Ok(false) => set(&leader, false, &config),
            Err(err) => {
                tracing::warn!(error = %err, lease = %config.name, "cannot read or renew the leader Lease");
                if *leader.borrow()
                    && renewed.is_none_or(|at| at.elapsed() >= config.renew_deadline())
                {
                    set(&leader, false, &config);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(config.retry_period()) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if *leader.borrow() {
        // Stop writing first, then hand the Lease over.
        set(&leader, false, &config);
        if let Err(err) = release(&api, &config).await {
            tracing::warn!(error = %err, "could not release the leader Lease; a successor waits for it to expire");
        }
    }
}

fn set(leader: &watch::Sender<bool>, now: bool, config: &LeaseConfig) {
    let was = leader.send_replace(now);
    if was != now {
        if now {
            tracing::info!(identity = %config.identity, lease = %config.name, "became the leader: writing status");
        } else {
            tracing::info!(identity = %config.identity, lease = %config.name, "not the leader: serving xDS only");
        }
    }
}

/// One round: create, renew or take over the Lease. Ok(true) when this replica holds it.
async fn attempt(
    api: &Api<Lease>,
    config: &LeaseConfig,
    observed: &mut Option<Observed>,
) -> kube::Result<bool> {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(seconds(config.duration)),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return conflict_is_false(api.create(&PostParams::default(), &lease).await);
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let record = format!(
        "{holder}|{:?}|{}",
        spec.renew_time.as_ref().map(|t| t.0.to_string()),
        lease.metadata.resource_version.as_deref().unwrap_or("")
    );
    if observed.as_ref().is_none_or(|o| o.record != record) {
        *observed = Some(Observed {
            record,
            since: Instant::now(),
        });
    }
    let duration = spec
        .lease_duration_seconds
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s as u64))
        .unwrap_or(config.duration);
    let unchanged_for = observed
        .as_ref()
        .map(|o| o.since.elapsed())
        .unwrap_or_default();
    match decide(&holder, &config.identity, unchanged_for, duration) {
        Step::Wait => Ok(false),
        Step::Renew => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.renew_time = Some(now);
            spec.lease_duration_seconds = Some(seconds(config.duration));
            conflict_is_false(
                api.replace(&config.name, &PostParams::default(), &lease)
                    .await,
            )
        }
        Step::TakeOver => {
            let transitions = spec.lease_transitions.unwrap_or(0);
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = Some(config.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.renew_time = Some(now);
            spec.lease_duration_seconds = Some(seconds(config.duration));
            spec.lease_transitions = Some(transitions + 1);
            let taken = conflict_is_false(
                api.replace(&config.name, &PostParams::default(), &lease)
                    .await,
            )?;
            if taken && !holder.is_empty() {
                tracing::info!(previous = %holder, "the previous leader's Lease expired; taking over");
            }
            Ok(taken)
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Renew,
    TakeOver,
    Wait,
}

/// The election rule, given the holder and how long its record has gone unchanged.
fn decide(holder: &str, me: &str, unchanged_for: Duration, duration: Duration) -> Step {
    if holder == me {
        Step::Renew
    } else if holder.is_empty() || unchanged_for >= duration {
        Step::TakeOver
    } else {
        Step::Wait
    }
}

async fn release(api: &Api<Lease>, config: &LeaseConfig) -> kube::Result<()> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
    spec.lease_duration_seconds = Some(1);
    api.replace(&config.name, &PostParams::default(), &lease)
        .await?;
    tracing::info!(lease = %config.name, "released the leader Lease");
    Ok(())
}

/// Losing a race for the Lease (409) is an ordinary outcome, not an error.
fn conflict_is_false(result: kube::Result<Lease>) -> kube::Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// This replica's name in the Lease: `$POD_NAME`, else host name and process id.
pub fn default_identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.is_empty()
    {
        return pod;
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "portico".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn the_holder_renews_others_wait_for_expiry() {
        assert_eq!(decide("me", "me", Duration::ZERO, D), Step::Renew);
        assert_eq!(decide("other", "me", Duration::from_secs(3), D), Step::Wait);
        assert_eq!(decide("other", "me", D, D), Step::TakeOver);
        assert_eq!(
            decide("", "me", Duration::ZERO, D),
            Step::TakeOver,
            "a released Lease is free at once"
        );
    }

    #[test]
    fn timings_scale_with_the_lease_duration() {
        let config = |secs| LeaseConfig {
            namespace: "n".into(),
            name: "l".into(),
            identity: "i".into(),
            duration: Duration::from_secs(secs),
        };
        assert_eq!(config(15).retry_period(), Duration::from_secs(2));
        assert_eq!(config(3).retry_period(), Duration::from_secs(1));
        assert_eq!(config(15).renew_deadline(), Duration::from_secs(10));
    }
}
