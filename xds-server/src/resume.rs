//! Reconnects: a client that already holds the current version of a type when it opens a new
//! stream is not sent that type again (SotW: by the first request's `version_info`; delta: by
//! `initial_resource_versions`), and shows as SYNCED.

use tracing::debug;

use crate::state::{Protocol, StreamState};
use crate::status::XdsEventKind;
use crate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET};

impl StreamState {
    /// Records that the client holds the current version of a type without having been sent
    /// it on this stream: statuses say SYNCED, and only later changes are pushed.
    pub(crate) fn resume(&mut self, type_url: &str) {
        let version = self.view.version(type_url);
        let Some(ts) = self.types.get_mut(type_url) else {
            return;
        };
        ts.touch();
        ts.sent_version = Some(version.clone());
        ts.acked_version = Some(version.clone());
        ts.last_nack = None;
        ts.force.clear();
        ts.must_respond = false;
        ts.resumed = true;
        debug!(type_url, %version, "client already holds the current version");
        self.event(XdsEventKind::Acked, type_url, &version, None);
    }

    /// SotW, first request of a type on this stream: whether `version_info` shows that the
    /// client holds exactly what it would be sent. If so, records it as held.
    ///
    /// Versions are per type, so a matching version proves the content of every resource the
    /// client was sent, but not that it was sent every name it now asks for. LDS and CDS carry
    /// the full set, so for them the version is enough. EDS, RDS and SDS answers are what
    /// warming clusters and listeners wait for; skipping one would leave them waiting for the
    /// initial fetch timeout. So these are resumed only on ADS, after the parent types were
    /// resumed on this stream with nothing pushed since (Envoy holds back its CDS request while
    /// clusters warm, so a resumed CDS means no cluster is waiting), and only for names those
    /// parents reference.
    pub(crate) fn sotw_resume<P: Protocol>(&mut self, type_url: &str, version_info: &str) -> bool {
        if version_info.is_empty() || version_info != self.view.version(type_url) {
            return false;
        }
        let Some(ts) = self.types.get(type_url) else {
            return false;
        };
        if ts.sent_version.is_some() || ts.in_flight.is_some() {
            return false;
        }
        if ts
            .names
            .iter()
            .any(|n| self.view.get(type_url, n).is_none())
        {
            return false;
        }
        let parents: &[&str] = match type_url {
            CLUSTER | LISTENER => &[],
            ENDPOINT => &[CLUSTER],
            ROUTE => &[LISTENER],
            SECRET => &[CLUSTER, LISTENER],
            _ => return false,
        };
        if !parents.is_empty() && !self.variant.is_ads() {
            return false;
        }
        let parents_resumed = parents.iter().all(|p| {
            self.types.get(*p).is_some_and(|pts| {
                pts.resumed && pts.in_flight.is_none() && !P::has_work(&self.view, p, pts)
            })
        });
        if !parents_resumed {
            return false;
        }
        // EDS and RDS names must be ones the held clusters and listeners use (a wildcard
        // subscription to these types is not something Envoy does; treat it as not covered).
        if matches!(type_url, ENDPOINT | ROUTE) {
            if ts.wildcard {
                return false;
            }
            let referenced = |name: &String| {
                parents.iter().any(|p| {
                    self.view
                        .resources(p)
                        .iter()
                        .any(|r| r.children.contains(name))
                })
            };
            if !ts.names.iter().all(referenced) {
                return false;
            }
        }
        self.resume(type_url);
        let view = &self.view;
        if let Some(ts) = self.types.get_mut(type_url) {
            // Nothing is sent: an empty LDS/CDS response would delete everything, and Envoy
            // ignores an empty EDS/RDS one (it reaches no watch), so neither would help.
            let desired = ts.desired(view, type_url);
            ts.held.assign(&desired, view.snapshot.type_map(type_url));
            ts.touch();
        }
        true
    }
}
