//! Status text is written directly (no `Value` tree): it must stay exactly what rendering the
//! same value with serde_json gives (compact, keys sorted), for every golden input.

use std::path::Path;

use portico_translator::{Feedback, Options, Resources, translate};

#[test]
fn status_text_is_serde_jsons_compact_rendering() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".in.yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let (resources, _) = Resources::from_yaml(&name, &text);
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
