//! Helm charts from chart repositories and OCI registries: charts built with the real
//! `helm package`, indexed by `helm repo index` and served on loopback, or pushed with
//! `helm push` into a real registry (Debian's docker-registry); fetched into a
//! [`ChartCache`], then rendered with the real `helm template`.

use std::path::Path;

use capstan_engine::destination::Destination;
use capstan_engine::images::registry::RegistryError;
use capstan_engine::render::{self, ChartDir, DesiredObject, HelmOptions, RenderError, Scopes};
use capstan_engine::source::helm::{ChartCacheOptions, ChartError};
use capstan_engine::source::{ChartCache, ChartSource, ConfineError, FetchedChart, HelmAuth};
use capstan_testkit::charts::{self, ChartRepo, TarEntry, TestChart};
use capstan_testkit::registry::{RegistryAuth, RegistryServer};
use capstan_testkit::{BasicAuth, HttpsFront, TestCluster};
use sha2::{Digest, Sha256};

fn sha256_file(path: &Path) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
    )
}

fn helm() -> HelmOptions {
    HelmOptions {
        binary: Some(capstan_testkit::tools::helm().display().to_string()),
        ..Default::default()
    }
}

/// A repository holding `app` at a few versions, one of them a prerelease.
fn repo_with_versions(auth: Option<BasicAuth>) -> ChartRepo {
    let repo = ChartRepo::start(auth);
    for v in ["1.0.0", "1.2.0", "1.9.0", "2.0.0", "2.1.0-rc.1"] {
        repo.add(&TestChart::new("app", v));
    }
    repo
}

async fn fetch(cache: &ChartCache, url: &str, version: &str) -> Result<FetchedChart, ChartError> {
    cache
        .fetch(&ChartSource::new(url, "app", version), &HelmAuth::default())
        .await
}

fn chart_dir(chart: &FetchedChart, values_root: Option<&Path>) -> ChartDir {
    ChartDir {
        dir: chart.dir.clone(),
        label: format!("chart {} {}", chart.name, chart.version),
        values_root: values_root.map(Path::to_path_buf),
    }
}

async fn render_chart(chart: &ChartDir, opts: &HelmOptions) -> Vec<DesiredObject> {
    render::render_chart(chart, opts, "prod", &Scopes::builtin())
        .await
        .unwrap_or_else(|e| panic!("rendering {}: {e}", chart.label))
}

fn data<'a>(objects: &'a [DesiredObject], name: &str, key: &str) -> Option<&'a str> {
    objects
        .iter()
        .find(|o| o.id.name == name)
        .and_then(|o| o.object["data"][key].as_str())
}

#[tokio::test]
async fn a_chart_is_fetched_from_a_repository_at_an_exact_version_a_range_or_the_latest() {
    let repo = repo_with_versions(None);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = ChartCache::new(cache_dir.path());

    let exact = fetch(&cache, &repo.url(), "1.2.0").await.unwrap();
    assert_eq!(
        (exact.name.as_str(), exact.version.as_str()),
        ("app", "1.2.0")
    );
    assert_eq!(exact.digest, sha256_file(&repo.dir().join("app-1.2.0.tgz")));
    assert!(exact.dir.join("Chart.yaml").is_file());
    assert!(exact.dir.starts_with(cache_dir.path()));

    let range = fetch(&cache, &repo.url(), ">=1.2 <2").await.unwrap();
    assert_eq!(range.version, "1.9.0", "the highest in the range");
    let latest = fetch(&cache, &repo.url(), "").await.unwrap();
    assert_eq!(
        latest.version, "2.0.0",
        "the latest release, not the prerelease"
    );

    let objects = render_chart(&chart_dir(&range, None), &helm()).await;
    assert_eq!(data(&objects, "app", "version"), Some("1.9.0"));
    assert_eq!(objects[0].id.namespace.as_deref(), Some("prod"));
    let revision = range.revision(">=1.2 <2");
    assert_eq!(
        (revision.id.as_str(), revision.message.as_str()),
        (range.digest.as_str(), "chart app 1.9.0")
    );
}

#[tokio::test]
async fn a_version_no_one_published_is_an_error_listing_the_versions_there_are() {
    let repo = repo_with_versions(None);
    let cache = ChartCache::new(tempfile::tempdir().unwrap().path());
    let e = fetch(&cache, &repo.url(), "^3").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "chart app ^3 from {}: no version matches (versions: 2.1.0-rc.1, 2.0.0, 1.9.0, 1.2.0, 1.0.0)",
            repo.url()
        )
    );
    let e = cache
        .fetch(
            &ChartSource::new(repo.url(), "web", ""),
            &HelmAuth::default(),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .ends_with("the repository has no such chart (charts: app)"),
        "{e}"
    );
}

#[tokio::test]
async fn a_repository_behind_basic_auth_needs_its_credentials() {
    let repo = repo_with_versions(Some(BasicAuth::new("alice", "s3cret")));
    let cache = ChartCache::new(tempfile::tempdir().unwrap().path());
    let src = ChartSource::new(repo.url(), "app", "1.x");

    let e = cache.fetch(&src, &HelmAuth::default()).await.unwrap_err();
    assert!(
        matches!(e, ChartError::AuthenticationRequired { .. }),
        "{e}"
    );
    let wrong = HelmAuth {
        basic: Some(("alice".into(), "wrong-password".into())),
        ..Default::default()
    };
    let e = cache.fetch(&src, &wrong).await.unwrap_err();
    assert!(matches!(e, ChartError::AuthenticationFailed { .. }), "{e}");
    assert!(!format!("{e} {e:?}").contains("wrong-password"), "{e:?}");

    let right = HelmAuth {
        basic: Some(("alice".into(), "s3cret".into())),
        ..Default::default()
    };
    let chart = cache.fetch(&src, &right).await.unwrap();
    assert_eq!(chart.version, "1.9.0");
    let served = repo.requests();
    let ok: Vec<_> = served.iter().filter(|r| r.status == 200).collect();
    assert_eq!(ok.len(), 2, "the index and the archive: {served:?}");
    assert!(ok.iter().all(|r| r.user.as_deref() == Some("alice")));
}

#[tokio::test]
async fn an_archive_whose_digest_is_not_the_index_digest_is_refused() {
    let repo = repo_with_versions(None);
    repo.set_digest("app", "1.2.0", &"0".repeat(64));
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = ChartCache::new(cache_dir.path());
    let e = fetch(&cache, &repo.url(), "1.2.0").await.unwrap_err();
    let ChartError::DigestMismatch {
        expected, actual, ..
    } = &e
    else {
        panic!("{e}");
    };
    assert_eq!(expected, &format!("sha256:{}", "0".repeat(64)));
    assert_eq!(actual, &sha256_file(&repo.dir().join("app-1.2.0.tgz")));
    assert!(
        e.to_string()
            .starts_with("chart app 1.2.0 from http://127.0.0.1:"),
        "{e}"
    );
    assert!(
        !cache_dir.path().join("archives").exists(),
        "nothing is kept"
    );
}

#[tokio::test]
async fn a_second_fetch_is_served_from_the_cache_without_a_request() {
    let repo = repo_with_versions(None);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = ChartCache::new(cache_dir.path());
    let first = fetch(&cache, &repo.url(), "1.x").await.unwrap();
    let paths: Vec<String> = repo.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/charts/index.yaml", "/charts/app-1.9.0.tgz"]);

    repo.reset_requests();
    let second = fetch(&cache, &repo.url(), "1.x").await.unwrap();
    assert_eq!(second, first);
    assert!(repo.requests().is_empty(), "{:?}", repo.requests());

    // Another cache on the same directory (another process, or the index reuse
    // expired): the index is read again, the archive is found by its digest.
    let no_reuse = ChartCacheOptions {
        index_ttl: std::time::Duration::ZERO,
        ..Default::default()
    };
    let other = ChartCache::with_options(cache_dir.path(), no_reuse);
    let third = fetch(&other, &repo.url(), "1.x").await.unwrap();
    assert_eq!(third, first);
    let paths: Vec<String> = repo.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/charts/index.yaml"], "no archive download");
}

#[tokio::test]
async fn chart_archives_with_paths_out_of_the_chart_or_links_are_refused() {
    let repo = ChartRepo::start(None);
    let chart_yaml = "apiVersion: v2\nname: evil\nversion: 1.0.0\n";
    repo.add_archive(
        "evil",
        "1.0.0",
        &charts::tarball(&[
            TarEntry::file("evil/Chart.yaml", chart_yaml),
            TarEntry::file("evil/../../escaped.yaml", "x: 1"),
        ]),
    );
    repo.add_archive(
        "evil",
        "2.0.0",
        &charts::tarball(&[
            TarEntry::file("evil/Chart.yaml", chart_yaml),
            TarEntry::symlink("evil/templates", "/etc"),
        ]),
    );
    repo.add_archive(
        "evil",
        "3.0.0",
        &charts::tarball(&[TarEntry::file("evil/values.yaml", "a: 1")]),
    );
    let root = tempfile::tempdir().unwrap();
    let cache_dir = root.path().join("cache");
    let cache = ChartCache::new(&cache_dir);
    let get = |version: &'static str| {
        let src = ChartSource::new(repo.url(), "evil", version);
        let cache = &cache;
        async move { cache.fetch(&src, &HelmAuth::default()).await.unwrap_err() }
    };

    let e = get("1.0.0").await;
    assert!(matches!(e, ChartError::UnsafeEntry { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("\"evil/../../escaped.yaml\" leaves the chart"),
        "{e}"
    );
    let e = get("2.0.0").await;
    assert!(
        e.to_string().contains("\"evil/templates\" is a link"),
        "{e}"
    );
    let e = get("3.0.0").await;
    assert!(matches!(e, ChartError::NoChartYaml { .. }), "{e}");
    assert!(e.to_string().starts_with("chart evil 3.0.0 from "), "{e}");

    assert!(!root.path().join("escaped.yaml").exists());
    let kept: Vec<_> = std::fs::read_dir(cache_dir.join("charts"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(kept.is_empty(), "no refused chart is kept: {kept:?}");
}

#[tokio::test]
async fn a_repository_with_a_private_ca_is_trusted_through_the_ca_file() {
    let repo = repo_with_versions(None);
    let front = HttpsFront::start(repo.addr()).unwrap();
    let url = front.url("charts");
    let cache = ChartCache::new(tempfile::tempdir().unwrap().path());
    let src = ChartSource::new(&url, "app", "1.0.0");

    let e = cache.fetch(&src, &HelmAuth::default()).await.unwrap_err();
    assert!(matches!(e, ChartError::Unreachable { .. }), "{e}");
    let with_ca = HelmAuth {
        ca_file: Some(front.ca_file().to_path_buf()),
        ..Default::default()
    };
    assert_eq!(cache.fetch(&src, &with_ca).await.unwrap().version, "1.0.0");
    let skip = HelmAuth {
        insecure_skip_tls: true,
        ..Default::default()
    };
    let other = ChartSource::new(&url, "app", "1.2.0");
    assert_eq!(cache.fetch(&other, &skip).await.unwrap().version, "1.2.0");
}

#[tokio::test]
async fn an_oci_chart_is_pulled_with_a_range_and_its_layer_digest_checked() {
    let registry = RegistryServer::start(RegistryAuth::Anonymous);
    let packages = tempfile::tempdir().unwrap();
    let mut url = String::new();
    for v in ["1.0.0", "1.1.0", "2.0.0"] {
        let archive = TestChart::new("app", v).package(packages.path());
        url = charts::push(&registry, &archive, "charts");
    }
    let cache = ChartCache::new(tempfile::tempdir().unwrap().path());
    let plain = HelmAuth {
        plain_http: true,
        ..Default::default()
    };
    let src = ChartSource::new(&url, "app", "~1");
    let chart = cache.fetch(&src, &plain).await.unwrap();
    assert_eq!(chart.version, "1.1.0");
    assert_eq!(
        chart.digest,
        sha256_file(&packages.path().join("app-1.1.0.tgz"))
    );
    let objects = render_chart(&chart_dir(&chart, None), &helm()).await;
    assert_eq!(data(&objects, "app", "version"), Some("1.1.0"));

    let exact = ChartSource::new(&url, "app", "2.0.0");
    assert_eq!(cache.fetch(&exact, &plain).await.unwrap().version, "2.0.0");
    let e = cache
        .fetch(&ChartSource::new(&url, "app", "3.x"), &plain)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .ends_with("no version matches (versions: 2.0.0, 1.1.0, 1.0.0)"),
        "{e}"
    );
    let e = cache.fetch(&src, &HelmAuth::default()).await.unwrap_err();
    assert!(
        e.to_string().contains(&format!("chart app ~1 from {url}")),
        "{e}"
    );
}

#[tokio::test]
async fn an_oci_registry_with_basic_auth_needs_its_credentials() {
    let registry = RegistryServer::start(RegistryAuth::basic("bob", "hunter22"));
    let packages = tempfile::tempdir().unwrap();
    let archive = TestChart::new("app", "0.3.0").package(packages.path());
    let url = charts::push(&registry, &archive, "team/charts");
    let cache = ChartCache::new(tempfile::tempdir().unwrap().path());
    let src = ChartSource::new(&url, "app", ">=0.1");
    let anonymous = HelmAuth {
        plain_http: true,
        ..Default::default()
    };
    let e = cache.fetch(&src, &anonymous).await.unwrap_err();
    assert!(
        matches!(
            &e,
            ChartError::Registry { source, .. }
                if matches!(**source, RegistryError::AuthenticationRequired { .. })
        ),
        "{e}"
    );
    let auth = HelmAuth {
        basic: Some(("bob".into(), "hunter22".into())),
        ..anonymous
    };
    let chart = cache.fetch(&src, &auth).await.unwrap();
    assert_eq!(
        (chart.name.as_str(), chart.version.as_str()),
        ("app", "0.3.0")
    );
}

#[tokio::test]
async fn values_files_of_a_fetched_chart_are_read_from_their_root_and_confined_to_it() {
    let repo = repo_with_versions(None);
    let cache = ChartCache::new(tempfile::tempdir().unwrap().path());
    let chart = fetch(&cache, &repo.url(), "1.0.0").await.unwrap();
    let values = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(values.path().join("envs/prod")).unwrap();
    std::fs::write(
        values.path().join("envs/prod/values.yaml"),
        "greeting: hi prod\n",
    )
    .unwrap();
    let opts = |file: &str| HelmOptions {
        values_files: vec![file.to_string()],
        release_name: Some("shop".into()),
        ..helm()
    };

    let dir = chart_dir(&chart, Some(values.path()));
    let objects = render_chart(&dir, &opts("envs/prod/values.yaml")).await;
    assert_eq!(data(&objects, "shop", "greeting"), Some("hi prod"));

    let e = render::render_chart(&dir, &opts("../outside.yaml"), "prod", &Scopes::builtin())
        .await
        .unwrap_err();
    assert!(
        matches!(e, RenderError::Confine(ConfineError::Escapes { .. })),
        "{e}"
    );
    std::os::unix::fs::symlink("/etc/hostname", values.path().join("link.yaml")).unwrap();
    let e = render::render_chart(&dir, &opts("link.yaml"), "prod", &Scopes::builtin())
        .await
        .unwrap_err();
    assert!(
        matches!(e, RenderError::Confine(ConfineError::SymlinkEscapes { .. })),
        "{e}"
    );
    let e = render::render_chart(
        &chart_dir(&chart, None),
        &opts("values.yaml"),
        "prod",
        &Scopes::builtin(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, RenderError::NoValuesRoot { .. }), "{e}");
}

/// A chart whose templates ask `.Capabilities` what the cluster serves.
fn capabilities_chart() -> TestChart {
    TestChart::new("probe", "0.1.0").file(
        "templates/capabilities.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: capabilities\ndata:\n  monitoring: {{ .Capabilities.APIVersions.Has \"monitoring.coreos.com/v1/ServiceMonitor\" | quote }}\n  deployments: {{ .Capabilities.APIVersions.Has \"apps/v1/Deployment\" | quote }}\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n",
    )
}

#[tokio::test]
async fn templates_see_the_api_versions_and_kube_version_they_are_given() {
    let repo = ChartRepo::start(None);
    repo.add(&capabilities_chart());
    let cache = ChartCache::new(tempfile::tempdir().unwrap().path());
    let src = ChartSource::new(repo.url(), "probe", "");
    let chart = cache.fetch(&src, &HelmAuth::default()).await.unwrap();
    let dir = chart_dir(&chart, None);

    let plain = render_chart(&dir, &helm()).await;
    assert_eq!(data(&plain, "capabilities", "monitoring"), Some("false"));
    let given = HelmOptions {
        api_versions: vec![
            "monitoring.coreos.com/v1".into(),
            "monitoring.coreos.com/v1/ServiceMonitor".into(),
        ],
        kube_version: Some("v1.29.3".into()),
        ..helm()
    };
    let objects = render_chart(&dir, &given).await;
    assert_eq!(data(&objects, "capabilities", "monitoring"), Some("true"));
    assert_eq!(data(&objects, "capabilities", "kube"), Some("v1.29.3"));
}

#[test]
fn the_destination_lists_its_api_versions_and_kube_version_for_helm() {
    let cluster = TestCluster::start();
    cluster.block_on(async {
        let dest = Destination::new(cluster.client().await, "default");
        let caps = dest.capabilities().await.unwrap();
        for expected in ["v1", "v1/ConfigMap", "apps/v1", "apps/v1/Deployment"] {
            assert!(
                caps.api_versions.iter().any(|a| a == expected),
                "{expected}: {:?}",
                caps.api_versions
            );
        }
        assert!(
            !caps
                .api_versions
                .iter()
                .any(|a| a.contains("ServiceMonitor"))
        );
        let kube = caps.kube_version.clone().unwrap();
        assert!(kube.starts_with("v1."), "{kube}");

        let repo = ChartRepo::start(None);
        repo.add(&capabilities_chart());
        let cache = ChartCache::new(tempfile::tempdir().unwrap().path());
        let src = ChartSource::new(repo.url(), "probe", "0.1.0");
        let chart = cache.fetch(&src, &HelmAuth::default()).await.unwrap();
        let opts = HelmOptions {
            api_versions: caps.api_versions,
            kube_version: caps.kube_version,
            ..helm()
        };
        let objects = render_chart(&chart_dir(&chart, None), &opts).await;
        assert_eq!(data(&objects, "capabilities", "deployments"), Some("true"));
        let shown = data(&objects, "capabilities", "kube").unwrap();
        assert!(
            shown.starts_with(kube.split('+').next().unwrap()),
            "{shown} for {kube}"
        );
    });
}
