//! Indexes over the input that every stage-one step looks things up in.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::backend_kind::Backend;
use crate::input::{ObjectKey, Resources};
use crate::problem::{Problem, ProblemKind, Severity};
use crate::resolve::model::convert;

pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

type NsName = (String, String);

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GrantSpec {
    #[serde(default)]
    from: Vec<GrantFrom>,
    #[serde(default)]
    to: Vec<GrantTo>,
}

#[derive(serde::Deserialize, Default)]
struct GrantFrom {
    #[serde(default)]
    group: String,
    kind: String,
    namespace: String,
}

#[derive(serde::Deserialize, Default)]
struct GrantTo {
    #[serde(default)]
    group: String,
    kind: String,
    name: Option<String>,
}

struct Grant {
    namespace: String,
    spec: GrantSpec,
}

pub struct Ctx<'a> {
    pub res: &'a Resources,
    pub problems: Vec<Problem>,
    namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    services: Lookup<'a, Service>,
    /// By (namespace, service name), from the kubernetes.io/service-name label; indexed on
    /// first use (a call that only compiles a changed route never reads endpoints).
    slices: OnceLock<BTreeMap<NsName, Vec<&'a EndpointSlice>>>,
    backends: Lookup<'a, Backend>,
    pub secrets: BTreeMap<NsName, &'a Secret>,
    pub config_maps: BTreeMap<NsName, &'a ConfigMap>,
    grants: Vec<Grant>,
    /// BackendTLSPolicies, oldest first (filled once the indexes exist).
    pub tls_policies: Vec<crate::resolve::backend_tls::PolicyModel>,
}

thread_local! {
    /// While recording (one route's compilation, on this thread: routes compile in
    /// parallel), the Services and Backends looked up, as `memo::key_hash`es: what that
    /// route's memo entry depends on.
    static LOOKUPS: RefCell<Option<Vec<u64>>> = const { RefCell::new(None) };
}

/// Records the lookups `f` makes through `note_lookup` on this thread.
pub fn recording_lookups<R>(f: impl FnOnce() -> R) -> (R, Vec<u64>) {
    LOOKUPS.with_borrow_mut(|l| *l = Some(Vec::new()));
    let out = f();
    (
        out,
        LOOKUPS.with_borrow_mut(Option::take).unwrap_or_default(),
    )
}

fn ns_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> NsName {
    (
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Objects by (namespace, name), indexed on demand: a call that compiles a route or two looks
/// a few up, and scanning the list is cheaper than indexing thousands of objects.
struct Lookup<'a, T> {
    list: &'a [T],
    meta: fn(&T) -> &ObjectMeta,
    /// Objects visited by scans so far.
    scans: AtomicUsize,
    index: OnceLock<HashMap<(&'a str, &'a str), &'a T, BuildHasherDefault<StrHasher>>>,
}

/// xxh3 for short strings and (namespace, name) keys: every route looks its backends up
/// here, and fleets collect thousands of cluster names; SipHash cost more than the rest.
#[derive(Default)]
pub(crate) struct StrHasher(u64);

impl Hasher for StrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
}

/// Objects visited by scans, as a multiple of the list's length, before the index is built:
/// about what building the index costs.
const SCAN_BUDGET: usize = 2;

impl<'a, T> Lookup<'a, T> {
    fn new(list: &'a [T], meta: fn(&T) -> &ObjectMeta) -> Self {
        Lookup {
            list,
            meta,
            scans: AtomicUsize::new(0),
            index: OnceLock::new(),
        }
    }

    /// The last object with this namespace and name (as an index built in order keeps).
    fn get(&self, namespace: &str, name: &str) -> Option<&'a T> {
        if self.index.get().is_none()
            && self.scans.load(Ordering::Relaxed) < SCAN_BUDGET * self.list.len()
        {
            let found = self
                .list
                .iter()
                // Name first: in a long list most names differ, most namespaces do not.
                .rposition(|o| {
                    let (ns, n) = self.names(o);
                    n == name && ns == namespace
                });
            let visited = found.map_or(self.list.len(), |i| self.list.len() - i);
            self.scans.fetch_add(visited, Ordering::Relaxed);
            return found.and_then(|i| self.list.get(i));
        }
        self.index().get(&(namespace, name)).copied()
    }

    fn index(&self) -> &HashMap<(&'a str, &'a str), &'a T, BuildHasherDefault<StrHasher>> {
        (self.index).get_or_init(|| self.list.iter().map(|o| (self.names(o), o)).collect())
    }

    fn names(&self, o: &'a T) -> (&'a str, &'a str) {
        let meta = (self.meta)(o);
        (
            meta.namespace.as_deref().unwrap_or("default"),
            meta.name.as_deref().unwrap_or_default(),
        )
    }
}

impl<'a> Ctx<'a> {
    /// A Service by namespace and name.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&'a Service> {
        self.services.get(namespace, name)
    }

    /// A Service's EndpointSlices (by the kubernetes.io/service-name label), by name.
    pub fn slices(&self, namespace: &str, service: &str) -> &[&'a EndpointSlice] {
        let index = self.slices.get_or_init(|| {
            let mut slices: BTreeMap<NsName, Vec<&EndpointSlice>> = BTreeMap::new();
            for slice in &self.res.endpoint_slices {
                let svc = slice
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name"));
                if let Some(svc) = svc {
                    slices
                        .entry((ns_name(&slice.metadata).0, svc.clone()))
                        .or_default()
                        .push(slice);
                }
            }
            for list in slices.values_mut() {
                list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            }
            slices
        });
        index
            .get(&(namespace.to_string(), service.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    /// Indexes Services and Backends now: for many lookups to come (thousands of routes to
    /// compile), so that they neither scan first nor wait on another thread's indexing.
    pub fn index_lookups(&self) {
        self.services.index();
        self.backends.index();
    }

    /// A Portico Backend by namespace and name.
    pub fn backend(&self, namespace: &str, name: &str) -> Option<&'a Backend> {
        self.backends.get(namespace, name)
    }

    pub fn new(res: &'a Resources) -> Self {
        let mut namespace_labels = BTreeMap::new();
        for ns in &res.namespaces {
            let name = ns.metadata.name.clone().unwrap_or_default();
            namespace_labels.insert(name, ns.metadata.labels.clone().unwrap_or_default());
        }
        let grants = res
            .reference_grants
            .iter()
            .map(|g| Grant {
                namespace: ns_name(&g.metadata).0,
                spec: convert(&g.spec),
            })
            .collect();
        Ctx {
            res,
            problems: Vec::new(),
            namespace_labels,
            services: Lookup::new(&res.services, |s| &s.metadata),
            slices: OnceLock::new(),
            backends: Lookup::new(&res.backends, |b| &b.metadata),
            secrets: res
                .secrets
                .iter()
                .map(|s| (ns_name(&s.metadata), s))
                .collect(),
            config_maps: res
                .config_maps
                .iter()
                .map(|c| (ns_name(&c.metadata), c))
                .collect(),
            grants,
            tls_policies: Vec::new(),
        }
    }

    /// Notes a Service or Backend lookup when a route's compilation is being recorded.
    pub fn note_lookup(&self, kind: &str, namespace: &str, name: &str) {
        LOOKUPS.with_borrow_mut(|log| {
            if let Some(log) = log {
                log.push(crate::resolve::memo::key_hash(kind, namespace, name));
            }
        });
    }

    /// A namespace's labels, with the `kubernetes.io/metadata.name` label Kubernetes always adds
    /// (also for namespaces that only exist implicitly in a directory of files).
    pub fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let mut labels = self
            .namespace_labels
            .get(namespace)
            .cloned()
            .unwrap_or_default();
        labels.insert("kubernetes.io/metadata.name".into(), namespace.into());
        labels
    }

    /// Whether a ReferenceGrant in `to_ns` lets objects of (from_group, from_kind) in `from_ns`
    /// refer to (to_group, to_kind, to_name). Same-namespace references need no grant.
    pub fn ref_allowed(&self, from: (&str, &str, &str), to: (&str, &str, &str, &str)) -> bool {
        let (from_group, from_kind, from_ns) = from;
        let (to_group, to_kind, to_ns, to_name) = to;
        if from_ns == to_ns {
            return true;
        }
        self.grants
            .iter()
            .filter(|g| g.namespace == to_ns)
            .any(|g| {
                g.spec
                    .from
                    .iter()
                    .any(|f| f.group == from_group && f.kind == from_kind && f.namespace == from_ns)
                    && g.spec.to.iter().any(|t| {
                        t.group == to_group
                            && t.kind == to_kind
                            && t.name.as_deref().is_none_or(|n| n == to_name)
                    })
            })
    }

    /// Records a problem about an object, with its source location.
    pub fn report(
        &mut self,
        key: &ObjectKey,
        severity: Severity,
        kind: ProblemKind,
        field: &str,
        message: String,
    ) {
        let mut p = Problem::new(severity, kind, message)
            .object(key.clone())
            .field(field);
        if let Some(src) = self.res.source(key) {
            p = p.at(&src.file, Some(src.line));
        }
        self.problems.push(p);
    }
}
