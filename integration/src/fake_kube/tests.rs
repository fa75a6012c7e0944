//! The fake API server against the real kube client.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::json;

use super::FakeKube;

async fn client(fake: &FakeKube) -> kube::Client {
    let dir = tempfile::tempdir().unwrap();
    let path = fake.write_kubeconfig(dir.path()).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn config_map(name: &str, value: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}, "data": {"k": value}})
}

/// Next watcher event that carries an object or marks a (re)list, skipping errors.
async fn next(
    stream: &mut (impl futures::Stream<Item = watcher::Result<Event<ConfigMap>>> + Unpin),
) -> String {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event in time");
        match event.expect("the watcher never ends") {
            Ok(Event::Apply(cm)) | Ok(Event::InitApply(cm)) => {
                let name = cm.metadata.name.unwrap_or_default();
                let value = cm
                    .data
                    .and_then(|d| d.get("k").cloned())
                    .unwrap_or_default();
                return format!("apply {name}={value}");
            }
            Ok(Event::Delete(cm)) => {
                return format!("delete {}", cm.metadata.name.unwrap_or_default());
            }
            Ok(Event::Init) => return "init".into(),
            Ok(Event::InitDone) => return "init-done".into(),
            Err(_) => continue,
        }
    }
}

#[tokio::test]
async fn watch_resumes_after_a_cut_without_losing_updates() {
    let fake = FakeKube::start().await.unwrap();
    fake.apply(config_map("a", "1")).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&fake).await, "ns");
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    assert_eq!(next(&mut events).await, "init");
    assert_eq!(next(&mut events).await, "apply a=1");
    assert_eq!(next(&mut events).await, "init-done");

    fake.apply(config_map("a", "2")).unwrap();
    assert_eq!(next(&mut events).await, "apply a=2");

    // Changes made while the connection is down are replayed from the resourceVersion.
    fake.cut_watches();
    fake.apply(config_map("b", "1")).unwrap();
    fake.delete("v1", "ConfigMap", "ns", "a").unwrap();
    assert_eq!(next(&mut events).await, "apply b=1");
    assert_eq!(next(&mut events).await, "delete a");
}

#[tokio::test]
async fn a_compacted_history_forces_a_relist() {
    let fake = FakeKube::start().await.unwrap();
    fake.apply(config_map("a", "1")).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&fake).await, "ns");
    let mut events = watcher(api, watcher::Config::default()).boxed();
    for expected in ["init", "apply a=1", "init-done"] {
        assert_eq!(next(&mut events).await, expected);
    }
    fake.cut_watches();
    fake.apply(config_map("a", "2")).unwrap();
    fake.compact();
    for expected in ["init", "apply a=2", "init-done"] {
        assert_eq!(next(&mut events).await, expected);
    }
    let requests = fake.requests();
    assert!(
        requests.iter().filter(|r| !r.contains("watch=")).count() >= 2,
        "{requests:#?}"
    );
}

#[tokio::test]
async fn status_patches_touch_only_status_and_honour_resource_version() {
    let fake = FakeKube::start().await.unwrap();
    let gateway = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "ns"},
        "spec": {"gatewayClassName": "portico", "listeners": []},
    });
    let stored = fake.apply(gateway).unwrap();
    let rv = stored["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let resource = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway"),
        "gateways",
    );
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client(&fake).await, "ns", &resource);

    let patch = json!({"metadata": {"resourceVersion": rv}, "spec": {"gatewayClassName": "x"}, "status": {"a": 1}});
    api.patch_status("gw", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let now = fake
        .get("gateway.networking.k8s.io/v1", "Gateway", "ns", "gw")
        .unwrap();
    assert_eq!(now["status"], json!({"a": 1}));
    assert_eq!(now["spec"]["gatewayClassName"], json!("portico"));

    let stale = api
        .patch_status("gw", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_err();
    assert!(
        matches!(stale, kube::Error::Api(ref s) if s.code == 409),
        "{stale:?}"
    );

    let apply = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "status": {"b": 2}});
    api.patch_status(
        "gw",
        &PatchParams::apply("portico").force(),
        &Patch::Apply(&apply),
    )
    .await
    .unwrap();
    let now = fake
        .get("gateway.networking.k8s.io/v1", "Gateway", "ns", "gw")
        .unwrap();
    assert_eq!(now["status"], json!({"a": 1, "b": 2}));
}

#[tokio::test]
async fn leases_are_created_once_and_replaced_with_resource_version_guard() {
    let fake = FakeKube::start().await.unwrap();
    let api: Api<Lease> = Api::namespaced(client(&fake).await, "portico-system");
    let mut lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "portico"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &lease).await.unwrap();
    let again = api
        .create(&PostParams::default(), &lease)
        .await
        .unwrap_err();
    assert!(
        matches!(again, kube::Error::Api(ref s) if s.code == 409),
        "{again:?}"
    );

    lease.metadata = created.metadata.clone();
    lease.spec.as_mut().unwrap().holder_identity = Some("b".into());
    api.replace("portico", &PostParams::default(), &lease)
        .await
        .unwrap();
    lease.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let stale = api
        .replace("portico", &PostParams::default(), &lease)
        .await
        .unwrap_err();
    assert!(
        matches!(stale, kube::Error::Api(ref s) if s.code == 409),
        "{stale:?}"
    );
    let now = api.get("portico").await.unwrap();
    assert_eq!(now.spec.unwrap().holder_identity.as_deref(), Some("b"));
}

#[tokio::test]
async fn missing_kinds_answer_404() {
    let types = super::default_types()
        .into_iter()
        .filter(|t| t.kind != "UDPRoute")
        .collect();
    let fake = FakeKube::with_types(types).await.unwrap();
    let resource = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1alpha2", "UDPRoute"),
        "udproutes",
    );
    let api: Api<kube::api::DynamicObject> = Api::all_with(client(&fake).await, &resource);
    let err = api.list(&Default::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
}
