//! Shortcuts that must give exactly what the general path gives, checked on every golden
//! input: status text written directly (no `Value` tree) is serde_json's compact rendering;
//! HTTPRoute specs converted field by field equal the JSON round trip.

use std::path::Path;

use portico_translator::resolve::model::{HttpRouteSpec, convert, http_route_spec};
use portico_translator::{Feedback, Options, Resources, translate};

/// Every golden input, by file name.
fn inputs() -> Vec<(String, Resources)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".in.yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let (resources, _) = Resources::from_yaml(&name, &text);
        out.push((name, resources));
    }
    // What the golden inputs lack.
    let extra = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: extra\n\
        spec:\n  rules:\n  - sessionPersistence:\n      sessionName: s\n      type: Cookie\n\
        \x20   retry:\n      attempts: 2\n      codes: [500]\n      backoff: 1s\n\
        \x20   backendRefs:\n    - name: svc\n      weight: 0\n      filters:\n\
        \x20     - type: RequestHeaderModifier\n        requestHeaderModifier:\n\
        \x20         set: [{name: a, value: b}]\n";
    let (resources, problems) = Resources::from_yaml("extra.yaml", extra);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(resources.http_routes.len(), 1);
    out.push(("extra.yaml".into(), resources));
    out
}

#[test]
fn http_route_specs_convert_field_by_field_as_through_json() {
    let mut checked = 0;
    for (name, resources) in inputs() {
        for r in &resources.http_routes {
            let through_json: HttpRouteSpec = convert(&r.spec);
            assert_eq!(
                format!("{:?}", http_route_spec(&r.spec)),
                format!("{through_json:?}"),
                "{name}: {:?}",
                r.metadata.name
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} routes checked");
}

#[test]
fn status_text_is_serde_jsons_compact_rendering() {
    let mut checked = 0;
    for (name, resources) in inputs() {
        let t = translate(&resources, &Options::default(), &Feedback::default());
        for s in t.statuses.iter() {
            let text = s.status.as_str();
            assert_eq!(
                text,
                s.status.to_value().to_string(),
                "{name}: {} {}",
                s.kind,
                s.name
            );
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} statuses checked");
}
