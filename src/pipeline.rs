//! Resources -> translation, shared by the offline commands and `serve`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use portico_translator::render::{PackCache, SharedFleet};
use portico_translator::{Feedback, Options, Problem, Resources, Translation, Translator};

/// Translates, catching a translator panic so that a bug never takes down the server: the
/// caller keeps serving its last good config.
pub fn translate(
    resources: &Resources,
    options: &Options,
    feedback: &Feedback,
) -> Result<Translation, String> {
    catch(|| portico_translator::translate(resources, options, feedback))
}

/// What `serve` keeps between reloads so that a small change costs little: the translator's
/// per-object memo and the encodings of unchanged resources.
#[derive(Default)]
pub struct Incremental {
    translator: Translator,
    packs: PackCache,
    /// Each fleet's last packed lists and the snapshot built from them: a list that is the
    /// same `Arc` again gives the same resources, taken over by type (no insert per resource).
    last: HashMap<String, (SharedFleet, portico_xds::Snapshot)>,
}

impl Incremental {
    /// Like [`translate`], reusing the previous call's work for unchanged objects. After a
    /// panic the memo is dropped: the next call starts from scratch.
    pub fn translate(
        &mut self,
        resources: &Resources,
        options: &Options,
        feedback: &Feedback,
    ) -> Result<Translation, String> {
        let result = catch(|| self.translator.translate(resources, options, feedback));
        if result.is_err() {
            *self = Incremental::default();
        }
        result
    }

    /// How much of the last translation was reused (for the debug log).
    pub fn last_reuse(&self) -> impl std::fmt::Debug {
        self.translator.last_reuse()
    }

    /// The snapshot of every fleet. Unchanged resources keep their encoding, version and body
    /// (the one streams already share) from the cache's current snapshot.
    pub fn snapshots(
        &mut self,
        translation: &Translation,
        cache: &portico_xds::Cache,
    ) -> BTreeMap<String, portico_xds::Snapshot> {
        let packed = self.packs.fleets_to_shared(&translation.fleets);
        let mut last = HashMap::with_capacity(packed.len());
        let snapshots = packed
            .into_iter()
            .map(|(fleet, shared)| {
                let mut snapshot = match cache.snapshot(&fleet) {
                    Some(previous) => portico_xds::Snapshot::reusing(&previous),
                    None => portico_xds::Snapshot::new(),
                };
                let before = self.last.get(&fleet);
                for (i, list) in shared.lists.iter().enumerate() {
                    let type_url = SharedFleet::TYPES[i];
                    if let Some((old, built)) = before
                        && Arc::ptr_eq(&old.lists[i], list)
                        && snapshot.keep_type(built, type_url)
                    {
                        continue;
                    }
                    for r in list.iter() {
                        snapshot.insert_shared(r.type_url, &r.name, r.any.clone());
                    }
                }
                last.insert(fleet.clone(), (shared, snapshot.clone()));
                (fleet, snapshot)
            })
            .collect();
        self.last = last;
        snapshots
    }
}

fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        format!("translator failed: {message}")
    })
}

/// All problems, sorted and without repeats, load problems first.
pub fn all_problems(load: &[Problem], translation: &Translation) -> Vec<Problem> {
    let mut problems: Vec<Problem> = load.iter().chain(&translation.problems).cloned().collect();
    problems.sort();
    problems.dedup();
    problems
}

/// Parses `--address-pool` (`A.B.C.D/N`).
pub fn parse_pool(pool: &str) -> anyhow::Result<(std::net::Ipv4Addr, u8)> {
    let (ip, len) = pool.split_once('/').ok_or_else(|| {
        anyhow::anyhow!("--address-pool must be an IPv4 CIDR like 127.0.1.0/24, got {pool:?}")
    })?;
    let ip = ip
        .parse()
        .map_err(|e| anyhow::anyhow!("--address-pool {pool:?}: {e}"))?;
    let len: u8 = len
        .parse()
        .map_err(|e| anyhow::anyhow!("--address-pool {pool:?}: {e}"))?;
    if len > 32 {
        anyhow::bail!("--address-pool {pool:?}: prefix length must be at most 32");
    }
    Ok((ip, len))
}
