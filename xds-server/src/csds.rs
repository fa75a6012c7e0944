//! CSDS (envoy.service.status.v3.ClientStatusDiscoveryService): what each connected node was
//! sent and whether it ACKed it.

use std::collections::BTreeMap;
use std::pin::Pin;

use envoy_types::pb::envoy::admin::v3::{ClientResourceStatus, UpdateFailureState};
use envoy_types::pb::envoy::service::status::v3::client_config::GenericXdsConfig;
use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_server::ClientStatusDiscoveryService;
use envoy_types::pb::envoy::service::status::v3::{
    ClientConfig, ClientStatusRequest, ClientStatusResponse, ConfigStatus,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::envoy::r#type::matcher::v3::{NodeMatcher, StringMatcher};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::cache::{Cache, lock};
use crate::held::HeldRef;
use crate::state::StreamState;
use crate::status::SyncState;

#[derive(Clone)]
pub(crate) struct Csds {
    pub(crate) cache: Cache,
}

type CsdsStream = Pin<Box<dyn Stream<Item = Result<ClientStatusResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ClientStatusDiscoveryService for Csds {
    type StreamClientStatusStream = CsdsStream;

    async fn stream_client_status(
        &self,
        req: Request<Streaming<ClientStatusRequest>>,
    ) -> Result<Response<CsdsStream>, Status> {
        let cache = self.cache.clone();
        let responses = req
            .into_inner()
            .map(move |req| req.and_then(|req| client_status(&cache, &req)));
        Ok(Response::new(Box::pin(responses)))
    }

    async fn fetch_client_status(
        &self,
        req: Request<ClientStatusRequest>,
    ) -> Result<Response<ClientStatusResponse>, Status> {
        client_status(&self.cache, req.get_ref()).map(Response::new)
    }
}

/// One ClientConfig per matching node id, merged over that node's streams.
pub(crate) fn client_status(
    cache: &Cache,
    req: &ClientStatusRequest,
) -> Result<ClientStatusResponse, Status> {
    let mut configs: BTreeMap<String, ClientConfig> = BTreeMap::new();
    for state in cache.stream_states() {
        let st = lock(&state);
        if !matches_any(&req.node_matchers, st.node_id())? {
            continue;
        }
        let config = configs
            .entry(st.node_id().to_string())
            .or_insert_with(|| ClientConfig {
                node: Some(st.node.clone()),
                ..Default::default()
            });
        config
            .generic_xds_configs
            .extend(generic_configs(&st, !req.exclude_resource_contents));
    }
    Ok(ClientStatusResponse {
        config: configs.into_values().collect(),
    })
}

fn generic_configs(st: &StreamState, contents: bool) -> Vec<GenericXdsConfig> {
    let status = st.status();
    let bodies = if contents {
        st.sent_resources()
    } else {
        BTreeMap::new()
    };
    let mut out = Vec::new();
    for (type_url, ts) in &st.types {
        let Some(type_status) = status.types.get(type_url) else {
            continue;
        };
        let nack = type_status.last_nack.as_ref();
        let mut names: Vec<&str> = ts.held.keys().collect();
        names.extend(
            ts.names
                .iter()
                .map(String::as_str)
                .filter(|n| !ts.held.contains_key(n)),
        );
        for name in names {
            let rejected = nack.is_some_and(|n| n.resource_names.iter().any(|r| r == name));
            let (version, client_status) = match ts.held.get(name) {
                None => (String::new(), ClientResourceStatus::Requested),
                Some(HeldRef::Absent) => (String::new(), ClientResourceStatus::DoesNotExist),
                Some(HeldRef::Has { version, .. }) => {
                    let client = match type_status.state {
                        _ if rejected => ClientResourceStatus::Nacked,
                        SyncState::Synced => ClientResourceStatus::Acked,
                        _ => ClientResourceStatus::Requested,
                    };
                    (version.to_string(), client)
                }
            };
            let config_status = match type_status.state {
                _ if rejected => ConfigStatus::Error,
                SyncState::Synced => ConfigStatus::Synced,
                SyncState::NotSent => ConfigStatus::NotSent,
                SyncState::Stale | SyncState::Nacked => ConfigStatus::Stale,
            };
            out.push(GenericXdsConfig {
                type_url: type_url.clone(),
                name: name.to_string(),
                version_info: version,
                xds_config: bodies
                    .get(type_url)
                    .and_then(|b| b.get(name))
                    .map(|body| (**body).clone()),
                config_status: config_status as i32,
                client_status: client_status as i32,
                error_state: nack.filter(|_| rejected).map(|n| UpdateFailureState {
                    details: n.message.clone(),
                    version_info: n.version.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    out
}

fn matches_any(matchers: &[NodeMatcher], node_id: &str) -> Result<bool, Status> {
    if matchers.is_empty() {
        return Ok(true);
    }
    for m in matchers {
        if !m.node_metadatas.is_empty() {
            return Err(Status::unimplemented(
                "node metadata matchers are not supported",
            ));
        }
        let matched = match &m.node_id {
            None => true,
            Some(s) => string_matches(s, node_id)?,
        };
        if matched {
            return Ok(true);
        }
    }
    Ok(false)
}

fn string_matches(m: &StringMatcher, value: &str) -> Result<bool, Status> {
    let fold = |s: &str| {
        if m.ignore_case {
            s.to_lowercase()
        } else {
            s.to_string()
        }
    };
    let value = fold(value);
    Ok(match &m.match_pattern {
        None => true,
        Some(MatchPattern::Exact(p)) => value == fold(p),
        Some(MatchPattern::Prefix(p)) => value.starts_with(&fold(p)),
        Some(MatchPattern::Suffix(p)) => value.ends_with(&fold(p)),
        Some(MatchPattern::Contains(p)) => value.contains(&fold(p)),
        Some(_) => {
            return Err(Status::unimplemented(
                "only exact/prefix/suffix/contains node id matchers are supported",
            ));
        }
    })
}
