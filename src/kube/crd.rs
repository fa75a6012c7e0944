//! The CustomResourceDefinitions of Portico's own kinds, generated from the Rust types the
//! translator decodes. `deploy/10-crds.yaml` is this output; a test fails when it drifts
//! (`UPDATE_GOLDEN=1 cargo test -p portico crd` rewrites it).

use portico_translator::backend_kind::{BackendSpec, GROUP, KIND};
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use super::kinds::{BACKEND_PLURAL, BACKEND_VERSION};

/// The schema of a spec type in the form Kubernetes accepts (structural, inlined, no `$schema`),
/// generated the way kube's `CustomResource` derive does it.
fn spec_schema<T: schemars::JsonSchema>() -> Value {
    let generator = SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(schemars::transform::AddNullable::default())
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .with_transform(kube::core::schema::OptionalEnum)
        .into_generator();
    let mut schema =
        serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or_default();
    if let Some(map) = schema.as_object_mut() {
        map.remove("title");
        map.remove("$schema");
    }
    schema
}

/// `backends.portico.dev`.
pub fn backend_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{BACKEND_PLURAL}.{GROUP}")},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": format!("{KIND}List"),
                "plural": BACKEND_PLURAL,
                "singular": KIND.to_lowercase(),
                "categories": ["portico"],
            },
            "scope": "Namespaced",
            "versions": [{
                "name": BACKEND_VERSION,
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "description": "Endpoints named directly (IP, hostname or unix socket), for Gateway API backendRefs of kind Backend.",
                    "type": "object",
                    "properties": {
                        "spec": spec_schema::<BackendSpec>(),
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    },
                }},
            }],
        },
    })
}

/// Every CRD of Portico's kinds, as one YAML stream.
pub fn crds_yaml() -> String {
    let mut out = String::from(
        "# Portico's own kinds. Generated from the Rust types by src/kube/crd.rs; do not edit.\n\
         # Regenerate: UPDATE_GOLDEN=1 cargo test -p portico crd\n",
    );
    // One document per kind; Backend is the only one so far.
    out.push_str("---\n");
    out.push_str(&serde_yaml::to_string(&backend_crd()).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_file_matches_the_rust_types() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/10-crds.yaml");
        let want = crds_yaml();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is stale; run UPDATE_GOLDEN=1 cargo test -p portico crd",
            path.display()
        );
    }

    #[test]
    fn the_schema_describes_every_field() {
        let crd = backend_crd();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let endpoint = &spec["properties"]["endpoints"]["items"]["properties"];
        for field in ["ip", "hostname", "unix", "port"] {
            assert!(
                endpoint.get(field).is_some(),
                "{field} missing from {spec:#}"
            );
        }
        assert!(spec["properties"].get("appProtocol").is_some(), "{spec:#}");
        assert!(
            !spec.to_string().contains("$ref"),
            "schemas must be inlined: {spec:#}"
        );
    }
}
