//! One xDS stream's task: reads requests, follows the fleet's snapshots, and sends responses
//! when the client can take them.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tonic::Status;
use tracing::{Instrument, debug, info};

use crate::cache::{Cache, lock};
use crate::requests::Requests;
use crate::shared::Outgoing;
use crate::state::{Protocol, StreamState};
use crate::status::{Variant, XdsEvent, XdsEventKind};

/// Ends when the server shuts down; never, if nobody can shut it down.
pub(crate) async fn shutdown_signal(mut rx: watch::Receiver<bool>) {
    if rx.wait_for(|down| *down).await.is_err() {
        std::future::pending::<()>().await;
    }
}

type Tx = mpsc::Sender<Result<Outgoing, Status>>;

/// Serves one stream until the client leaves or the server shuts down.
pub(crate) async fn run<P: Protocol>(
    cache: Cache,
    shutdown: watch::Receiver<bool>,
    variant: Variant,
    fixed_type: Option<&'static str>,
    mut requests: Requests<P::Request>,
    tx: Tx,
) {
    let shutdown = shutdown_signal(shutdown);
    tokio::pin!(shutdown);
    let first = tokio::select! {
        _ = &mut shutdown => return,
        first = requests.message() => first,
    };
    let mut first = match first {
        Ok(Some(first)) => first,
        Ok(None) => return,
        Err(status) => {
            debug!(%status, "stream failed before its first request");
            return;
        }
    };
    if let Err(status) = check_type::<P>(&mut first, fixed_type) {
        let _ = tx.send(Err(status)).await;
        return;
    }
    let Some(node) = P::node(&first).cloned() else {
        let status = Status::invalid_argument("the first request on a stream must carry node");
        let _ = tx.send(Err(status)).await;
        return;
    };
    let id = cache.next_stream_id();
    let span =
        tracing::info_span!("xds", stream = id, node = %node.id, fleet = %node.cluster, %variant);
    let state = Arc::new(Mutex::new(StreamState::new(
        id,
        node,
        variant,
        cache.clone(),
    )));
    let registration = Registration::new(cache, state.clone());
    serve::<P>(&state, first, requests, tx, fixed_type, shutdown)
        .instrument(span)
        .await;
    drop(registration);
}

async fn serve<P: Protocol>(
    state: &Mutex<StreamState>,
    first: P::Request,
    mut requests: Requests<P::Request>,
    tx: Tx,
    fixed_type: Option<&'static str>,
    mut shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) {
    let mut snapshots = {
        let st = lock(state);
        st.cache.watch(st.fleet())
    };
    info!("xDS stream connected");
    {
        let mut st = lock(state);
        st.switch_snapshot::<P>(snapshots.borrow_and_update().clone());
        P::on_request(&mut st, first);
    }
    loop {
        let next = lock(state).next_type::<P>();
        tokio::select! {
            _ = &mut shutdown => {
                debug!("server shutting down; ending stream");
                break;
            }
            req = requests.message() => match req {
                Ok(Some(mut req)) => {
                    if let Err(status) = check_type::<P>(&mut req, fixed_type) {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                    P::on_request(&mut lock(state), req);
                }
                Ok(None) => break,
                Err(status) => {
                    debug!(%status, "request stream ended");
                    break;
                }
            },
            changed = snapshots.changed() => {
                if changed.is_err() {
                    // The fleet entry went away while we watch it: cannot happen while we hold
                    // a receiver, but end cleanly rather than spin.
                    break;
                }
                let published = snapshots.borrow_and_update().clone();
                lock(state).switch_snapshot::<P>(published);
            }
            permit = tx.reserve(), if next.is_some() => {
                let Ok(permit) = permit else { break };
                let Some(type_url) = next else { continue };
                let response = {
                    let mut st = lock(state);
                    let response = P::build(&mut st, &type_url);
                    if let Ok(out) = &response {
                        st.metrics_sent(&type_url, out.message_len());
                    }
                    response
                };
                permit.send(response);
            }
        }
        lock(state).cleanup::<P>();
    }
    info!("xDS stream closed");
}

fn check_type<P: Protocol>(
    req: &mut P::Request,
    fixed: Option<&'static str>,
) -> Result<(), Status> {
    let type_url = P::type_url_mut(req);
    match fixed {
        Some(fixed) if type_url.is_empty() => {
            *type_url = fixed.to_string();
            Ok(())
        }
        Some(fixed) if type_url != fixed => Err(Status::invalid_argument(format!(
            "type_url {type_url} on the {fixed} service"
        ))),
        None if type_url.is_empty() => Err(Status::invalid_argument("type_url is required on ADS")),
        _ => Ok(()),
    }
}

/// Keeps a stream in the cache's registry, and reports connect/disconnect.
struct Registration {
    cache: Cache,
    id: u64,
    fleet: String,
    node_id: String,
}

impl Registration {
    fn new(cache: Cache, state: Arc<Mutex<StreamState>>) -> Self {
        let (id, fleet, node_id) = {
            let st = lock(&state);
            (st.id, st.fleet().to_string(), st.node_id().to_string())
        };
        cache.register(id, state.clone());
        lock(&state).event(XdsEventKind::Connected, "", "", None);
        Registration {
            cache,
            id,
            fleet,
            node_id,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.cache.deregister(self.id, &self.fleet);
        let _ = self.cache.inner.events.send(XdsEvent {
            kind: XdsEventKind::Disconnected,
            node_id: self.node_id.clone(),
            fleet: self.fleet.clone(),
            type_url: String::new(),
            version: String::new(),
            message: String::new(),
            resource_names: Vec::new(),
        });
    }
}
