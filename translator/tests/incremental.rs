//! `Translator` (incremental) must give exactly what `translate` (from scratch) gives: every
//! step of every edit sequence here is compared whole (rendered fleets and origins, IR,
//! statuses, problems).

use std::path::{Path, PathBuf};

use prost::Message;

use portico_translator::render::{PackCache, fleet_to_any};
use portico_translator::{
    Feedback, Options, Rejection, Resources, Translation, Translator, translate,
};

/// A warm translator and the encoding cache that goes with it.
type State = (Translator, PackCache);

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

/// Everything a translation says, in comparable form.
fn rendered(t: &Translation) -> serde_json::Value {
    let fleets: serde_json::Map<String, serde_json::Value> = t
        .fleets
        .iter()
        .map(|(k, f)| {
            let origins: Vec<String> = f
                .origins
                .iter()
                .map(|((ty, name), keys)| format!("{ty} {name} <- {keys:?}"))
                .collect();
            (
                k.clone(),
                serde_json::json!({"config": f.to_json(), "origins": origins}),
            )
        })
        .collect();
    serde_json::json!({
        "fleets": fleets,
        "ir": serde_json::to_value(&t.ir).unwrap(),
        "statuses": portico_translator::status_documents(&t.statuses),
        "problems": t.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
    })
}

/// Translates with both and fails on any difference.
fn check(t: &mut State, res: &Resources, options: &Options, feedback: &Feedback, step: &str) {
    let incremental = t.0.translate(res, options, feedback);
    let scratch = translate(res, options, feedback);
    // Cached encodings are the fresh encodings.
    let packed: Vec<_> =
        t.1.fleets_to_shared(&incremental.fleets)
            .into_iter()
            .map(|(k, list)| {
                let owned: Vec<_> = list
                    .iter()
                    .map(|r| (r.type_url.to_string(), r.name.to_string(), (*r.any).clone()))
                    .collect();
                (k, owned)
            })
            .collect();
    let fresh: Vec<_> = scratch
        .fleets
        .iter()
        .map(|(k, f)| (k.clone(), fleet_to_any(f)))
        .collect();
    assert!(packed == fresh, "{step}: cached encodings differ");
    // Route configurations are assembled from cached pieces: the bytes are prost's.
    for (fleet, config) in incremental.fleets.iter().chain(&scratch.fleets) {
        for rc in config.routes.iter() {
            let proto = rc.to_proto();
            assert!(
                rc.encode() == proto.encode_to_vec(),
                "{step}: {fleet} {}: assembled encoding differs from prost's",
                rc.name
            );
        }
    }
    assert_eq!(incremental.statuses, scratch.statuses, "{step}: statuses");
    assert_eq!(incremental.problems, scratch.problems, "{step}: problems");
    let (a, b) = (rendered(&incremental), rendered(&scratch));
    if a != b {
        let a = serde_json::to_string_pretty(&a).unwrap();
        let b = serde_json::to_string_pretty(&b).unwrap();
        let line = a
            .lines()
            .zip(b.lines())
            .position(|(x, y)| x != y)
            .unwrap_or(0);
        let show = |s: &str| {
            s.lines()
                .skip(line.saturating_sub(5))
                .take(12)
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "{step}: incremental != scratch at line {line}\n--- incremental\n{}\n--- scratch\n{}",
            show(&a),
            show(&b)
        );
    }
}

fn parse(text: &str) -> Resources {
    Resources::from_yaml("in.yaml", text).0
}

/// Splits a multi-document text at `---` lines (keeping the leading comment with the first).
fn documents(text: &str) -> Vec<String> {
    text.split("\n---\n").map(|d| d.to_string()).collect()
}

fn join(docs: &[String]) -> String {
    docs.join("\n---\n")
}

fn goldens() -> Vec<(String, String)> {
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(testdata())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    inputs.sort();
    inputs
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

/// Every golden input through one Translator: whole, then with each document removed, put
/// back, and moved to the end; then all goldens again in reverse (the memo holds routes of
/// other inputs with the same keys).
#[test]
fn goldens_with_edits() {
    let options = Options::default();
    let feedback = Feedback::default();
    let mut t: State = (Translator::new(), PackCache::new());
    let all = goldens();
    for (name, text) in &all {
        let docs = documents(text);
        check(&mut t, &parse(text), &options, &feedback, name);
        check(&mut t, &parse(text), &options, &feedback, name);
        for i in 0..docs.len() {
            let mut without = docs.clone();
            let removed = without.remove(i);
            check(
                &mut t,
                &parse(&join(&without)),
                &options,
                &feedback,
                &format!("{name} without document {i}"),
            );
            check(&mut t, &parse(text), &options, &feedback, name);
            without.push(removed);
            check(
                &mut t,
                &parse(&join(&without)),
                &options,
                &feedback,
                &format!("{name} with document {i} last"),
            );
        }
    }
    for (name, text) in all.iter().rev() {
        check(&mut t, &parse(text), &options, &feedback, name);
    }
}

/// Options and NACK feedback change while the objects do not.
#[test]
fn options_and_feedback() {
    let (_, text) = goldens()
        .into_iter()
        .find(|(n, _)| n.starts_with("backend-kinds"))
        .expect("backend-kinds golden");
    let res = parse(&text);
    let mut t: State = (Translator::new(), PackCache::new());
    let plain = (Options::default(), Feedback::default());
    let pooled = Options {
        address_pool: Some(("127.0.1.0".parse().unwrap(), 24)),
        default_address: Some("10.0.0.1".into()),
    };
    let mut nacked = Feedback::default();
    for fleet in t.0.translate(&res, &plain.0, &plain.1).fleets.keys() {
        nacked.rejected.insert(
            fleet.clone(),
            vec![Rejection {
                type_url: portico_translator::render::LISTENER.into(),
                resource_names: Vec::new(),
                message: "bad listener".into(),
            }],
        );
    }
    for (step, (o, f)) in [
        ("plain", (&plain.0, &plain.1)),
        ("pool", (&pooled, &plain.1)),
        ("nack", (&pooled, &nacked)),
        ("plain again", (&plain.0, &plain.1)),
    ] {
        check(&mut t, &res, o, f, step);
    }
}

/// The same input again (nothing logged since): the previous result, shared, and right.
#[test]
fn unchanged_input_hands_out_the_previous_result() {
    let mut t: State = (Translator::new(), PackCache::new());
    let (options, feedback) = (Options::default(), Feedback::default());
    let res = parse(&world(12, ""));
    let first = t.0.translate(&res, &options, &feedback);
    check(&mut t, &res, &options, &feedback, "again");
    let again = t.0.translate(&res, &options, &feedback);
    assert!(std::sync::Arc::ptr_eq(&first.statuses, &again.statuses));
    for (a, b) in first.fleets.values().zip(again.fleets.values()) {
        assert!(std::sync::Arc::ptr_eq(&a.origins, &b.origins));
        // Unchanged lists are the same lists.
        assert!(std::sync::Arc::ptr_eq(&a.listeners, &b.listeners));
        assert!(std::sync::Arc::ptr_eq(&a.routes, &b.routes));
        assert!(std::sync::Arc::ptr_eq(&a.clusters, &b.clusters));
        assert!(std::sync::Arc::ptr_eq(&a.endpoints, &b.endpoints));
        assert!(std::sync::Arc::ptr_eq(&a.secrets, &b.secrets));
    }
    let reuse = t.0.last_reuse();
    assert_eq!(reuse.routes_compiled, 0, "{reuse:?}");
    assert!(reuse.change_log && reuse.routes_reused > 0, "{reuse:?}");
    // An unedited copy is the same state; an edit after the copy is not.
    let mut copy = res.clone();
    check(&mut t, &copy, &options, &feedback, "unedited copy");
    morph(&mut copy, &world(12, "modify"));
    check(&mut t, &copy, &options, &feedback, "copy edited");
    assert_eq!(t.0.last_reuse().routes_compiled, 1);
    check(&mut t, &res, &options, &feedback, "original again");
}

/// Objects without revisions are never reused, and the output stays right.
#[test]
fn without_revisions() {
    let mut t: State = (Translator::new(), PackCache::new());
    for (name, text) in goldens() {
        let mut res = parse(&text);
        res.revisions.clear();
        // Twice: the second call is where reuse would (wrongly) happen.
        for _ in 0..2 {
            check(
                &mut t,
                &res,
                &Options::default(),
                &Feedback::default(),
                &name,
            );
        }
        assert_eq!(t.0.last_reuse().routes_reused, 0, "{name}");
    }
}

const CERT: &str = "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n";

/// A generated world with every kind routes depend on; `edit` picks one variation.
fn world(routes: usize, edit: &str) -> String {
    let on = |e: &str| edit == e;
    let mut y = String::new();
    y.push_str("apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: portico}\nspec: {controllerName: portico.dev/gateway-controller}\n");
    let listener_port = if on("listener") { 8081 } else { 8080 };
    y.push_str(&format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: infra}}\n\
         spec:\n  gatewayClassName: portico\n  listeners:\n  - {{name: http, protocol: HTTP, port: {listener_port}, allowedRoutes: {{namespaces: {{from: All}}}}}}\n\
         \x20 - name: https\n    protocol: HTTPS\n    port: 8443\n    hostname: secure.example.com\n    allowedRoutes: {{namespaces: {{from: All}}}}\n\
         \x20   tls: {{certificateRefs: [{{name: cert}}]}}\n"
    ));
    let cert_data = if on("secret") { "b3RoZXI=" } else { "Y2VydA==" };
    y.push_str(&format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: cert, namespace: infra}}\ntype: kubernetes.io/tls\ndata: {{tls.crt: {cert_data}, tls.key: a2V5}}\n"
    ));
    let svc_port = if on("service") { 81 } else { 80 };
    y.push_str(&format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc, namespace: apps}}\nspec: {{ports: [{{name: http, port: {svc_port}}}]}}\n"
    ));
    y.push_str(
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: remote, namespace: other}\nspec: {ports: [{name: http, port: 80}]}\n",
    );
    let ip = if on("slice") { "10.0.0.9" } else { "10.0.0.1" };
    y.push_str(&format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc-1, namespace: apps, labels: {{kubernetes.io/service-name: svc}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints: [{{addresses: [{ip}]}}]\n"
    ));
    y.push_str(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: remote-1, namespace: other, labels: {kubernetes.io/service-name: remote}}\n\
         addressType: IPv4\nports: [{name: http, port: 9090}]\nendpoints: [{addresses: [10.1.0.1]}]\n",
    );
    let backend_port = if on("backend") { 9001 } else { 9000 };
    y.push_str(&format!(
        "---\napiVersion: portico.dev/v1alpha1\nkind: Backend\nmetadata: {{name: be, namespace: apps}}\nspec: {{endpoints: [{{ip: 127.0.0.1, port: {backend_port}}}]}}\n"
    ));
    if !on("grant") {
        y.push_str(
            "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: allow, namespace: other}\n\
             spec: {from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: apps}], to: [{group: '', kind: Service}]}\n",
        );
    }
    let ca = if on("configmap") {
        "not a certificate"
    } else {
        CERT
    };
    y.push_str(&format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ca, namespace: other}}\ndata: {{ca.crt: \"{ca}\"}}\n"
    ));
    let tls_host = if on("policy") {
        "other.example.com"
    } else {
        "remote.example.com"
    };
    y.push_str(&format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {{name: tls, namespace: other}}\n\
         spec:\n  targetRefs: [{{group: '', kind: Service, name: remote}}]\n  validation: {{caCertificateRefs: [{{group: '', kind: ConfigMap, name: ca}}], hostname: {tls_host}}}\n"
    ));
    if on("namespace") {
        y.push_str(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: apps, labels: {team: a}}\n",
        );
    }
    for r in 0..routes {
        if on("remove") && r == 1 {
            continue;
        }
        let path = if on("modify") && r == 2 {
            "/changed".to_string()
        } else {
            format!("/r-{r}")
        };
        let backend = match r % 3 {
            0 => "{name: svc, port: 80}".to_string(),
            1 => "{group: portico.dev, kind: Backend, name: be}".to_string(),
            _ => "{name: remote, namespace: other, port: 80}".to_string(),
        };
        let parent = if r % 4 == 3 {
            "{name: gw, namespace: infra, sectionName: https}"
        } else {
            "{name: gw, namespace: infra}"
        };
        y.push_str(&format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r-{r}, namespace: apps}}\n\
             spec:\n  parentRefs: [{parent}]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    backendRefs: [{backend}]\n"
        ));
    }
    if on("new-backend") {
        y.push_str(
            "---\napiVersion: portico.dev/v1alpha1\nkind: Backend\nmetadata: {name: be2, namespace: apps}\nspec: {endpoints: [{ip: 127.0.0.2, port: 9000}]}\n\
             ---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: nb, namespace: apps}\n\
             spec:\n  parentRefs: [{name: gw, namespace: infra}]\n  rules: [{backendRefs: [{group: portico.dev, kind: Backend, name: be2}]}]\n",
        );
    }
    if on("add") {
        y.push_str(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g, namespace: apps}\n\
             spec:\n  parentRefs: [{name: gw, namespace: infra}]\n  rules: [{backendRefs: [{name: svc, port: 80}]}]\n",
        );
    }
    y
}

/// The generated edits `world` knows: one of each kind a route depends on.
const EDITS: [&str; 13] = [
    "modify",
    "remove",
    "add",
    "new-backend",
    "service",
    "slice",
    "backend",
    "grant",
    "configmap",
    "policy",
    "secret",
    "listener",
    "namespace",
];

/// Edits of each kind a route depends on, each followed by the unedited world.
#[test]
fn generated_edits() {
    let mut t: State = (Translator::new(), PackCache::new());
    let options = Options::default();
    let feedback = Feedback::default();
    let base = parse(&world(12, ""));
    check(&mut t, &base, &options, &feedback, "base");
    check(&mut t, &base, &options, &feedback, "base again");
    assert_eq!(t.0.last_reuse().routes_compiled, 0, "nothing changed");
    for edit in EDITS {
        check(&mut t, &parse(&world(12, edit)), &options, &feedback, edit);
        let reuse = t.0.last_reuse();
        match edit {
            "modify" => assert_eq!(reuse.routes_compiled, 1, "{edit}: {reuse:?}"),
            "add" | "remove" => assert_eq!(reuse.routes_compiled, usize::from(edit == "add")),
            // Routes depend on the Services and Backends they look up, not on every one.
            "new-backend" => assert_eq!(reuse.routes_compiled, 1, "{edit}: {reuse:?}"),
            "service" | "backend" => assert_eq!(reuse.routes_compiled, 4, "{edit}: {reuse:?}"),
            // Endpoints are not read by compilation, nor by attachment.
            "slice" => {
                assert_eq!(reuse.routes_compiled, 0, "{edit}: {reuse:?}");
                assert_eq!(reuse.attachments_reused, 12, "{edit}: {reuse:?}");
            }
            _ => {}
        }
        check(
            &mut t,
            &base,
            &options,
            &feedback,
            &format!("{edit} undone"),
        );
    }
}

/// Every HTTPRoute and GRPCRoute of every golden edited in place the ways that keep where
/// it attaches (another path, another generation), then restored: the translator patches
/// the last result instead of rebuilding it, and the result is still `translate()`'s.
#[test]
fn route_edits_in_place_patch_the_last_result() {
    let options = Options::default();
    let feedback = Feedback::default();
    let mut t: State = (Translator::new(), PackCache::new());
    let mut res = Resources::default();
    let (mut steps, mut patched) = (0, 0);
    for (name, text) in goldens() {
        morph(&mut res, &text);
        check(&mut t, &res, &options, &feedback, &name);
        let docs = documents(&text);
        for (i, doc) in docs.iter().enumerate() {
            if !doc.contains("kind: HTTPRoute") && !doc.contains("kind: GRPCRoute") {
                continue;
            }
            let edits = [
                doc.replacen("value: /", "value: /patched", 1),
                doc.replacen("metadata: {", "metadata: {generation: 7, ", 1),
            ];
            for (e, edited) in edits.into_iter().enumerate() {
                if edited == *doc {
                    continue;
                }
                let mut changed = docs.clone();
                changed[i] = edited;
                morph(&mut res, &join(&changed));
                check(
                    &mut t,
                    &res,
                    &options,
                    &feedback,
                    &format!("{name} {i} edit {e}"),
                );
                steps += 1;
                patched += usize::from(t.0.last_reuse().patched);
                morph(&mut res, &text);
                check(
                    &mut t,
                    &res,
                    &options,
                    &feedback,
                    &format!("{name} {i} undone {e}"),
                );
            }
        }
    }
    // Routes whose edit moves them (an invalid path made valid, a second parentRef on one
    // listener) are rebuilt; most are patched.
    assert!(patched * 2 > steps, "{patched} of {steps} edits patched");
}

/// Random sequences of route edits (one or two routes per step, kept across steps): paths,
/// generations and header matches, which the patch path takes, and parentRef sections and
/// hostnames, which move routes and take the full build. Every step is checked against
/// `translate()`.
#[test]
fn random_route_edits_match_a_fresh_translation() {
    let options = Options::default();
    let feedback = Feedback::default();
    let base = world(12, "");
    let docs = documents(&base);
    let routes: Vec<usize> = (0..docs.len())
        .filter(|i| docs[*i].contains("kind: HTTPRoute"))
        .collect();
    let mut t: State = (Translator::new(), PackCache::new());
    let mut res = Resources::default();
    morph(&mut res, &base);
    check(&mut t, &res, &options, &feedback, "base");
    let mut current = docs.clone();
    // xorshift64: a fixed sequence, so a failure repeats.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut patched = 0;
    for step in 0..80 {
        for _ in 0..1 + usize::from(next(4) == 0) {
            let i = routes[next(routes.len())];
            let doc = &current[i];
            current[i] = match next(6) {
                0 => doc.replacen("value: /", &format!("value: /s{step}-"), 1),
                1 => doc.replacen(
                    "metadata: {",
                    &format!("metadata: {{generation: {step}, "),
                    1,
                ),
                2 => doc.replacen(
                    "matches: [{path:",
                    "matches: [{headers: [{name: x-step, value: v}], path:",
                    1,
                ),
                3 => doc.replacen(
                    "parentRefs: [{name: gw, namespace: infra}]",
                    "parentRefs: [{name: gw, namespace: infra, sectionName: http}]",
                    1,
                ),
                4 => doc.replacen("spec:\n", "spec:\n  hostnames: [secure.example.com]\n", 1),
                _ => docs[i].clone(),
            };
        }
        morph(&mut res, &join(&current));
        check(
            &mut t,
            &res,
            &options,
            &feedback,
            &format!("random step {step}"),
        );
        patched += usize::from(t.0.last_reuse().patched);
    }
    assert!(patched >= 20, "only {patched} of 80 steps patched");
}

/// Turns `res` into `text`'s objects in place, as a source applying a change does: `remove`
/// every key whose documents differ, then `insert` their new documents (in their order).
fn morph(res: &mut Resources, text: &str) {
    let (docs, _) = portico_translator::parse_file("in.yaml", text);
    let mut wanted: std::collections::BTreeMap<_, Vec<u64>> = Default::default();
    for d in &docs {
        wanted.entry(d.key.clone()).or_default().push(d.revision);
    }
    let mut have: std::collections::BTreeMap<_, Vec<u64>> = Default::default();
    for (key, rev) in &res.revisions {
        have.entry(key.clone()).or_default().push(*rev);
    }
    let differ: Vec<_> = have
        .keys()
        .chain(wanted.keys())
        .filter(|k| have.get(*k) != wanted.get(*k) || wanted.get(*k).is_some_and(|r| r.len() > 1))
        .cloned()
        .collect();
    for key in &differ {
        res.remove(key);
    }
    for d in docs {
        if differ.contains(&d.key) {
            res.insert("in.yaml", d);
        }
    }
}

/// The same edits as `goldens_with_edits` and `generated_edits`, applied in place through
/// `Resources::remove` and `insert`: the translator follows the change log.
#[test]
fn edits_in_place_follow_the_change_log() {
    let options = Options::default();
    let feedback = Feedback::default();
    let mut t: State = (Translator::new(), PackCache::new());
    let mut res = Resources::default();
    // Steps that patched the last result: re-adding a route it had is one.
    let mut patched = 0;
    for (name, text) in goldens() {
        morph(&mut res, &text);
        check(&mut t, &res, &options, &feedback, &name);
        let docs = documents(&text);
        for i in 0..docs.len() {
            let mut without = docs.clone();
            let removed = without.remove(i);
            morph(&mut res, &join(&without));
            check(
                &mut t,
                &res,
                &options,
                &feedback,
                &format!("{name} without {i}"),
            );
            without.push(removed);
            morph(&mut res, &join(&without));
            check(
                &mut t,
                &res,
                &options,
                &feedback,
                &format!("{name} {i} last"),
            );
            patched += usize::from(t.0.last_reuse().patched);
        }
    }
    assert!(patched > 0, "no golden step took the patch path");
    let base = world(12, "");
    morph(&mut res, &base);
    check(&mut t, &res, &options, &feedback, "world");
    check(&mut t, &res, &options, &feedback, "world again");
    assert_eq!(t.0.last_reuse().routes_compiled, 0, "nothing changed");
    for edit in EDITS {
        morph(&mut res, &world(12, edit));
        check(&mut t, &res, &options, &feedback, edit);
        let reuse = t.0.last_reuse();
        assert!(reuse.change_log, "{edit}: {reuse:?}");
        match edit {
            // Only the route's path changed: the last result is patched, not rebuilt.
            "modify" => {
                assert_eq!(reuse.routes_compiled, 1, "{edit}: {reuse:?}");
                assert!(reuse.patched, "{edit}: {reuse:?}");
            }
            "new-backend" => assert_eq!(reuse.routes_compiled, 1, "{edit}: {reuse:?}"),
            "slice" => assert_eq!(reuse.routes_compiled, 0, "{edit}: {reuse:?}"),
            "service" | "backend" => assert_eq!(reuse.routes_compiled, 4, "{edit}: {reuse:?}"),
            _ => {}
        }
        morph(&mut res, &base);
        check(&mut t, &res, &options, &feedback, &format!("{edit} undone"));
    }
}

/// Copies of one `Resources` edited apart, direct edits of its lists, and duplicate keys:
/// the log cannot answer for those (or says so), and the output stays right.
#[test]
fn change_log_fallbacks() {
    let options = Options::default();
    let feedback = Feedback::default();
    let mut t: State = (Translator::new(), PackCache::new());
    let mut a = parse(&world(12, ""));
    check(&mut t, &a, &options, &feedback, "a");
    let mut b = a.clone();
    morph(&mut a, &world(12, "modify"));
    morph(&mut b, &world(12, "service"));
    check(&mut t, &a, &options, &feedback, "a modified");
    assert!(t.0.last_reuse().change_log);
    check(&mut t, &b, &options, &feedback, "b, a copy edited apart");
    assert!(!t.0.last_reuse().change_log);
    check(&mut t, &a, &options, &feedback, "a again");
    assert!(!t.0.last_reuse().change_log);
    check(&mut t, &a, &options, &feedback, "a once more");
    assert!(t.0.last_reuse().change_log);
    // A direct edit that changes a list's size.
    let extra = a.http_routes[0].clone();
    a.http_routes.push(extra);
    check(&mut t, &a, &options, &feedback, "pushed directly");
    assert!(!t.0.last_reuse().change_log);
    a.http_routes.pop();
    check(&mut t, &a, &options, &feedback, "popped directly");
    // A duplicate key through `insert`.
    let (docs, _) = portico_translator::parse_file("in.yaml", &world(12, "modify"));
    let route = docs
        .iter()
        .find(|d| d.key.kind == "HTTPRoute")
        .unwrap()
        .clone();
    a.insert("dup.yaml", route.clone());
    check(&mut t, &a, &options, &feedback, "duplicate");
    check(&mut t, &a, &options, &feedback, "duplicate again");
    a.remove(&route.key);
    check(&mut t, &a, &options, &feedback, "duplicate removed");
    a.insert("in.yaml", route);
    check(&mut t, &a, &options, &feedback, "restored");
    a.revisions.clear();
    check(&mut t, &a, &options, &feedback, "revisions cleared");
}
