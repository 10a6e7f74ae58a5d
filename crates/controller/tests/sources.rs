//! Sources shared by every Application: concurrent reconciles of one repository cause
//! one fetch, and an unchanged (commit, path, options) is rendered once — against a
//! real git server on loopback.

use std::sync::Arc;

use capstan_controller::sources::{SourceOptions, Sources};
use capstan_engine::render::{RenderOptions, Scopes};
use capstan_engine::source::GitSource;
use capstan_testkit::{GitServer, TestRepo};

/// Fetches that reached the server: each starts with a ref advertisement.
fn fetches_served(server: &GitServer) -> usize {
    server
        .request_log()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/info/refs"))
        .count()
}

async fn round(sources: Arc<Sources>, src: GitSource) -> Vec<String> {
    // 20 reconciles at once, 10 per path.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (sources, src) = (sources.clone(), src.clone());
            tokio::spawn(async move {
                sources.fetch(&src, false).await.unwrap();
                let rev = sources.resolve(&src, "main").await.unwrap();
                let path = if i % 2 == 0 { "a" } else { "b" };
                let objs = sources
                    .desired(
                        &src,
                        &rev,
                        path,
                        &RenderOptions::default(),
                        "ns",
                        &Scopes::builtin(),
                    )
                    .await
                    .unwrap();
                assert_eq!(objs.len(), 1);
                assert_eq!(objs[0].id.name, path);
                rev.id
            })
        })
        .collect();
    let mut revs = Vec::new();
    for t in tasks {
        revs.push(t.await.unwrap());
    }
    revs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_applications_of_one_repository_share_a_fetch_and_each_render() {
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "env.git");
    for app in ["a", "b"] {
        repo.write(
            format!("{app}/cm.yaml"),
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {app}\ndata:\n  k: v\n"),
        );
    }
    repo.commit("two apps");
    let server = GitServer::start(root.path(), None).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let sources = Arc::new(Sources::new(
        cache.path().to_path_buf(),
        SourceOptions::default(),
    ));
    let src = GitSource::new(server.url("env.git"));

    let revs = round(sources.clone(), src.clone()).await;
    assert!(revs.iter().all(|r| *r == repo.head()));
    let c = sources.counters();
    assert_eq!(c.fetches, 1, "{c:?}");
    assert_eq!(c.fetches_reused, 19, "{c:?}");
    assert_eq!(
        fetches_served(&server),
        1,
        "one fetch reached the git server"
    );
    let first_renders = c.renders;
    assert_eq!(
        (first_renders, c.renders_cached),
        (2, 18),
        "each path rendered once, the other Applications wait for it: {c:?}"
    );

    // The same commit again: nothing fetched (within the reuse window), nothing
    // rendered — every desired set comes from the cache.
    round(sources.clone(), src.clone()).await;
    let c = sources.counters();
    assert_eq!(c.fetches, 1, "{c:?}");
    assert_eq!(c.renders, first_renders, "{c:?}");
    assert_eq!(c.renders_cached, 40 - first_renders, "{c:?}");

    // A new commit: one forced fetch, and the path is rendered again for it.
    repo.write(
        "a/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: w\n",
    );
    let second = repo.commit("change a");
    sources.fetch(&src, true).await.unwrap();
    let rev = sources.resolve(&src, "main").await.unwrap();
    assert_eq!(rev.id, second);
    let objs = sources
        .desired(
            &src,
            &rev,
            "a",
            &RenderOptions::default(),
            "ns",
            &Scopes::builtin(),
        )
        .await
        .unwrap();
    assert_eq!(objs[0].object["data"]["k"], "w");
    let c = sources.counters();
    assert_eq!(c.fetches, 2, "{c:?}");
    assert_eq!(c.renders, first_renders + 1, "{c:?}");
    assert_eq!(fetches_served(&server), 2);
}
