//! Translation benchmarks (issue #7): Gateway API resources -> encoded xDS resources.
//!
//! `full/N`: N HTTPRoutes (one rule, one backend each, every route its own Backend) translated
//! from scratch and every resource of every fleet packed into a shared `Any` by a new
//! `render::PackCache` (what `portico serve` does on start; the xDS server then shares those
//! across streams). Dropping the result is not timed (`iter_batched`, one run per batch: each
//! result is dropped after its run, outside the timing): `serve` keeps a result until the
//! next one is published. `FULL=N` prints min / median / max of 40 runs (`FULL_RUNS=K`: K)
//! and what the drop costs.
//! (Before 2026-11-26 the drop was timed and the packing was `fleet_to_any`.)
//! `full_shared_backends/N`: the same routes spread over 10 Backends (fewer clusters).
//! `one_route_change/N`: a warm `Translator` alternating between two versions of one route,
//! replaced in place (`Resources::remove` + `insert`, as `portico serve` applies a file
//! change, so the change log answers), encoding through a `render::PackCache` as shared
//! values (`fleets_to_shared`): the cost of producing the new encoded config after one route
//! changed. (Before the change log, this bench alternated between two `Resources` and
//! encoded into owned `Any`s.)
//! `incremental_noop/N`: the same, given the same input again.
//!
//! Run: `cargo bench -p portico-translator --bench translate` (add `-- full/10000` to filter).
//! `STAGES=N` prints where the time goes instead (`INCREMENTAL=1`: only the warm loop).

use std::fmt::Write;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize::PerIteration, BenchmarkId, Criterion, criterion_group};
use envoy_types::pb::google::protobuf::Any;
use portico_translator::{
    Feedback, Options, Resources, Translation, Translator, render, render::SharedFleet, translate,
};

/// What the `portico` binary uses (src/main.rs): glibc malloc spends a large share of these
/// benches consolidating free lists.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SIZES: [usize; 3] = [100, 1_000, 10_000];

/// One fleet `bench/gw` on :10080, `backends` Backends, `routes` HTTPRoutes with one
/// PathPrefix rule each. `changed` gives route 0 a different path.
fn config_yaml(routes: usize, backends: usize, changed: bool) -> String {
    let mut y = String::with_capacity(routes * 400);
    y.push_str(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  name: portico\n\
         spec:\n  controllerName: portico.dev/gateway-controller\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: gw\n  namespace: bench\n\
         spec:\n  gatewayClassName: portico\n  listeners:\n  - name: http\n    protocol: HTTP\n    port: 10080\n",
    );
    for b in 0..backends {
        let _ = write!(
            y,
            "---\napiVersion: portico.dev/v1alpha1\nkind: Backend\nmetadata:\n  name: be-{b}\n  namespace: bench\n\
             spec:\n  endpoints:\n  - ip: 127.0.{}.{}\n    port: 8080\n",
            (b / 250) % 250,
            b % 250 + 1
        );
    }
    for r in 0..routes {
        y.push_str(&route_yaml(r, backends, changed && r == 0));
    }
    y
}

/// HTTPRoute `r-<r>` as a YAML document (with its leading `---`).
fn route_yaml(r: usize, backends: usize, changed: bool) -> String {
    let path = if changed {
        format!("/r-{r}-changed")
    } else {
        format!("/r-{r}")
    };
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r-{r}\n  namespace: bench\n\
         spec:\n  parentRefs:\n  - name: gw\n  rules:\n  - matches:\n    - path:\n        type: PathPrefix\n        value: {path}\n\
         \x20   backendRefs:\n    - group: portico.dev\n      kind: Backend\n      name: be-{}\n      port: 8080\n",
        r % backends
    )
}

/// Route 0 as parsed documents: [unchanged, changed].
fn route_zero(backends: usize) -> [portico_translator::Document; 2] {
    [false, true].map(|changed| {
        let (mut docs, problems) =
            portico_translator::parse_file("bench.yaml", &route_yaml(0, backends, changed));
        assert!(problems.is_empty() && docs.len() == 1, "{problems:?}");
        docs.remove(0)
    })
}

/// Replaces route 0 in place, as `portico serve` applies a file change: `remove`, `insert`.
fn flip_route_zero(
    resources: &mut Resources,
    versions: &[portico_translator::Document; 2],
    to: usize,
) {
    resources.remove(&versions[to].key);
    resources.insert("bench.yaml", versions[to].clone());
}

fn resources(routes: usize, backends: usize, changed: bool) -> Resources {
    let (resources, problems) =
        Resources::from_yaml("bench.yaml", &config_yaml(routes, backends, changed));
    assert!(
        problems.is_empty(),
        "generated config does not parse: {problems:?}"
    );
    resources
}

/// Translate and encode: what `portico serve` does on a (cold) reload before the snapshot
/// insert: `translate`, then every resource packed into a shared `Any` (`PackCache`, as
/// `pipeline::Incremental::snapshots` does). Returns the translation and its packed
/// resources, for the caller to drop outside the timing: `serve` keeps them until the next
/// change, and drops them after publishing it.
fn translate_and_encode(resources: &Resources) -> (Translation, Vec<(String, SharedFleet)>) {
    let translation = translate(resources, &Options::default(), &Feedback::default());
    let packed = render::PackCache::new().fleets_to_shared(&translation.fleets);
    (translation, packed)
}

/// The encoded size of packed resources.
fn bytes(packed: &[(String, String, Any)]) -> usize {
    packed.iter().map(|(_, _, any)| any.value.len()).sum()
}

/// `encode` through a `PackCache`, shared: an unchanged resource costs a pointer copy.
/// Returns the number of resources (not their bytes: reading every encoding is the
/// consumer's work, which this does not measure).
fn encode_shared(packs: &mut render::PackCache, translation: &Translation) -> usize {
    let packed = packs.fleets_to_shared(&translation.fleets);
    black_box(&packed);
    packed.iter().map(|(_, resources)| resources.len()).sum()
}

/// Ten samples: a 10k-route iteration takes long enough that more only slows the run down.
fn configure(c: &mut Criterion) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group("translation");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group
}

fn full(c: &mut Criterion) {
    for n in SIZES {
        let input = resources(n, n, false);
        let packed: usize = (translate_and_encode(&input).1.iter())
            .flat_map(|(_, fleet)| fleet.iter())
            .map(|r| r.any.value.len())
            .sum();
        eprintln!("full/{n}: {packed} encoded bytes");
        let mut group = configure(c);
        group.bench_with_input(BenchmarkId::new("full", n), &input, |b, input| {
            b.iter_batched(|| (), |()| translate_and_encode(input), PerIteration)
        });
        group.finish();
    }
    let n = 10_000;
    let input = resources(n, 10, false);
    let mut group = configure(c);
    group.bench_with_input(
        BenchmarkId::new("full_shared_backends", n),
        &input,
        |b, input| b.iter_batched(|| (), |()| translate_and_encode(input), PerIteration),
    );
    group.finish();
}

/// A warm `Translator` and `PackCache` over one input, kept as `portico serve` keeps them
/// (src/pipeline.rs): the previous translation lives until the next one is encoded.
struct Warm {
    input: Resources,
    /// Route 0 as generated and changed, for `flip_route_zero`.
    versions: [portico_translator::Document; 2],
    options: Options,
    feedback: Feedback,
    translator: Translator,
    packs: render::PackCache,
    previous: Translation,
}

impl Warm {
    fn new(input: Resources, backends: usize) -> Self {
        let (options, feedback) = (Options::default(), Feedback::default());
        let mut translator = Translator::new();
        let mut packs = render::PackCache::new();
        let previous = translator.translate(&input, &options, &feedback);
        encode_shared(&mut packs, &previous);
        Warm {
            input,
            versions: route_zero(backends),
            options,
            feedback,
            translator,
            packs,
            previous,
        }
    }

    fn flip(&mut self, to: usize) {
        flip_route_zero(&mut self.input, &self.versions, to);
    }

    fn translate(&mut self) -> Translation {
        self.translator
            .translate(&self.input, &self.options, &self.feedback)
    }

    /// Translates and packs the current input; returns the number of packed resources.
    fn next(&mut self) -> usize {
        let next = self.translate();
        let resources = encode_shared(&mut self.packs, &next);
        self.previous = next;
        resources
    }
}

fn one_route_change(c: &mut Criterion) {
    for n in SIZES {
        let mut warm = Warm::new(resources(n, n, false), n);
        let mut flip = 0;
        let mut group = configure(c);
        group.bench_function(BenchmarkId::new("one_route_change", n), |b| {
            b.iter(|| {
                flip ^= 1;
                warm.flip(flip);
                black_box(warm.next())
            })
        });
        group.bench_function(BenchmarkId::new("incremental_noop", n), |b| {
            b.iter(|| black_box(warm.next()))
        });
        drop(warm);
        group.finish();
    }
}

criterion_group!(benches, full, one_route_change);
fn main() {
    if let Some(n) = std::env::var("STAGES").ok().and_then(|n| n.parse().ok()) {
        stages(n);
        return;
    }
    if let Some(n) = std::env::var("FULL").ok().and_then(|n| n.parse().ok()) {
        full_runs(n);
        return;
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}

/// Where the time goes (`STAGES=N cargo bench -p portico-translator --bench translate`):
/// stage one, stage two, packing, and dropping the result, for N routes.
fn stages(n: usize) {
    use std::time::Instant;
    let input = resources(n, n, false);
    // INCREMENTAL=1: only the one-route-change loop (for profiling).
    let full_runs = if std::env::var_os("INCREMENTAL").is_some() {
        0
    } else {
        3
    };
    for _ in 0..full_runs {
        let t = Instant::now();
        let stage =
            portico_translator::resolve::run(&input, &Options::default(), &Feedback::default());
        let t1 = t.elapsed();
        let t = Instant::now();
        let fleets: Vec<_> = stage
            .ir
            .fleets
            .iter()
            .map(|(name, f)| {
                let (ns, gw) = name.split_once('/').unwrap_or(("", name));
                portico_translator::xds::fleet_config(
                    f,
                    &portico_translator::ObjectKey::new("Gateway", ns, gw),
                )
            })
            .collect();
        let t2 = t.elapsed();
        let t = Instant::now();
        let packed: Vec<_> = fleets.iter().flat_map(render::fleet_to_any).collect();
        let n = bytes(&packed);
        let t3 = t.elapsed();
        let t = Instant::now();
        drop(packed);
        drop(fleets);
        drop(stage);
        let t4 = t.elapsed();
        eprintln!("stage one {t1:?}, stage two {t2:?}, pack {t3:?} ({n} bytes), drop {t4:?}");
    }
    let mut warm = Warm::new(input, n);
    // INCREMENTAL=N runs the loop N times (30 if not a number).
    let runs = match std::env::var("INCREMENTAL") {
        Ok(n) => n.parse().unwrap_or(30),
        Err(_) => 6,
    };
    for i in 0..runs {
        let t = Instant::now();
        warm.flip((i + 1) % 2);
        let t0 = t.elapsed();
        let t = Instant::now();
        let next = warm.translate();
        let t1 = t.elapsed();
        let t = Instant::now();
        let resources = encode_shared(&mut warm.packs, &next);
        let t2 = t.elapsed();
        let t = Instant::now();
        drop(std::mem::replace(&mut warm.previous, next));
        let t3 = t.elapsed();
        eprintln!(
            "one route change: edit {t0:?}, translate {t1:?}, pack {t2:?} ({resources} resources), drop {t3:?}, {:?}",
            warm.translator.last_reuse()
        );
    }
}

/// `FULL=N`: `full/N` run 40 times, min / median / max. On a shared machine the minimum is
/// the steadiest figure (criterion's mean takes in every stall of a neighbour).
fn full_runs(n: usize) {
    use std::time::Instant;
    let input = resources(n, n, false);
    // `FULL_RUNS=K`: K runs instead (e.g. a few under callgrind, whose counts do not depend
    // on what else the machine runs).
    let runs: usize = std::env::var("FULL_RUNS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(40)
        .max(1);
    let cpu = cpu_ns();
    let (mut times, mut drops): (Vec<_>, Vec<_>) = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let out = black_box(translate_and_encode(&input));
            let made = t.elapsed();
            let t = Instant::now();
            drop(out);
            (made, t.elapsed())
        })
        .unzip();
    let cpu = cpu_ns().saturating_sub(cpu) / runs as u64;
    times.sort();
    drops.sort();
    eprintln!(
        "full/{n}: min {:?}, median {:?}, max {:?} ({runs} runs); dropping the result: median {:?}; \
         CPU per run (all threads, drop included) {:?}",
        times[0],
        times[runs / 2],
        times[runs - 1],
        drops[runs / 2],
        Duration::from_nanos(cpu)
    );
}

/// CPU time of every thread of this process so far, in ns (`/proc/self/task/*/schedstat`):
/// on a shared machine, CPU time moves less than wall time with the neighbours.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}
