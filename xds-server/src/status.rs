//! Public views of connected streams: statuses for the admin API and CSDS, and events.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use crate::Any;
use crate::held::HeldRef;
use crate::state::StreamState;

/// Which xDS transport a stream uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variant {
    /// State of the world over ADS.
    SotwAds,
    /// Incremental over ADS.
    DeltaAds,
    /// State of the world on a per-type service (CDS, LDS, ...).
    SotwPerType,
    /// Incremental on a per-type service.
    DeltaPerType,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::SotwAds => "sotw-ads",
            Variant::DeltaAds => "delta-ads",
            Variant::SotwPerType => "sotw",
            Variant::DeltaPerType => "delta",
        }
    }

    pub fn is_delta(self) -> bool {
        matches!(self, Variant::DeltaAds | Variant::DeltaPerType)
    }

    pub fn is_ads(self) -> bool {
        matches!(self, Variant::SotwAds | Variant::DeltaAds)
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a node is with one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// The node ACKed everything it should have of this type.
    Synced,
    /// Nothing of this type was sent yet, and nothing is waiting to be sent.
    NotSent,
    /// A response is waiting for its ACK, or newer config is waiting to be sent.
    Stale,
    /// The node rejected the last response and keeps its previous config.
    Nacked,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Synced => "SYNCED",
            SyncState::NotSent => "NOT_SENT",
            SyncState::Stale => "STALE",
            SyncState::Nacked => "NACKED",
        }
    }
}

/// A rejected response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nack {
    /// version_info of the rejected response (delta: the system version sent with it).
    pub version: String,
    /// Envoy's error message.
    pub message: String,
    /// Resources the rejection concerns, when the message or the response identifies them.
    pub resource_names: Vec<String>,
    pub at: SystemTime,
}

/// One type URL on one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeStatus {
    /// version_info of the last response sent (delta: its system_version_info).
    pub sent_version: Option<String>,
    pub sent_nonce: Option<String>,
    /// Last version the node ACKed.
    pub acked_version: Option<String>,
    pub state: SyncState,
    /// The most recent NACK; cleared by the next ACK.
    pub last_nack: Option<Nack>,
    /// Names the node subscribes to (`*` for a wildcard).
    pub subscribed: Vec<String>,
}

/// One connected xDS stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// Unique per stream for the life of the process.
    pub stream_id: u64,
    pub node_id: String,
    /// `node.cluster`, i.e. `namespace/gateway`.
    pub fleet: String,
    pub variant: Variant,
    pub connected_since: SystemTime,
    /// By type URL.
    pub types: BTreeMap<String, TypeStatus>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdsEventKind {
    Connected,
    Disconnected,
    Acked,
    Nacked,
}

/// Something a node did, for logs and watchers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdsEvent {
    pub kind: XdsEventKind,
    pub node_id: String,
    pub fleet: String,
    /// Empty for Connected/Disconnected.
    pub type_url: String,
    /// The ACKed or NACKed version; empty for Connected/Disconnected.
    pub version: String,
    /// The NACK's error message; empty otherwise.
    pub message: String,
    /// Nacked: the resources the rejection concerns (as in [`Nack::resource_names`]).
    pub resource_names: Vec<String>,
}

impl StreamState {
    pub(crate) fn status(&self) -> NodeStatus {
        let types = self
            .types
            .iter()
            .map(|(t, ts)| {
                let state = if ts.last_nack.is_some() {
                    SyncState::Nacked
                } else if ts.in_flight.is_some() || self.type_has_work(t, ts) {
                    // Before NOT_SENT: pending work must not hide behind "nothing sent yet".
                    SyncState::Stale
                } else if ts.sent_version.is_none() {
                    SyncState::NotSent
                } else {
                    SyncState::Synced
                };
                let mut subscribed: Vec<String> = ts.names.iter().cloned().collect();
                if ts.wildcard {
                    subscribed.insert(0, "*".to_string());
                }
                let status = TypeStatus {
                    sent_version: ts.sent_version.clone(),
                    sent_nonce: ts.last_nonce.clone(),
                    acked_version: ts.acked_version.clone(),
                    state,
                    last_nack: ts.last_nack.clone(),
                    subscribed,
                };
                (t.clone(), status)
            })
            .collect();
        NodeStatus {
            stream_id: self.id,
            node_id: self.node.id.clone(),
            fleet: self.node.cluster.clone(),
            variant: self.variant,
            connected_since: self.connected_since,
            types,
        }
    }

    /// What the client holds, by type URL and name, where the body is known.
    pub(crate) fn sent_resources(&self) -> BTreeMap<String, BTreeMap<String, Arc<Any>>> {
        let mut out = BTreeMap::new();
        for (t, ts) in &self.types {
            let mut held = BTreeMap::new();
            for (name, h) in ts.held.iter() {
                let HeldRef::Has { version, body } = h else {
                    continue;
                };
                let body = body.cloned().or_else(|| {
                    self.view
                        .get(t, name)
                        .filter(|r| r.version == version)
                        .map(|r| r.body.clone())
                });
                if let Some(body) = body {
                    held.insert(name.to_string(), body);
                }
            }
            if !held.is_empty() {
                out.insert(t.clone(), held);
            }
        }
        out
    }
}
