//! Large inputs are translated in parallel (`par`): the result must be the one a single
//! thread gives, byte for byte, whatever the number of threads. The input is large enough
//! for every parallel path (compilation, attachment, entries, protos, origins) and varied
//! enough that order matters: hostnames, several rules and matches, Services and Backends,
//! missing and refused references, duplicate objects.

use std::fmt::Write;

use portico_translator::render::fleet_to_any;
use portico_translator::{Feedback, Options, Resources, Translation, Translator, translate};

const ROUTES: usize = 1500;

fn config() -> String {
    let mut y = String::new();
    y.push_str(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  name: portico\n\
         spec:\n  controllerName: portico.dev/gateway-controller\n",
    );
    for (gw, ns, port) in [("gw-a", "a", 10080), ("gw-b", "b", 10090)] {
        let _ = write!(
            y,
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: {gw}\n  namespace: {ns}\n\
             spec:\n  gatewayClassName: portico\n  listeners:\n\
             \x20 - name: plain\n    protocol: HTTP\n    port: {port}\n    allowedRoutes:\n      namespaces:\n        from: All\n\
             \x20 - name: wild\n    protocol: HTTP\n    port: {}\n    hostname: \"*.example.com\"\n",
            port + 1
        );
    }
    for i in 0..300 {
        let ns = if i % 2 == 0 { "a" } else { "b" };
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  namespace: {ns}\n\
             spec:\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: svc-{i}-x\n  namespace: {ns}\n\
             \x20 labels:\n    kubernetes.io/service-name: svc-{i}\naddressType: IPv4\n\
             ports:\n- name: http\n  port: 8080\nendpoints:\n- addresses: [\"10.1.{}.{}\"]\n",
            i / 200,
            i % 200 + 1
        );
        let _ = write!(
            y,
            "---\napiVersion: portico.dev/v1alpha1\nkind: Backend\nmetadata:\n  name: be-{i}\n  namespace: {ns}\n\
             spec:\n  endpoints:\n  - ip: 127.0.{}.{}\n    port: 8080\n",
            i / 200,
            i % 200 + 1
        );
    }
    for r in 0..ROUTES {
        let ns = ["a", "b", "c"][r % 3];
        let name = if r % 97 == 5 {
            // A duplicate object: same key as another route.
            format!("r-{}", r - 1)
        } else {
            format!("r-{r}")
        };
        let _ = write!(
            y,
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: {ns}\n\
             \x20 creationTimestamp: \"2026-01-{:02}T00:00:00Z\"\nspec:\n  parentRefs:\n",
            r % 28 + 1
        );
        match r % 4 {
            0 => y.push_str("  - name: gw-a\n    namespace: a\n"),
            1 => y.push_str("  - name: gw-a\n    namespace: a\n    sectionName: wild\n"),
            2 => y.push_str("  - name: gw-b\n    namespace: b\n  - name: gw-a\n    namespace: a\n"),
            _ => y.push_str("  - name: gw-b\n    namespace: b\n    sectionName: plain\n"),
        }
        if r % 5 == 1 {
            let _ = write!(y, "  hostnames:\n  - h{}.example.com\n", r % 40);
        }
        y.push_str("  rules:\n");
        for rule in 0..(r % 3 + 1) {
            let (kind, value) = match (r + rule) % 3 {
                0 => ("PathPrefix", format!("/p{}", r % 50)),
                1 => ("Exact", format!("/e/{r}/{rule}")),
                _ => ("RegularExpression", format!("/x{}/[0-9]+", r % 7)),
            };
            let _ = write!(
                y,
                "  - matches:\n    - path:\n        type: {kind}\n        value: {value}\n"
            );
            if r % 6 == 0 {
                y.push_str("      headers:\n      - name: x-tier\n        value: gold\n");
            }
            if r % 11 == 3 {
                y.push_str(
                    "    filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier:\n\
                     \x20       set:\n        - name: x-route\n          value: yes\n",
                );
            }
            let target = (r * 7 + rule) % 300;
            let target_ns = if target % 2 == 0 { "a" } else { "b" };
            let backend = match (r + rule) % 5 {
                0 | 1 => format!(
                    "    - name: svc-{target}\n      namespace: {target_ns}\n      port: 80\n"
                ),
                2 | 3 => format!(
                    "    - group: portico.dev\n      kind: Backend\n      name: be-{target}\n      namespace: {target_ns}\n      port: 8080\n"
                ),
                // Missing.
                _ => format!("    - name: nope-{r}\n      port: 80\n"),
            };
            let _ = write!(y, "    backendRefs:\n{backend}");
        }
    }
    y
}

/// Everything a translation says, encoded resources as bytes.
fn rendered(t: &Translation) -> String {
    let mut out = String::new();
    for (name, fleet) in &t.fleets {
        for (ty, n, any) in fleet_to_any(fleet) {
            let _ = writeln!(out, "{name} {ty} {n} {:?}", any.value);
        }
        for ((ty, n), keys) in fleet.origins.iter() {
            let _ = writeln!(out, "{name} origin {ty} {n} {keys:?}");
        }
    }
    let _ = writeln!(out, "{}", serde_json::to_string(&t.ir).unwrap());
    let _ = writeln!(out, "{}", portico_translator::status_documents(&t.statuses));
    for p in &t.problems {
        let _ = writeln!(out, "{p}");
    }
    out
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

#[test]
fn parallel_translation_is_the_sequential_one() {
    let (res, problems) = Resources::from_yaml("big.yaml", &config());
    assert!(problems.is_empty(), "{problems:?}");
    let (options, feedback) = (Options::default(), Feedback::default());
    let one = pool(1).install(|| rendered(&translate(&res, &options, &feedback)));
    assert!(one.contains("nope-"), "the input has unresolved references");
    let many = pool(4).install(|| {
        let scratch = rendered(&translate(&res, &options, &feedback));
        // A cold `Translator` goes through the memo's paths.
        let cold = rendered(&Translator::new().translate(&res, &options, &feedback));
        (scratch, cold)
    });
    assert!(one == many.0, "4 threads differ from 1");
    assert!(
        one == many.1,
        "a cold Translator on 4 threads differs from 1"
    );
}
