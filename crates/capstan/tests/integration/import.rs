//! End-to-end: `capstan import` of the two example repositories users come from —
//! argoproj/argocd-example-apps (its `apps/` app-of-apps) and
//! fluxcd/flux2-kustomize-helm-example (`clusters/production`, `apps/production`,
//! `infrastructure/controllers`) — then what comes out applied with kubectl to the
//! embedded API server and synced by a real `capstan controller` from a git server
//! on loopback serving the snapshot. Charts on the internet: podinfo's is replaced by
//! a stand-in of the same name in a chart repository on loopback (`--repo-map`), and
//! syncs; cert-manager's and envoy-gateway's OCI charts are only validated by the API
//! server (a server-side dry run of their Applications). Flux's, cert-manager's and
//! the Gateway API's controllers do not run: a capstan-health rule makes their objects
//! healthy once applied.
//!
//! The snapshots are data-only copies in ../shared/conformance/repos (see its README);
//! each test turns one into a Git repository of its own. When CI is set they must
//! exist; elsewhere a test without them says so and checks nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use capstan_testkit::charts::{ChartRepo, TestChart};
use capstan_testkit::process::{ok, stderr as err, stdout as out};
use capstan_testkit::{GitServer, TestCluster, TestRepo};
use serde_json::Value;

const ARGO_URL: &str = "https://github.com/argoproj/argocd-example-apps";
const FLUX_URL: &str = "ssh://git@github.com/fluxcd/flux2-kustomize-helm-example";
const PODINFO_CHARTS: &str = "https://stefanprodan.github.io/podinfo";

fn conformance() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/repos");
    if dir.join("README.md").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but the conformance data is missing at {}",
        dir.display()
    );
    eprintln!(
        "conformance data not found at {}: the example repositories were not imported",
        dir.display()
    );
    None
}

/// Commit every file of `from` into `repo` (the snapshot is never modified).
fn copy_into(repo: &TestRepo, from: &Path, rel: &Path) {
    for entry in std::fs::read_dir(from.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let r = rel.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_into(repo, from, &r);
        } else {
            repo.write(&r, std::fs::read(entry.path()).unwrap());
        }
    }
}

struct Env {
    cluster: TestCluster,
    server: GitServer,
    repo: TestRepo,
    _root: tempfile::TempDir,
    state: tempfile::TempDir,
}

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Env {
    /// The snapshot `name` as the repository `name.git` on a git server.
    fn new(snapshot: &Path, name: &str) -> Env {
        let root = tempfile::tempdir().unwrap();
        let repo = TestRepo::create(root.path(), &format!("{name}.git"));
        copy_into(&repo, &snapshot.join(name), Path::new(""));
        Env {
            cluster: TestCluster::start(),
            server: GitServer::start(root.path(), None).unwrap(),
            repo,
            _root: root,
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn url(&self) -> String {
        self.server.url(self.repo.name())
    }

    fn capstan(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
        cmd.args(args)
            .env("CAPSTAN_CACHE_DIR", self.state.path().join("cache"))
            .env("CAPSTAN_HELM", capstan_testkit::tools::helm())
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG");
        capstan_testkit::process::run(cmd, stdin, Duration::from_secs(120))
    }

    /// Capstan's CRDs, and the namespace the imported Applications are in.
    fn install(&self) {
        let kc = self.cluster.kubeconfig_path().display().to_string();
        ok(&self.capstan(&["install", "--kubeconfig", &kc], None));
        self.cluster
            .apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: capstan-system\n");
    }

    fn controller(&self) -> Controller {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
        cmd.arg("controller")
            // side by side with other tests: a free port for the server
            .env("CAPSTAN_LISTEN", "127.0.0.1:0")
            .arg("--kubeconfig")
            .arg(self.cluster.kubeconfig_path())
            .arg("--state-dir")
            .arg(self.state.path())
            .env("CAPSTAN_HELM", capstan_testkit::tools::helm())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.state.path().join("controller.log")).unwrap(),
            ));
        Controller(cmd.spawn().expect("capstan controller starts"))
    }

    fn app(&self, name: &str) -> Value {
        let out = self.cluster.kubectl(&[
            "get",
            "applications.capstan.dev",
            name,
            "-n",
            "capstan-system",
            "-o",
            "json",
        ]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// Wait until every Application in `names` is Synced (and its last sync
    /// succeeded); on timeout fail with their status and the controller's log.
    fn synced(&self, names: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let pending: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| {
                    let a = self.app(n);
                    a.pointer("/status/sync/status") != Some(&Value::from("Synced"))
                        || a.pointer("/status/operationState/phase")
                            != Some(&Value::from("Succeeded"))
                })
                .collect();
            if pending.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                let status: Vec<String> = pending
                    .iter()
                    .map(|n| format!("{n}: {}", self.app(n)["status"]))
                    .collect();
                panic!(
                    "not synced after {timeout:?}:\n{}\ncontroller log:\n{}",
                    status.join("\n"),
                    std::fs::read_to_string(self.state.path().join("controller.log"))
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// The `warning:` lines of an import's stderr about Application `name`.
/// A Jsonnet guestbook in the spirit of upstream's `jsonnet-guestbook` (not copied).
const JSONNET_GUESTBOOK: &str = "local params = import 'params.libsonnet';
[
  {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: params.name },
    spec: { ports: [{ port: params.port, targetPort: params.port }], selector: { app: params.name } },
  },
  {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: params.name },
    spec: {
      replicas: params.replicas,
      selector: { matchLabels: { app: params.name } },
      template: {
        metadata: { labels: { app: params.name } },
        spec: { containers: [{ name: params.name, image: params.image, ports: [{ containerPort: params.port }] }] },
      },
    },
  },
]
";

fn warnings_about(stderr: &str, name: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.starts_with("warning: ") && l.contains(&format!("/{name}: ")))
        .map(str::to_string)
        .collect()
}

/// The Applications of an import's YAML output, by name.
fn applications(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn named<'a>(apps: &'a [Value], name: &str) -> &'a Value {
    apps.iter()
        .find(|a| a["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no Application {name}"))
}

#[test]
fn argocd_example_apps_app_of_apps_imports_applies_and_syncs() {
    let Some(snapshot) = conformance() else {
        return;
    };
    let e = Env::new(&snapshot, "argocd-example-apps");
    // upstream's Jsonnet app was left out of the snapshot: a small one in its place
    e.repo.write(
        "jsonnet-guestbook/params.libsonnet",
        "{ name: 'jsonnet-guestbook-ui', image: 'gcr.io/heptio-images/ks-guestbook-demo:0.2', replicas: 1, port: 80 }\n",
    );
    e.repo
        .write("jsonnet-guestbook/guestbook-ui.jsonnet", JSONNET_GUESTBOOK);
    e.repo.commit("argocd-example-apps snapshot");
    e.repo.branch("master"); // the upstream repository's branch

    // the app-of-apps chart rendered by Capstan's own renderer
    let chart = snapshot.join("argocd-example-apps/apps");
    let chart = chart.to_str().unwrap();
    let rendered = ok(&e.capstan(&["render", chart], None));
    let bare = e.repo.bare_path().display().to_string();
    let url = e.url();
    let map = format!("{ARGO_URL}={url}");
    let dir = format!("{ARGO_URL}={bare}");
    let import = e.capstan(
        &["import", "-f", "-", "--repo-map", &map, "--repo-dir", &dir],
        Some(rendered.as_bytes()),
    );
    let yaml = ok(&import);
    let stderr = err(&import);
    let apps = applications(&yaml);
    assert_eq!(apps.len(), 14, "{stderr}");
    assert!(
        stderr.contains("imported 14 Applications from 14 objects"),
        "{stderr}"
    );

    // the warnings name the file, the object and the field
    for plugin in ["plugin-kasane", "plugin-kustomized-helm", "plugin-nix"] {
        let w = warnings_about(&stderr, &format!("example.{plugin}"));
        assert!(
            w.iter().any(|l| l.contains("<stdin> (document ")
                && l.contains(&format!("Application argocd/example.{plugin}: spec.source.plugin.name: Config Management Plugins have no Capstan equivalent"))),
            "{plugin}: {w:?}"
        );
    }
    let tla = warnings_about(&stderr, "example.jsonnet-guestbook-tla");
    assert!(
        tla.iter()
            .any(|l| l.contains("spec.source.path: jsonnet-guestbook-tla is not a directory in")),
        "{tla:?}"
    );
    assert!(
        !stderr.contains("spec.destination.server"),
        "the chart's server is the in-cluster one: {stderr}"
    );
    for quiet in [
        "example.jsonnet-guestbook",
        "example.guestbook",
        "example.kustomize-guestbook",
        "example.helm-guestbook",
        "example.sock-shop",
    ] {
        assert!(
            warnings_about(&stderr, quiet).is_empty(),
            "{quiet}: {stderr}"
        );
    }

    // what the chart's values say, as Capstan spells it
    let helm = named(&apps, "example.helm-guestbook");
    assert_eq!(helm["metadata"]["namespace"], "capstan-system");
    assert_eq!(
        helm["metadata"]["finalizers"][0],
        "capstan.dev/delete-resources"
    );
    assert_eq!(helm["spec"]["source"]["repoURL"], url.as_str());
    assert_eq!(helm["spec"]["source"]["targetRevision"], "master");
    assert_eq!(helm["spec"]["source"]["path"], "helm-guestbook");
    assert_eq!(
        helm["spec"]["source"]["helm"]["releaseName"],
        "helm-guestbook"
    );
    assert_eq!(helm["spec"]["destination"]["namespace"], "helm-guestbook");
    assert_eq!(helm["spec"]["syncPolicy"]["createNamespace"], true);
    assert_eq!(
        helm["spec"]["syncPolicy"]["syncOptions"][0],
        "CreateNamespace=true"
    );
    assert_eq!(helm["spec"]["syncPolicy"]["automated"]["selfHeal"], true);

    // another destination server is named for every Application
    let elsewhere = ok(&e.capstan(
        &[
            "render",
            chart,
            "--set",
            "config.spec.destination.server=https://prod.example.com:6443",
        ],
        None,
    ));
    let other = e.capstan(&["import", "-f", "-"], Some(elsewhere.as_bytes()));
    let other_err = err(&other);
    assert_eq!(
        other_err
            .lines()
            .filter(|l| l.contains(": spec.destination.server: https://prod.example.com:6443 is not the in-cluster server"))
            .count(),
        14,
        "{other_err}"
    );
    let strict = e.capstan(
        &["import", "-f", "-", "--strict"],
        Some(elsewhere.as_bytes()),
    );
    assert_eq!(strict.status.code(), Some(1), "{}", err(&strict));
    assert!(
        out(&strict).is_empty(),
        "--strict writes nothing with warnings"
    );

    // apply the output as it is, with kubectl
    e.install();
    let applied = e
        .cluster
        .kubectl_stdin(&["apply", "--server-side", "-f", "-"], &yaml);
    ok(&applied);
    assert_eq!(
        out(&applied).matches("serverside-applied").count(),
        14,
        "{}",
        out(&applied)
    );
    // createNamespace (from CreateNamespace=true) makes their namespaces
    let plain = [
        ("example.guestbook", "guestbook"),
        ("example.kustomize-guestbook", "kustomize-guestbook"),
        ("example.sock-shop", "sock-shop"),
        ("example.helm-guestbook", "helm-guestbook"),
        ("example.jsonnet-guestbook", "jsonnet-guestbook"),
    ];
    let _controller = e.controller();
    let names: Vec<&str> = plain.iter().map(|(n, _)| *n).collect();
    e.synced(&names, Duration::from_secs(180));
    let guestbook = e.app("example.guestbook");
    assert_eq!(
        guestbook["status"]["sync"]["revision"],
        e.repo.head().as_str()
    );
    assert_eq!(
        e.cluster.kubectl_ok(&[
            "get",
            "deployment",
            "guestbook-ui",
            "-n",
            "guestbook",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "gcr.io/google-samples/gb-frontend:v5"
    );
    e.cluster.kubectl_ok(&[
        "get",
        "deployment",
        "kustomize-guestbook-ui",
        "-n",
        "kustomize-guestbook",
    ]);
    e.cluster
        .kubectl_ok(&["get", "service", "helm-guestbook", "-n", "helm-guestbook"]);
    e.cluster
        .kubectl_ok(&["get", "deployment", "front-end", "-n", "sock-shop"]);
    e.cluster.kubectl_ok(&[
        "get",
        "deployment",
        "jsonnet-guestbook-ui",
        "-n",
        "jsonnet-guestbook",
    ]);
}

/// Flux's CRDs, as `flux install` would put them (schemas left open), and those of the
/// cert-manager and Gateway API objects the example's infrastructure holds.
fn foreign_crds() -> String {
    let crd = |group: &str, kind: &str, plural: &str, version: &str, scope: &str| {
        format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {plural}.{group}\nspec:\n  group: {group}\n  scope: {scope}\n  names: {{kind: {kind}, plural: {plural}, singular: {}, listKind: {kind}List}}\n  versions:\n  - name: {version}\n    served: true\n    storage: true\n    subresources: {{status: {{}}}}\n    schema:\n      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}\n---\n",
            kind.to_lowercase()
        )
    };
    [
        crd(
            "helm.toolkit.fluxcd.io",
            "HelmRelease",
            "helmreleases",
            "v2",
            "Namespaced",
        ),
        crd(
            "source.toolkit.fluxcd.io",
            "HelmRepository",
            "helmrepositories",
            "v1",
            "Namespaced",
        ),
        crd(
            "source.toolkit.fluxcd.io",
            "OCIRepository",
            "ocirepositories",
            "v1",
            "Namespaced",
        ),
        crd(
            "cert-manager.io",
            "ClusterIssuer",
            "clusterissuers",
            "v1",
            "Cluster",
        ),
        crd(
            "gateway.networking.k8s.io",
            "GatewayClass",
            "gatewayclasses",
            "v1",
            "Cluster",
        ),
        crd(
            "gateway.networking.k8s.io",
            "Gateway",
            "gateways",
            "v1",
            "Namespaced",
        ),
    ]
    .concat()
}

/// What `flux bootstrap` writes into clusters/production/flux-system/gotk-sync.yaml
/// (the snapshot holds a placeholder): the GitRepository every Kustomization reads.
const GOTK_SYNC: &str = "apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 1m0s
  ref:
    branch: main
  url: ssh://git@github.com/fluxcd/flux2-kustomize-helm-example
";

#[test]
fn flux2_kustomize_helm_example_imports_applies_and_syncs() {
    let Some(snapshot) = conformance() else {
        return;
    };
    let e = Env::new(&snapshot, "flux2-kustomize-helm-example");
    e.repo.commit("flux2-kustomize-helm-example snapshot");
    let example = snapshot.join("flux2-kustomize-helm-example");
    let clusters = example.join("clusters/production");
    let clusters = clusters.to_str().unwrap();

    // without the bootstrap's GitRepository every Kustomization is an error naming it
    let missing = e.capstan(&["import", "-f", clusters], None);
    assert_eq!(missing.status.code(), Some(2));
    assert!(out(&missing).is_empty());
    let missing_err = err(&missing);
    assert_eq!(
        missing_err
            .lines()
            .filter(|l| l.starts_with("error: ")
                && l.contains(
                    "spec.sourceRef: GitRepository flux-system/flux-system is not in the input"
                ))
            .count(),
        3,
        "{missing_err}"
    );
    assert!(
        missing_err
            .contains("clusters/production/apps.yaml (document 1): Kustomization flux-system/apps"),
        "{missing_err}"
    );

    let gotk = e.cluster.dir().join("gotk-sync.yaml");
    std::fs::write(&gotk, GOTK_SYNC).unwrap();
    let gotk = gotk.to_str().unwrap();
    let url = e.url();
    let map = format!("{FLUX_URL}={url}");
    let dir = format!("{FLUX_URL}={}", e.repo.bare_path().display());
    let out_dir = e.cluster.dir().join("imported");
    let import = e.capstan(
        &[
            "import",
            "-f",
            clusters,
            "-f",
            gotk,
            "--repo-map",
            &map,
            "--repo-dir",
            &dir,
            "--out-dir",
            out_dir.to_str().unwrap(),
        ],
        None,
    );
    ok(&import);
    let stderr = err(&import);
    let mut files: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["apps.yaml", "infra-configs.yaml", "infra-controllers.yaml"],
        "{stderr}"
    );
    let read = |f: &str| -> Value {
        serde_saphyr::from_str(&std::fs::read_to_string(out_dir.join(f)).unwrap()).unwrap()
    };
    let apps = read("apps.yaml");
    assert_eq!(apps["spec"]["source"]["repoURL"], url.as_str());
    assert_eq!(apps["spec"]["source"]["targetRevision"], "main");
    assert_eq!(apps["spec"]["source"]["path"], "apps/production");
    assert_eq!(apps["spec"]["dependsOn"][0], "infra-configs");
    assert_eq!(apps["spec"]["interval"], "1m0s");
    assert_eq!(apps["spec"]["syncPolicy"]["automated"]["prune"], true);
    assert_eq!(
        read("infra-configs.yaml")["spec"]["dependsOn"][0],
        "infra-controllers"
    );
    let configs = warnings_about(&stderr, "infra-configs");
    for field in [
        "spec.patches",
        "spec.retryInterval",
        "spec.timeout",
        "spec.sourceRef",
    ] {
        assert!(
            configs.iter().any(|w| w.contains(&format!(
                "Kustomization flux-system/infra-configs: {field}: "
            ))),
            "{field}: {configs:?}"
        );
    }
    assert!(
        stderr.contains("note: ") && stderr.contains("ArtifactGenerator flux-system/flux-system: a source: folded into the Applications that use it"),
        "{stderr}"
    );

    // the chart Applications of apps/production (rendered by Capstan: a Kustomization
    // with a patch) and infrastructure/controllers
    let rendered = ok(&e.capstan(
        &["render", example.join("apps/production").to_str().unwrap()],
        None,
    ));
    // podinfo's chart repository is on the internet: a stand-in chart of the same name
    // is served from a chart repository on loopback, and the import points there
    let chart_repo = ChartRepo::start(None);
    chart_repo.add(&TestChart::new("podinfo", "6.5.0"));
    chart_repo.add(&TestChart::new("podinfo", "0.9.0"));
    let chart_map = format!("{PODINFO_CHARTS}={}", chart_repo.url());
    let podinfo = e.capstan(
        &["import", "-f", "-", "--repo-map", &chart_map],
        Some(rendered.as_bytes()),
    );
    let podinfo_yaml = ok(&podinfo);
    let podinfo_err = err(&podinfo);
    let charts = applications(&podinfo_yaml);
    assert_eq!(charts.len(), 1, "{podinfo_err}");
    let p = &charts[0];
    assert_eq!(p["metadata"]["name"], "podinfo");
    assert_eq!(p["spec"]["source"]["repoURL"], chart_repo.url().as_str());
    assert_eq!(p["spec"]["source"]["chart"], "podinfo");
    assert_eq!(
        p["spec"]["source"]["targetRevision"], ">=1.0.0",
        "the production patch"
    );
    assert_eq!(p["spec"]["source"]["helm"]["releaseName"], "podinfo");
    assert_eq!(
        p["spec"]["source"]["helm"]["valuesObject"]["httpRoute"]["hostnames"][0],
        "podinfo.production"
    );
    assert_eq!(
        p["spec"]["source"]["helm"]["valuesObject"]["redis"]["enabled"],
        true
    );
    assert_eq!(p["spec"]["destination"]["namespace"], "podinfo");
    for field in ["spec.install.strategy.name", "spec.upgrade.strategy.name"] {
        assert!(
            podinfo_err.contains(&format!("HelmRelease podinfo/podinfo: {field}: Helm ")),
            "{field}: {podinfo_err}"
        );
    }
    let controllers_out = ok(&e.capstan(
        &[
            "import",
            "-f",
            example.join("infrastructure/controllers").to_str().unwrap(),
        ],
        None,
    ));
    let controllers = applications(&controllers_out);
    assert_eq!(
        named(&controllers, "cert-manager")["spec"]["source"]["repoURL"],
        "oci://quay.io/jetstack/charts"
    );
    assert_eq!(
        named(&controllers, "envoy-gateway")["spec"]["source"]["chart"],
        "gateway-helm"
    );

    // Apply everything with kubectl. The OCI chart Applications of
    // infrastructure/controllers are only validated by the API server (a server-side
    // dry run): their charts are on the internet. podinfo syncs from the stand-in.
    e.install();
    e.cluster.apply(&foreign_crds());
    // No Flux, cert-manager or Gateway controller runs here: their objects that the
    // infrastructure Applications apply are data, healthy once applied (the built-in
    // rules would wait for a Ready their controllers never write).
    e.cluster.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: capstan-health\n  namespace: capstan-system\ndata:\n  no-controllers.yaml: |\n    - {group: helm.toolkit.fluxcd.io, kind: '*', current: 'true'}\n    - {group: source.toolkit.fluxcd.io, kind: '*', current: 'true'}\n    - {group: kustomize.toolkit.fluxcd.io, kind: '*', current: 'true'}\n    - {group: cert-manager.io, kind: '*', current: 'true'}\n    - {group: gateway.networking.k8s.io, kind: '*', current: 'true'}\n",
    );
    let mut all = String::new();
    for f in &files {
        all.push_str("---\n");
        all.push_str(&std::fs::read_to_string(out_dir.join(f)).unwrap());
    }
    all.push_str(&podinfo_yaml);
    ok(&e
        .cluster
        .kubectl_stdin(&["apply", "--server-side", "-f", "-"], &all));
    let controllers_yaml: String = controllers
        .iter()
        .map(|a| format!("---\n{}\n", serde_json::to_string(a).unwrap()))
        .collect();
    let validated = e.cluster.kubectl_stdin(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        &controllers_yaml,
    );
    ok(&validated);
    assert!(
        out(&validated).contains("application.capstan.dev/cert-manager serverside-applied"),
        "{}",
        out(&validated)
    );

    // the three Kustomizations sync from the git server in their dependsOn order, and
    // podinfo from the stand-in chart repository
    let _controller = e.controller();
    e.synced(
        &["infra-controllers", "infra-configs", "apps", "podinfo"],
        Duration::from_secs(180),
    );
    // the newest chart version the production range (>=1.0.0) allows
    let release =
        e.cluster
            .kubectl_ok(&["get", "configmap", "podinfo", "-n", "podinfo", "-o", "json"]);
    let release: Value = serde_json::from_str(&release).unwrap();
    assert_eq!(release["data"]["version"], "6.5.0", "{release}");
    e.cluster.kubectl_ok(&[
        "get",
        "helmreleases.helm.toolkit.fluxcd.io",
        "podinfo",
        "-n",
        "podinfo",
    ]);
    e.cluster.kubectl_ok(&[
        "get",
        "ocirepositories.source.toolkit.fluxcd.io",
        "cert-manager",
        "-n",
        "cert-manager",
    ]);
    let issuer = e.cluster.kubectl_ok(&[
        "get",
        "clusterissuers.cert-manager.io",
        "letsencrypt",
        "-o",
        "json",
    ]);
    let issuer: Value = serde_json::from_str(&issuer).unwrap();
    assert_eq!(
        issuer["spec"]["acme"]["server"], "https://acme-staging-v02.api.letsencrypt.org/directory",
        "the Flux Kustomization's own patch is not applied: it was named in a warning"
    );
    let released: Value = serde_json::from_str(&e.cluster.kubectl_ok(&[
        "get",
        "helmreleases.helm.toolkit.fluxcd.io",
        "podinfo",
        "-n",
        "podinfo",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(released["spec"]["chart"]["spec"]["version"], ">=1.0.0");
}
