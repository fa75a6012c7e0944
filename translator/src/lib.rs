//! Portico's translator: Gateway API resources -> IR + status (stage one) -> Envoy protos
//! (stage two). Pure: no I/O, no async.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;

pub mod backend_kind;
pub mod changes;
pub mod input;
pub mod ir;
mod objects;
mod par;
pub mod problem;
pub mod render;
pub mod resolve;
pub mod status;
pub mod xds;

pub use backend_kind::Backend;
pub use input::{Document, Object, ObjectKey, Resources, SourceLocation, parse_file};
pub use problem::{Problem, ProblemKind, Severity};
pub use status::{ObjectStatus, status_documents};
pub use xds::origins::Origins;
pub use xds::route_config::RouteConfig;

/// The controllerName of GatewayClasses Portico owns.
pub const CONTROLLER_NAME: &str = "portico.dev/gateway-controller";

/// How translation places Gateways on the host.
#[derive(Default, Clone, Debug)]
pub struct Options {
    /// Where Gateways without spec.addresses bind and what their status reports: each such
    /// Gateway gets a stable address from this pool (hash of namespace/name, probing in a
    /// deterministic order on collision). None => listeners bind 0.0.0.0 and status reports
    /// `default_address` if set.
    pub address_pool: Option<(std::net::Ipv4Addr, u8)>,
    pub default_address: Option<String>,
}

/// What Envoy said about earlier configs.
#[derive(Default, Clone, Debug)]
pub struct Feedback {
    /// fleet "ns/name" -> rejections Envoy reported (NACKs).
    pub rejected: BTreeMap<String, Vec<Rejection>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub type_url: String,
    pub resource_names: Vec<String>,
    pub message: String,
}

#[derive(Clone)]
pub struct Translation {
    /// Stage one output.
    pub ir: ir::Ir,
    /// Every input Gateway API object Portico owns, sorted. Shared: `Translator` returns the
    /// same list again while no status changed.
    pub statuses: Arc<Vec<ObjectStatus>>,
    /// Sorted; invalid or not accepted objects, with source file and line.
    pub problems: Vec<Problem>,
    /// Key "namespace/name" of each Gateway of a Portico GatewayClass.
    pub fleets: BTreeMap<String, FleetConfig>,
}

/// A list of shared resources, itself shared: `Translator` hands out the previous call's
/// list again while every resource in it is the same, so consumers can tell an unchanged
/// list by its pointer (`Arc::ptr_eq`) and an unchanged resource by its own.
pub type Shared<T> = Arc<Vec<Arc<T>>>;

/// One fleet's Envoy resources; each list sorted by name, names unique.
#[derive(Default, Clone, Debug, PartialEq)]
pub struct FleetConfig {
    pub listeners: Shared<Listener>,
    /// Route configurations as shared pieces: `RouteConfig::to_proto` gives the proto,
    /// `RouteConfig::encode` its encoding.
    pub routes: Shared<RouteConfig>,
    /// Clusters and ClusterLoadAssignments, packed where they are built (`render::Packed`).
    pub clusters: Shared<render::Packed<Cluster>>,
    pub endpoints: Shared<render::Packed<ClusterLoadAssignment>>,
    pub secrets: Shared<Secret>,
    /// (type URL, resource name) -> the input objects that produced it. Shared:
    /// `Translator` hands out the previous call's map again while it has not changed.
    pub origins: Arc<Origins>,
}

/// Translates everything: status for every owned object, config for every fleet.
pub fn translate(resources: &Resources, options: &Options, feedback: &Feedback) -> Translation {
    par::on_pool(large(resources), || {
        stage_two(resolve::run(resources, options, feedback), None)
    })
}

/// Enough routes that translation splits its work over the pool (`par`).
fn large(resources: &Resources) -> bool {
    resources.http_routes.len() + resources.grpc_routes.len() >= par::MIN_ITEMS
}

/// Translation that reuses the previous call's work for objects that did not change
/// (`Resources::revisions`); what is reused when is described in `resolve::memo`. Pure: no
/// I/O, only memory (large inputs use rayon's pool, as `translate` does: `par`).
#[derive(Default)]
pub struct Translator {
    memo: resolve::memo::Memo,
    xds: xds::Memo,
    /// The last result, with what it was made from: handed out again while the change log
    /// says nothing changed.
    last: Option<Last>,
}

struct Last {
    /// The change log's head when it was made.
    head: u64,
    /// Hash of the options and feedback it was made with.
    settings: u64,
    translation: Translation,
}

impl Translator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Same result as `translate(resources, options, feedback)`, byte for byte.
    pub fn translate(
        &mut self,
        resources: &Resources,
        options: &Options,
        feedback: &Feedback,
    ) -> Translation {
        let settings = resolve::memo::settings_hash(options, feedback);
        if let Some(last) = &self.last
            && last.settings == settings
            && unchanged_since(resources, last.head)
        {
            self.memo.reuse.all_reused();
            return last.translation.clone();
        }
        // Most routes to compile (a first call): all of it on the pool, as `translate` does.
        let cold = large(resources) && self.memo.routes.len() < par::MIN_ITEMS;
        let (memo, xds) = (&mut self.memo, &mut self.xds);
        let translation = par::on_pool(cold, || {
            stage_two(
                resolve::run_with(resources, options, feedback, Some(memo)),
                Some(xds),
            )
        });
        // Without a log there is no head to compare against next time.
        self.last = resources.changes().map(|log| Last {
            head: log.head(),
            settings,
            translation: translation.clone(),
        });
        translation
    }

    /// How much of the last `translate` was reused.
    pub fn last_reuse(&self) -> resolve::memo::Reuse {
        self.memo.reuse
    }
}

/// Whether the input's change log (which checks the lists' sizes) answers for the state
/// `head` and lists no change after it, with every kind's revisions in step. Log numbers are
/// unique across the process, so another `Resources`, or a copy edited apart, never passes.
fn unchanged_since(resources: &Resources, head: u64) -> bool {
    // Head 0 is every empty log's: it names no state.
    let Some(log) = resources.changes().filter(|_| head != 0) else {
        return false;
    };
    log.since(head)
        .is_some_and(|mut keys| keys.next().is_none())
        && (0..changes::KINDS.len()).all(|k| log.consistent(k))
}

/// Stage two, with what stage one finished with freed beside it (`par::with_freeing`).
fn stage_two(mut stage: resolve::StageOne, mut memo: Option<&mut xds::Memo>) -> Translation {
    let garbage = std::mem::take(&mut stage.garbage);
    let fleets = par::with_freeing(garbage, || {
        (stage.ir.fleets.iter())
            .map(|(name, fleet)| {
                let (ns, gw) = name.split_once('/').unwrap_or(("", name));
                let gateway = ObjectKey::new("Gateway", ns, gw);
                let config = xds::fleet_config_with(fleet, &gateway, memo.as_deref_mut());
                (name.clone(), config)
            })
            .collect()
    });
    if let Some(m) = memo {
        m.end();
    }
    Translation {
        ir: stage.ir,
        statuses: stage.statuses,
        problems: stage.problems,
        fleets,
    }
}
