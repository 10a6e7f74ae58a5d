//! Helm charts from chart repositories and OCI registries: charts built with the real
//! `helm package`, indexed by `helm repo index` and served on loopback, or pushed with
//! `helm push` into a real registry (Debian's docker-registry); fetched into a
//! [`ChartCache`], then rendered with the real `helm template`.

use std::path::Path;

use capstan_engine::destination::Destination;
use capstan_engine::images::registry::RegistryError;
use capstan_engine::render::{
    self, ChartDir, DesiredObject, HelmOptions, RenderError, Scopes, ValuesKind, ValuesReference,
};
use capstan_engine::source::helm::{ChartCacheOptions, ChartError, auth_from_secret};
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
        ca_pem: Some(std::fs::read(front.ca_file()).unwrap()),
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

const SERVICE_MONITOR_CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {plural: servicemonitors, singular: servicemonitor, kind: ServiceMonitor}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
";

#[test]
fn capabilities_follow_the_destinations_discovery_and_version() {
    let cluster = TestCluster::start();
    let repo = ChartRepo::start(None);
    repo.add(&capabilities_chart());
    let cache = ChartCache::new(tempfile::tempdir().unwrap().path());
    let dest = cluster.block_on(async { Destination::new(cluster.client().await, "default") });
    let render_for = |dest: &Destination| {
        cluster.block_on(async {
            let caps = dest.capabilities().await.unwrap();
            let src = ChartSource::new(repo.url(), "probe", "0.1.0");
            let chart = cache.fetch(&src, &HelmAuth::default()).await.unwrap();
            let opts = HelmOptions {
                api_versions: caps.api_versions.clone(),
                kube_version: caps.kube_version.clone(),
                ..helm()
            };
            (caps, render_chart(&chart_dir(&chart, None), &opts).await)
        })
    };

    let (caps, objects) = render_for(&dest);
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
    assert_eq!(data(&objects, "capabilities", "deployments"), Some("true"));
    assert_eq!(data(&objects, "capabilities", "monitoring"), Some("false"));
    let shown = data(&objects, "capabilities", "kube").unwrap();
    assert!(
        shown.starts_with(kube.split('+').next().unwrap()),
        "{shown} for {kube}"
    );

    // The CRD is installed: after discovery runs again, templates see its kind.
    cluster.apply(SERVICE_MONITOR_CRD);
    cluster.block_on(dest.refresh()).unwrap();
    let (caps, objects) = render_for(&dest);
    assert!(
        caps.api_versions
            .iter()
            .any(|a| a == "monitoring.coreos.com/v1/ServiceMonitor"),
        "{:?}",
        caps.api_versions
    );
    assert_eq!(data(&objects, "capabilities", "monitoring"), Some("true"));
}

#[test]
fn credentials_and_a_private_ca_come_from_a_secret() {
    let cluster = TestCluster::start();
    let repo = repo_with_versions(Some(BasicAuth::new("alice", "s3cret")));
    let front = HttpsFront::start(repo.addr()).unwrap();
    let ca = std::fs::read_to_string(front.ca_file()).unwrap();
    let secret = |name: &str, password: &str| {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "charts-secret"},
            "stringData": {"username": "alice", "password": password, "ca.crt": ca},
        })
        .to_string()
    };
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: charts-secret\n");
    cluster.apply(&secret("good", "s3cret"));
    cluster.apply(&secret("bad", "wrong-password"));
    cluster.block_on(async {
        let client = cluster.client().await;
        let cache = ChartCache::new(tempfile::tempdir().unwrap().path());
        let src = ChartSource::new(front.url("charts"), "app", "1.x");

        let auth = auth_from_secret(&client, "charts-secret", "good")
            .await
            .unwrap();
        assert_eq!(cache.fetch(&src, &auth).await.unwrap().version, "1.9.0");

        let wrong = auth_from_secret(&client, "charts-secret", "bad")
            .await
            .unwrap();
        let e = cache.fetch(&src, &wrong).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "chart app 1.x from {}: {}/index.yaml refused the credentials of user \"alice\"",
                front.url("charts"),
                front.url("charts")
            )
        );
        assert!(!format!("{e:?}").contains("wrong-password"));

        let e = auth_from_secret(&client, "charts-secret", "nothing")
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the chart repository Secret charts-secret/nothing does not exist"
        );
    });
}

/// A chart whose ConfigMap shows which layer of values set each key.
fn layers_chart() -> TestChart {
    let keys = ["file", "configmap", "secret", "inline", "set"];
    let mut values = String::new();
    let mut template =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: layers\ndata:\n".to_string();
    for k in keys {
        values.push_str(&format!("{k}: from-chart\n"));
        template.push_str(&format!("  {k}: {{{{ .Values.{k} | quote }}}}\n"));
    }
    values.push_str("image:\n  tag: from-chart\n");
    template.push_str("  tag: {{ .Values.image.tag | quote }}\n");
    TestChart::new("layers", "1.0.0")
        .file("values.yaml", &values)
        .file("templates/layers.yaml", &template)
}

#[test]
fn values_from_configmaps_and_secrets_come_between_values_files_and_inline_values() {
    let cluster = TestCluster::start();
    let ns = "charts-values";
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"
    ));
    cluster.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-values\n  namespace: {ns}\ndata:\n  values.yaml: |\n    configmap: from-configmap\n    secret: from-configmap\n    inline: from-configmap\n    set: from-configmap\n"
    ));
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-secrets\n  namespace: {ns}\nstringData:\n  prod.yaml: |\n    secret: from-secret\n    inline: from-secret\n    set: from-secret\n  tag: \"2.5\"\n"
    ));
    let repo = ChartRepo::start(None);
    repo.add(&layers_chart());
    let values_root = tempfile::tempdir().unwrap();
    std::fs::write(
        values_root.path().join("prod.yaml"),
        "file: from-file\nconfigmap: from-file\nsecret: from-file\ninline: from-file\nset: from-file\n",
    )
    .unwrap();
    cluster.block_on(async {
        let client = cluster.client().await;
        let cache = ChartCache::new(tempfile::tempdir().unwrap().path());
        let src = ChartSource::new(repo.url(), "layers", "");
        let chart = cache.fetch(&src, &HelmAuth::default()).await.unwrap();
        let refs = vec![
            ValuesReference::new(ValuesKind::ConfigMap, "web-values"),
            ValuesReference {
                key: "prod.yaml".into(),
                ..ValuesReference::new(ValuesKind::Secret, "web-secrets")
            },
            ValuesReference {
                key: "tag".into(),
                target_path: Some("image.tag".into()),
                ..ValuesReference::new(ValuesKind::Secret, "web-secrets")
            },
            ValuesReference {
                optional: true,
                ..ValuesReference::new(ValuesKind::ConfigMap, "not-there")
            },
        ];
        let docs = render::values_from(&client, ns, &refs).await.unwrap();
        assert_eq!(docs.len(), 3, "the optional missing one is skipped");
        assert_eq!(docs[1].origin, format!("Secret {ns}/web-secrets key prod.yaml"));
        assert!(!format!("{docs:?}").contains("from-secret"), "{docs:?}");
        let opts = HelmOptions {
            values_files: vec!["prod.yaml".into()],
            values_from: docs,
            values: Some("inline: from-inline\nset: from-inline\n".into()),
            set: vec!["set=from-set".into()],
            release_name: Some("web".into()),
            ..helm()
        };
        let objects = render_chart(&chart_dir(&chart, Some(values_root.path())), &opts).await;
        for (key, layer) in [
            ("file", "from-file"),
            ("configmap", "from-configmap"),
            ("secret", "from-secret"),
            ("inline", "from-inline"),
            ("set", "from-set"),
            ("tag", "2.5"),
        ] {
            assert_eq!(data(&objects, "layers", key), Some(layer), "{key}");
        }

        let missing = [ValuesReference::new(ValuesKind::ConfigMap, "not-there")];
        let e = render::values_from(&client, ns, &missing).await.unwrap_err();
        assert_eq!(e.to_string(), format!("valuesFrom: ConfigMap {ns}/not-there does not exist"));
        let no_key = [ValuesReference::new(ValuesKind::Secret, "web-secrets")];
        let e = render::values_from(&client, ns, &no_key).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("valuesFrom: Secret {ns}/web-secrets has no key \"values.yaml\" (keys: prod.yaml, tag)")
        );
    });
}
