//! End-to-end: `capstan render` and `capstan apply` of Helm charts from a chart
//! repository (built with `helm package`, indexed by `helm repo index`, served on
//! loopback, with basic auth and TLS from a private CA) and from an OCI registry
//! (Debian's docker-registry, charts pushed with `helm push`), into the embedded API
//! server.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use capstan_testkit::charts::{self, ChartRepo, TestChart};
use capstan_testkit::process::{ok, stderr};
use capstan_testkit::registry::{RegistryAuth, RegistryServer};
use capstan_testkit::{BasicAuth, HttpsFront, TestCluster};
use serde_json::Value;

/// `capstan ARGS` with its caches in `cache` and no kubeconfig from the environment.
fn capstan(cache: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
    cmd.args(args)
        .env("CAPSTAN_CACHE_DIR", cache)
        .env("CAPSTAN_HELM", capstan_testkit::tools::helm())
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG")
        .env_remove("CAPSTAN_HELM_USERNAME")
        .env_remove("CAPSTAN_HELM_PASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    capstan_testkit::process::run(cmd, None, Duration::from_secs(120))
}

/// The `data` of the ConfigMap `name` in `capstan render -o json` output.
fn configmap_data(json: &str, name: &str) -> Value {
    let list: Value = serde_json::from_str(json).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no ConfigMap {name} in {json}"))["data"]
        .clone()
}

fn sha256_file(path: &Path) -> String {
    capstan_testkit::registry::sha256_digest(&std::fs::read(path).unwrap())
}

#[test]
fn render_picks_the_version_in_range_and_reads_local_values_files() {
    let repo = ChartRepo::start(None);
    for v in ["1.0.0", "1.2.0", "2.0.0"] {
        repo.add(&TestChart::new("app", v));
    }
    let cache = tempfile::tempdir().unwrap();
    let values = tempfile::tempdir().unwrap();
    let values_file = values.path().join("prod.yaml");
    std::fs::write(&values_file, "greeting: bonjour\n").unwrap();
    let url = repo.url();
    let render = |version: &str| {
        capstan(
            cache.path(),
            &[
                "render",
                "--helm-repo",
                &url,
                "--chart",
                "app",
                "--version",
                version,
                "--values",
                values_file.to_str().unwrap(),
                "--namespace",
                "shop",
                "-o",
                "json",
            ],
            &[],
        )
    };

    let out = render(">=1 <2");
    let data = configmap_data(&ok(&out), "app");
    assert_eq!(data["version"], "1.2.0", "the highest version in the range");
    assert_eq!(data["greeting"], "bonjour", "the local values file");
    let digest = sha256_file(&repo.dir().join("app-1.2.0.tgz"));
    assert!(
        stderr(&out).contains(&format!(
            "rendered 1 objects from chart app 1.2.0 ({})",
            &digest[..19]
        )),
        "{}",
        stderr(&out)
    );
    let paths: Vec<String> = repo.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/charts/index.yaml", "/charts/app-1.2.0.tgz"]);

    // Another run: the index is read again, the archive comes from the cache by digest.
    repo.reset_requests();
    let again = render("1.2.0");
    assert_eq!(configmap_data(&ok(&again), "app")["version"], "1.2.0");
    let paths: Vec<String> = repo.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/charts/index.yaml"], "no second download");

    let missing = render("^3");
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(
        stderr(&missing).trim(),
        format!(
            "error: chart app ^3 from {url}: no version matches (versions: 2.0.0, 1.2.0, 1.0.0)"
        )
    );
    let no_chart = capstan(
        cache.path(),
        &["render", "--helm-repo", &url, "--chart", "web"],
        &[],
    );
    assert_eq!(no_chart.status.code(), Some(2));
    assert!(
        stderr(&no_chart).contains(&format!(
            "chart web from {url}: the repository has no such chart (charts: app)"
        )),
        "{}",
        stderr(&no_chart)
    );
}

#[test]
fn a_repository_over_https_with_basic_auth_needs_the_ca_and_the_right_password() {
    let repo = ChartRepo::start(Some(BasicAuth::new("ci", "s3cret-token")));
    repo.add(&TestChart::new("app", "0.4.0"));
    let front = HttpsFront::start(repo.addr()).unwrap();
    let url = front.url("charts");
    let ca = front.ca_file().display().to_string();
    let cache = tempfile::tempdir().unwrap();
    let render = |password: &str, ca: Option<&str>| {
        let mut args = vec![
            "render",
            "--helm-repo",
            &url,
            "--chart",
            "app",
            "--helm-username",
            "ci",
            "-o",
            "json",
        ];
        if let Some(ca) = ca {
            args.extend(["--helm-ca-file", ca]);
        }
        capstan(
            cache.path(),
            &args,
            &[
                ("CAPSTAN_HELM_PASSWORD", password),
                ("SSL_CERT_FILE", "/dev/null"),
            ],
        )
    };

    let untrusted = render("s3cret-token", None);
    assert_eq!(untrusted.status.code(), Some(2));
    let err = stderr(&untrusted);
    assert!(
        err.starts_with(&format!(
            "error: chart app from {url}: {url}/index.yaml is unreachable"
        )),
        "{err}"
    );
    assert!(repo.requests().is_empty(), "nothing reached the repository");

    let wrong = render("wrong-password", Some(&ca));
    assert_eq!(wrong.status.code(), Some(2));
    assert_eq!(
        stderr(&wrong).trim(),
        format!(
            "error: chart app from {url}: {url}/index.yaml refused the credentials of user \"ci\""
        )
    );
    assert!(!stderr(&wrong).contains("wrong-password"));

    let out = render("s3cret-token", Some(&ca));
    assert_eq!(configmap_data(&ok(&out), "app")["version"], "0.4.0");
    assert!(!stderr(&out).contains("s3cret-token"));
    let served = repo.requests();
    assert!(
        served
            .iter()
            .any(|r| r.status == 200 && r.user.as_deref() == Some("ci")),
        "{served:?}"
    );
}

/// A chart whose ConfigMap shows `.Capabilities` and the values it was given.
fn probe_chart(version: &str) -> TestChart {
    TestChart::new("probe", version).file(
        "templates/capabilities.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: capabilities\ndata:\n  deployments: {{ .Capabilities.APIVersions.Has \"apps/v1/Deployment\" | quote }}\n  widgets: {{ .Capabilities.APIVersions.Has \"example.com/v1/Widget\" | quote }}\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n  greeting: {{ .Values.greeting | quote }}\n",
    )
}

const WIDGET_CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
";

#[test]
fn apply_of_an_oci_chart_sees_the_clusters_capabilities_and_values_from_a_configmap() {
    let cluster = TestCluster::start();
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: probe\n");
    cluster.apply(WIDGET_CRD);
    cluster.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe-values\n  namespace: probe\ndata:\n  values.yaml: |\n    greeting: from the cluster\n",
    );
    let registry = RegistryServer::start(RegistryAuth::basic("bob", "hunter22"));
    let packages = tempfile::tempdir().unwrap();
    let mut url = String::new();
    for v in ["0.1.0", "0.2.0", "1.0.0"] {
        let archive = probe_chart(v).package(packages.path());
        url = charts::push(&registry, &archive, "team/charts");
    }
    let cache = tempfile::tempdir().unwrap();
    let kubeconfig = cluster.kubeconfig_path().display().to_string();
    let apply = |password: &str| {
        capstan(
            cache.path(),
            &[
                "apply",
                "--helm-repo",
                &url,
                "--chart",
                "probe",
                "--version",
                "0.x",
                "--helm-plain-http",
                "--helm-username",
                "bob",
                "--values-from",
                "configmap/probe-values",
                "--app",
                "probe",
                "--namespace",
                "probe",
                "--kubeconfig",
                &kubeconfig,
            ],
            &[("CAPSTAN_HELM_PASSWORD", password)],
        )
    };

    let wrong = apply("not-it");
    assert_eq!(wrong.status.code(), Some(2), "{}", stderr(&wrong));
    let err = stderr(&wrong);
    assert!(
        err.starts_with(&format!(
            "error: chart probe 0.x from {url}: reading the registry"
        )),
        "{err}"
    );
    assert!(!err.contains("not-it"), "{err}");

    let out = apply("hunter22");
    ok(&out);
    let digest = sha256_file(&packages.path().join("probe-0.2.0.tgz"));
    assert!(
        stderr(&out).contains(&format!("chart probe 0.2.0 ({})", &digest[..19])),
        "{}",
        stderr(&out)
    );
    let data = |key: &str| {
        cluster.kubectl_ok(&[
            "get",
            "configmap",
            "capabilities",
            "-n",
            "probe",
            "-o",
            &format!("jsonpath={{.data.{key}}}"),
        ])
    };
    assert_eq!(data("deployments"), "true");
    assert_eq!(data("widgets"), "true", "the CRD the cluster serves");
    assert!(data("kube").starts_with("v1."), "{}", data("kube"));
    assert_eq!(data("greeting"), "from the cluster");

    let second = apply("hunter22");
    ok(&second);
    assert!(
        stderr(&second).contains("unchanged") && !stderr(&second).contains("configured"),
        "a second apply changes nothing: {}",
        stderr(&second)
    );
}

#[test]
fn values_from_without_a_cluster_is_a_clear_error() {
    let repo = ChartRepo::start(None);
    repo.add(&TestChart::new("app", "1.0.0"));
    let cache = tempfile::tempdir().unwrap();
    let out = capstan(
        cache.path(),
        &[
            "render",
            "--helm-repo",
            &repo.url(),
            "--chart",
            "app",
            "--values-from",
            "secret/app-values",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        "error: --values-from reads ConfigMaps and Secrets of a cluster: give --kubeconfig or --context"
    );
}
