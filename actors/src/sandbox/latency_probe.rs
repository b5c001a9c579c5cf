#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::Instant;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, TypedStore};
use super::tests::{sandbox, store_with_template};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn latency_probe() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
    let _ = store_with_template().await;
    for t in agenttier_crds::defaults::default_cluster_templates() { store.create_obj(&t).await.unwrap(); }
    let created = store.create_obj(&sandbox("a", "minimal-shell")).await.unwrap();
    let n = 200;
    let t = Instant::now();
    for _ in 0..n { let _ = store.get_setting("x").await.unwrap(); }
    println!("get_setting: {:?}", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n { let _ = super::StoreTemplates::load(store.as_ref()).await.unwrap(); }
    println!("templates load: {:?}", t.elapsed() / n);
    let mut s = created.clone();
    let t = Instant::now();
    for _ in 0..n { s = store.replace_obj(&s).await.unwrap(); }
    println!("replace: {:?}", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n { store.append_event(crate::audit::event(&super::SandboxKey::new("d","a"), crate::audit::AuditAction::Exec, "x", "y")).await.unwrap(); }
    println!("append_event: {:?}", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n { tokio::task::spawn_blocking(|| 1).await.unwrap(); }
    println!("spawn_blocking hop: {:?}", t.elapsed() / n);
}
