//! Rendering real source trees into the desired set: plain directories, Kustomize
//! (through `kubectl kustomize`) and Helm charts (through the `helm` binary), with the
//! errors a user sees when a file, an overlay or a template is wrong.

use std::path::Path;
use std::time::Duration;

use capstan_engine::render::{
    self, DesiredObject, HelmOptions, JsonnetOptions, JsonnetVar, KustomizeOptions, Origin,
    RenderError, RenderOptions, RendererKind, Scopes,
};
use capstan_engine::source::{Checkout, ConfineError, GitCache, GitSource, local};
use capstan_testkit::TestRepo;
use serde_json::json;

/// A source tree in a temporary directory.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        Tree {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, path: &str, text: &str) -> &Tree {
        let full = self.root().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
        self
    }

    /// The tree opened as a local source, rendering `path` inside it.
    fn checkout(&self, path: &str) -> Checkout {
        let mut checkout = local::open(self.root()).unwrap();
        checkout.path = path.into();
        checkout
    }

    async fn render(&self, path: &str, opts: &RenderOptions) -> Vec<DesiredObject> {
        render::render(&self.checkout(path), opts, "prod", &Scopes::builtin())
            .await
            .unwrap_or_else(|e| panic!("rendering {path}: {e}"))
    }

    async fn render_err(&self, path: &str, opts: &RenderOptions) -> RenderError {
        match render::render(&self.checkout(path), opts, "prod", &Scopes::builtin()).await {
            Ok(objs) => panic!("rendering {path} should fail, gave {:?}", keys(&objs)),
            Err(e) => e,
        }
    }
}

fn configmap(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  a: b\n")
}

/// `group/Kind/namespace/name` of each object, in render order.
fn keys(objs: &[DesiredObject]) -> Vec<String> {
    objs.iter().map(|o| o.id.key()).collect()
}

fn origin(file: &str, document: usize) -> Origin {
    Origin {
        file: file.into(),
        document,
    }
}

fn find<'a>(objs: &'a [DesiredObject], kind: &str, name: &str) -> &'a DesiredObject {
    objs.iter()
        .find(|o| o.id.kind == kind && o.id.name == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", keys(objs)))
}

// ---------------------------------------------------------------- directory

#[tokio::test]
async fn a_directory_renders_yaml_yml_and_json_files_from_nested_directories() {
    let tree = Tree::new();
    tree.write(
        "deploy/apps/web/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n",
    )
    .write(
        "deploy/apps/web/service.yml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n",
    )
    .write(
        "deploy/config/settings.json",
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}"#,
    )
    .write("deploy/README.md", "# not a manifest: [\n")
    .write("deploy/config/notes.txt", "kind: [\n")
    .write("elsewhere/ignored.yaml", &configmap("outside-the-path"));

    let objs = tree.render("deploy", &RenderOptions::default()).await;

    assert_eq!(
        keys(&objs),
        [
            "apps/Deployment/prod/web",
            "/Service/prod/web",
            "/ConfigMap/prod/settings"
        ]
    );
    let origins: Vec<&Origin> = objs.iter().map(|o| &o.origin).collect();
    assert_eq!(
        origins,
        [
            &origin("deploy/apps/web/deployment.yaml", 1),
            &origin("deploy/apps/web/service.yml", 1),
            &origin("deploy/config/settings.json", 1),
        ]
    );
    assert_eq!(objs[0].object["spec"]["replicas"], 2);
}

#[tokio::test]
async fn multi_document_files_give_one_object_per_document_and_skip_empty_ones() {
    let tree = Tree::new();
    tree.write(
        "all.yaml",
        &format!(
            "---\n# only a comment\n---\n{}---\n---\n\n---\n{}---\n",
            configmap("one"),
            configmap("two")
        ),
    );

    let objs = tree.render(".", &RenderOptions::default()).await;

    assert_eq!(keys(&objs), ["/ConfigMap/prod/one", "/ConfigMap/prod/two"]);
    assert_eq!(objs[0].origin.file, "all.yaml");
    assert!(objs[0].origin.document < objs[1].origin.document);
}

#[tokio::test]
async fn a_list_is_flattened_into_its_items() {
    let tree = Tree::new();
    tree.write(
        "list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n\
         - apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: first\n\
         - apiVersion: rbac.authorization.k8s.io/v1\n  kind: ClusterRole\n  metadata:\n    name: reader\n",
    )
    .write("single.yaml", &configmap("single"));

    let objs = tree.render(".", &RenderOptions::default()).await;

    assert_eq!(
        keys(&objs),
        [
            "/ConfigMap/prod/first",
            "rbac.authorization.k8s.io/ClusterRole//reader",
            "/ConfigMap/prod/single"
        ]
    );
    assert_eq!(objs[1].origin, origin("list.yaml", 1));
    assert!(objs.iter().all(|o| o.id.kind != "List"));
}

#[tokio::test]
async fn include_and_exclude_globs_choose_the_files_rendered() {
    let tree = Tree::new();
    tree.write("apps/web.yaml", &configmap("web"))
        .write("apps/web-test.yaml", &configmap("web-test"))
        .write("infra/db.yaml", &configmap("db"))
        .write("infra/cache.yml", &configmap("cache"))
        .write("other/x.yaml", &configmap("x"));
    let opts = RenderOptions {
        include: vec!["apps/*".into(), "infra/*.yaml".into()],
        exclude: vec!["*-test.yaml".into()],
        ..Default::default()
    };

    let objs = tree.render(".", &opts).await;

    assert_eq!(keys(&objs), ["/ConfigMap/prod/web", "/ConfigMap/prod/db"]);

    let bad = RenderOptions {
        include: vec!["apps/[".into()],
        ..Default::default()
    };
    let err = tree.render_err(".", &bad).await;
    assert!(
        matches!(&err, RenderError::Glob { glob, .. } if glob == "apps/["),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"apps/[\""), "{err}");
}

#[tokio::test]
async fn the_destination_namespace_fills_in_namespaced_kinds_only() {
    let tree = Tree::new();
    tree.write("configmap.yaml", &configmap("defaulted"))
        .write(
            "secret.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: kept\n  namespace: other\n",
        )
        .write(
            "namespace.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n",
        )
        .write(
            "clusterrole.yaml",
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: reader\n  namespace: stray\n",
        )
        .write(
            "crds.yaml",
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\n\
             spec:\n  group: example.com\n  scope: Namespaced\n  names:\n    kind: Widget\n    plural: widgets\n\
             ---\n\
             apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: gadgets.example.com\n\
             spec:\n  group: example.com\n  scope: Cluster\n  names:\n    kind: Gadget\n    plural: gadgets\n",
        )
        .write(
            "custom.yaml",
            "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n---\n\
             apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n",
        );

    let objs = tree.render(".", &RenderOptions::default()).await;

    let ns = |kind: &str, name: &str| {
        let o = find(&objs, kind, name);
        let written = o.object["metadata"].get("namespace").cloned();
        (o.id.namespace.clone(), written)
    };
    let prod = || (Some("prod".to_string()), Some(json!("prod")));
    let none = (None, None);
    assert_eq!(ns("ConfigMap", "defaulted"), prod());
    assert_eq!(
        ns("Secret", "kept"),
        (Some("other".to_string()), Some(json!("other")))
    );
    assert_eq!(ns("Namespace", "prod"), none);
    assert_eq!(ns("ClusterRole", "reader"), none);
    assert_eq!(ns("CustomResourceDefinition", "widgets.example.com"), none);
    assert_eq!(ns("Widget", "w"), prod());
    assert_eq!(ns("Gadget", "g"), none);
}

#[tokio::test]
async fn broken_yaml_fails_naming_the_file_and_the_line() {
    let tree = Tree::new();
    tree.write("deploy/good.yaml", &configmap("good")).write(
        "deploy/broken.yaml",
        &format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\n  labels: {{app: web\n",
            configmap("first")
        ),
    );

    let err = tree.render_err("deploy", &RenderOptions::default()).await;

    let msg = err.to_string();
    assert!(
        matches!(&err, RenderError::Parse { path, .. } if path == "deploy/broken.yaml"),
        "{err:?}"
    );
    assert!(
        msg.starts_with("deploy/broken.yaml: line 12 "),
        "the unclosed `{{` is on line 12: {msg}"
    );
}

#[tokio::test]
async fn broken_json_fails_naming_the_file_and_the_line() {
    let tree = Tree::new();
    tree.write(
        "config/settings.json",
        "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \n}\n",
    );

    let err = tree.render_err(".", &RenderOptions::default()).await;

    let msg = err.to_string();
    assert!(
        msg.starts_with("config/settings.json: line 4 column 1"),
        "{msg}"
    );
}

#[tokio::test]
async fn the_same_object_in_two_files_fails_naming_both() {
    let tree = Tree::new();
    tree.write("deploy/a/configmap.yaml", &configmap("web")).write(
        "deploy/b/more.yaml",
        &format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: prod\n",
            configmap("other")
        ),
    );

    let err = tree.render_err("deploy", &RenderOptions::default()).await;

    assert!(matches!(err, RenderError::Duplicate { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "ConfigMap prod/web is defined twice: in deploy/a/configmap.yaml (document 1) \
         and in deploy/b/more.yaml (document 2)"
    );
}

#[tokio::test]
async fn an_object_without_a_name_fails_naming_the_file_and_the_document() {
    let tree = Tree::new();
    tree.write(
        "deploy/app.yaml",
        &format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels:\n    app: web\n",
            configmap("named")
        ),
    );

    let err = tree.render_err("deploy", &RenderOptions::default()).await;

    assert!(
        matches!(&err, RenderError::Invalid { origin: o, .. } if *o == origin("deploy/app.yaml", 2)),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "deploy/app.yaml (document 2): metadata.name is missing or empty"
    );
}

// ---------------------------------------------------------------- kustomize

/// A base with a Deployment of `nginx:1.25.0` and a `prod` overlay that pins the tag
/// and prefixes names.
fn kustomize_tree() -> Tree {
    let tree = Tree::new();
    tree.write(
        "base/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - deployment.yaml\n",
    )
    .write(
        "base/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.25.0\n",
    )
    .write(
        "overlays/prod/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../base\nnamePrefix: prod-\nimages:\n  - name: nginx\n    newTag: \"1.27.1\"\n",
    );
    tree
}

fn assert_the_overlay_rendered(objs: &[DesiredObject]) {
    assert_eq!(keys(objs), ["apps/Deployment/prod/prod-web"]);
    assert_eq!(
        objs[0].object["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27.1"
    );
    assert_eq!(objs[0].origin, origin("kustomize build overlays/prod", 1));
}

#[tokio::test]
async fn kustomize_through_kubectl_overrides_the_image_and_prefixes_the_name() {
    let tree = kustomize_tree();
    let opts = RenderOptions {
        renderer: Some(RendererKind::Kustomize),
        kustomize: KustomizeOptions {
            binary: Some("kubectl".into()),
            ..Default::default()
        },
        ..Default::default()
    };

    let objs = tree.render("overlays/prod", &opts).await;

    assert_the_overlay_rendered(&objs);
}

#[tokio::test]
async fn a_kustomization_file_selects_kustomize_with_the_default_binaries() {
    let tree = kustomize_tree();
    assert_eq!(
        render::detect(&tree.root().join("overlays/prod")),
        RendererKind::Kustomize
    );

    let objs = tree
        .render("overlays/prod", &RenderOptions::default())
        .await;

    assert_the_overlay_rendered(&objs);
}

#[tokio::test]
async fn a_broken_kustomization_fails_with_kustomizes_error_output() {
    let tree = kustomize_tree();
    tree.write(
        "overlays/broken/kustomization.yaml",
        "resources:\n  - ../../base\n  - missing-service.yaml\n",
    );
    let opts = RenderOptions {
        kustomize: KustomizeOptions {
            binary: Some("kubectl".into()),
            ..Default::default()
        },
        ..Default::default()
    };

    let err = tree.render_err("overlays/broken", &opts).await;

    assert!(
        matches!(&err, RenderError::Tool { tool: "kustomize", path, stderr }
            if path == "overlays/broken" && stderr.contains("missing-service.yaml")),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("kustomize failed on overlays/broken: ")
            && msg.contains("missing-service.yaml"),
        "{msg}"
    );
}

// ---------------------------------------------------------------- helm

const CHART_YAML: &str = "apiVersion: v2\nname: web\nversion: 0.1.0\n";
const VALUES_YAML: &str = "replicaCount: 1\nimage:\n  repository: nginx\n  tag: \"1.0\"\n";
const DEPLOYMENT_TEMPLATE: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels:
      app: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app: {{ .Release.Name }}
    spec:
      containers:
        - name: web
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
"#;
const CONFIGMAP_TEMPLATE: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  release: {{ .Release.Name | quote }}
  namespace: {{ .Release.Namespace | quote }}
"#;

/// Write the `web` chart under `charts/web` of `write`'s tree.
fn write_chart(write: impl Fn(&str, &str)) {
    write("charts/web/Chart.yaml", CHART_YAML);
    write("charts/web/values.yaml", VALUES_YAML);
    write("charts/web/templates/deployment.yaml", DEPLOYMENT_TEMPLATE);
    write("charts/web/templates/configmap.yaml", CONFIGMAP_TEMPLATE);
}

fn helm_options() -> HelmOptions {
    HelmOptions {
        binary: Some(capstan_testkit::tools::helm().display().to_string()),
        ..Default::default()
    }
}

#[tokio::test]
async fn helm_renders_a_committed_chart_with_a_values_file_and_set_values() {
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "charts.git");
    write_chart(|path, text| repo.write(path, text));
    repo.write("envs/prod/values.yaml", "replicaCount: 3\n");
    repo.commit("the web chart");
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(cache_dir.path());
    let src = GitSource::new(repo.file_url());
    cache.fetch(&src).unwrap();
    let revision = cache.resolve(&src, "main").unwrap();
    let checkout = cache
        .checkout(&src, &revision, Path::new("charts/web"))
        .unwrap();
    let opts = RenderOptions {
        helm: HelmOptions {
            release_name: Some("shop".into()),
            namespace: Some("shop-prod".into()),
            values_files: vec!["envs/prod/values.yaml".into()],
            set: vec!["image.tag=2.0".into()],
            ..helm_options()
        },
        ..Default::default()
    };

    let objs = render::render(&checkout, &opts, "shop-prod", &Scopes::builtin())
        .await
        .unwrap();

    assert_eq!(
        keys(&objs),
        [
            "/ConfigMap/shop-prod/shop-config",
            "apps/Deployment/shop-prod/shop-web"
        ]
    );
    let deployment = find(&objs, "Deployment", "shop-web");
    assert_eq!(
        deployment.object["spec"]["replicas"], 3,
        "from the values file"
    );
    assert_eq!(
        deployment.object["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:2.0",
        "from --set"
    );
    assert_eq!(
        deployment.origin.file,
        "helm template charts/web: web/templates/deployment.yaml"
    );
    let config = find(&objs, "ConfigMap", "shop-config");
    assert_eq!(
        config.origin.file,
        "helm template charts/web: web/templates/configmap.yaml"
    );
    assert_eq!(config.object["data"]["release"], "shop");
    assert_eq!(
        config.object["data"]["namespace"], "shop-prod",
        "the release namespace"
    );
    assert_eq!(config.object["metadata"]["namespace"], "shop-prod");
}

#[tokio::test]
async fn a_chart_is_detected_and_named_after_its_directory() {
    let tree = Tree::new();
    write_chart(|path, text| {
        tree.write(path, text);
    });
    assert_eq!(
        render::detect(&tree.root().join("charts/web")),
        RendererKind::Helm
    );
    let opts = RenderOptions {
        helm: helm_options(),
        ..Default::default()
    };

    let objs = tree.render("charts/web", &opts).await;

    let deployment = find(&objs, "Deployment", "web-web");
    assert_eq!(deployment.object["spec"]["replicas"], 1);
    assert_eq!(
        deployment.object["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.0"
    );
}

#[tokio::test]
async fn a_values_file_outside_the_repository_is_refused() {
    let parent = tempfile::tempdir().unwrap();
    std::fs::write(parent.path().join("outside.yaml"), "replicaCount: 99\n").unwrap();
    let repo_root = parent.path().join("repo");
    write_chart(|path, text| {
        let full = repo_root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    });
    let mut checkout = local::open(&repo_root).unwrap();
    checkout.path = "charts/web".into();
    std::os::unix::fs::symlink("../outside.yaml", repo_root.join("linked.yaml")).unwrap();

    for (values, expected) in [
        ("../outside.yaml", "../outside.yaml"),
        ("linked.yaml", "linked.yaml"),
    ] {
        let opts = RenderOptions {
            helm: HelmOptions {
                values_files: vec![values.into()],
                ..helm_options()
            },
            ..Default::default()
        };

        let err = render::render(&checkout, &opts, "prod", &Scopes::builtin())
            .await
            .unwrap_err();

        assert!(
            matches!(
                &err,
                RenderError::Confine(ConfineError::Escapes { path })
                    | RenderError::Confine(ConfineError::SymlinkEscapes { link: path, .. })
                    if path == expected
            ),
            "{values}: {err:?}"
        );
        assert!(err.to_string().contains(expected), "{err}");
    }
}

#[tokio::test]
async fn a_template_error_fails_with_helms_error_output() {
    let tree = Tree::new();
    tree.write("charts/broken/Chart.yaml", "apiVersion: v2\nname: broken\nversion: 0.1.0\n")
        .write(
            "charts/broken/templates/configmap.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  image: {{ required \"imageRepository is required\" .Values.imageRepository }}\n",
        );
    let opts = RenderOptions {
        helm: helm_options(),
        ..Default::default()
    };

    let err = tree.render_err("charts/broken", &opts).await;

    assert!(
        matches!(&err, RenderError::Tool { tool: "helm", path, stderr }
            if path == "charts/broken"
                && stderr.contains("broken/templates/configmap.yaml")
                && stderr.contains("imageRepository is required")),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("helm failed on charts/broken: "),
        "{err}"
    );
}

#[tokio::test]
async fn helm_running_past_its_timeout_fails_with_the_timeout_error() {
    let tree = Tree::new();
    write_chart(|path, text| {
        tree.write(path, text);
    });
    let opts = RenderOptions {
        helm: HelmOptions {
            timeout: Duration::from_millis(1),
            ..helm_options()
        },
        ..Default::default()
    };

    let err = tree.render_err("charts/web", &opts).await;

    assert!(
        matches!(&err, RenderError::Timeout { tool: "helm", path, timeout }
            if path == "charts/web" && *timeout == Duration::from_millis(1)),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "helm on charts/web did not finish within 1ms"
    );
}

#[tokio::test]
async fn helm_inline_values_override_the_values_file() {
    let tree = Tree::new();
    write_chart(|path, text| {
        tree.write(path, text);
    });
    tree.write("envs/prod/values.yaml", "replicaCount: 3\n");
    let opts = RenderOptions {
        helm: HelmOptions {
            values_files: vec!["envs/prod/values.yaml".into()],
            values: Some("replicaCount: 5\nimage:\n  tag: \"3.1\"\n".into()),
            ..helm_options()
        },
        ..Default::default()
    };

    let objs = tree.render("charts/web", &opts).await;

    let deployment = find(&objs, "Deployment", "web-web");
    assert_eq!(
        deployment.object["spec"]["replicas"], 5,
        "inline values come after the values files"
    );
    assert_eq!(
        deployment.object["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:3.1",
        "inline values merge with the chart's defaults"
    );
}

#[tokio::test]
async fn an_explicit_renderer_overrides_detection() {
    // A directory with a Chart.yaml is detected as Helm; asked for a directory, its
    // manifests are read as they are and Helm is never run.
    let tree = Tree::new();
    tree.write("app/Chart.yaml", CHART_YAML)
        .write("app/values.yaml", VALUES_YAML)
        .write("app/manifests/cm.yaml", &configmap("plain"));
    assert_eq!(render::detect(&tree.root().join("app")), RendererKind::Helm);
    let no_helm = HelmOptions {
        binary: Some("/nonexistent/helm".into()),
        ..Default::default()
    };
    let detected = RenderOptions {
        helm: no_helm.clone(),
        exclude: vec!["Chart.yaml".into(), "values.yaml".into()],
        ..Default::default()
    };
    let err = tree.render_err("app", &detected).await;
    assert!(
        matches!(&err, RenderError::ToolMissing { tool: "helm", .. }),
        "detection picks Helm: {err:?}"
    );

    let explicit = RenderOptions {
        renderer: Some(RendererKind::Directory),
        ..detected
    };
    let objs = tree.render("app", &explicit).await;
    assert_eq!(keys(&objs), ["/ConfigMap/prod/plain"]);
    assert_eq!(objs[0].origin, origin("app/manifests/cm.yaml", 1));
}

// ---------------------------------------------------------------- jsonnet

/// A guestbook in Jsonnet, as Argo CD's `jsonnet-guestbook` example: the UI's Service
/// and Deployment from one file, their settings in a library beside it.
const GUESTBOOK_PARAMS: &str = r#"{
  name: 'guestbook-ui',
  image: 'registry.example/guestbook-ui:0.2',
  replicas: 1,
  containerPort: 80,
  servicePort: 80,
  type: 'ClusterIP',
}
"#;

const GUESTBOOK_UI: &str = r#"local params = import 'params.libsonnet';
local labels = { app: params.name };

[
  {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: params.name },
    spec: {
      ports: [{ port: params.servicePort, targetPort: params.containerPort }],
      selector: labels,
      type: params.type,
    },
  },
  {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: params.name },
    spec: {
      replicas: params.replicas,
      revisionHistoryLimit: 3,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels: labels },
        spec: {
          containers: [{
            name: params.name,
            image: params.image,
            ports: [{ containerPort: params.containerPort }],
          }],
        },
      },
    },
  },
]
"#;

fn jsonnet_options(jsonnet: JsonnetOptions) -> RenderOptions {
    RenderOptions {
        jsonnet,
        ..Default::default()
    }
}

fn var(name: &str, value: &str, code: bool) -> JsonnetVar {
    JsonnetVar {
        name: name.into(),
        value: value.into(),
        code,
    }
}

#[tokio::test]
async fn a_jsonnet_guestbook_renders_its_service_and_deployment_from_a_params_library() {
    let tree = Tree::new();
    tree.write("guestbook/params.libsonnet", GUESTBOOK_PARAMS)
        .write("guestbook/guestbook-ui.jsonnet", GUESTBOOK_UI)
        .write("guestbook/extra/config.yaml", &configmap("extra"))
        .write("guestbook/scratch.jsonnet", "error 'not rendered'");
    let opts = RenderOptions {
        exclude: vec!["scratch.jsonnet".into()],
        ..Default::default()
    };

    let objs = tree.render("guestbook", &opts).await;

    assert_eq!(
        keys(&objs),
        [
            "/ConfigMap/prod/extra",
            "/Service/prod/guestbook-ui",
            "apps/Deployment/prod/guestbook-ui"
        ],
        "YAML and Jsonnet files in name order, the library not rendered on its own"
    );
    assert_eq!(objs[1].origin, origin("guestbook/guestbook-ui.jsonnet", 1));
    assert_eq!(objs[2].origin, origin("guestbook/guestbook-ui.jsonnet", 2));
    let deployment = &objs[2].object;
    assert_eq!(
        deployment["spec"]["replicas"],
        json!(1),
        "an integer, not 1.0"
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/guestbook-ui:0.2"
    );
    assert_eq!(objs[1].object["spec"]["ports"][0]["targetPort"], json!(80));
}

#[tokio::test]
async fn top_level_arguments_and_external_variables_are_given_as_strings_and_as_code() {
    let tree = Tree::new();
    tree.write(
        "deploy/app.jsonnet",
        r#"function(name, replicas=1, labels={}) {
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: {
    name: name,
    labels: labels + std.extVar('extraLabels'),
    annotations: { env: std.extVar('env') },
  },
  spec: { replicas: replicas },
}
"#,
    )
    .write(
        "deploy/not-a-function.jsonnet",
        "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'plain' } }",
    );
    let opts = jsonnet_options(JsonnetOptions {
        tlas: vec![
            var("name", "web", false),
            var("replicas", "1 + 2", true),
            var("labels", "{ team: 'shop' }", true),
        ],
        ext_vars: vec![
            var("env", "prod", false),
            var("extraLabels", "{ tier: std.asciiUpper('front') }", true),
        ],
        ..Default::default()
    });

    let objs = tree.render("deploy", &opts).await;

    assert_eq!(
        keys(&objs),
        ["apps/Deployment/prod/web", "/ConfigMap/prod/plain"],
        "a file that is not a function ignores the top-level arguments"
    );
    let web = &objs[0].object;
    assert_eq!(web["spec"]["replicas"], json!(3));
    assert_eq!(
        web["metadata"]["labels"],
        json!({"team": "shop", "tier": "FRONT"})
    );
    assert_eq!(web["metadata"]["annotations"]["env"], "prod");
}

#[tokio::test]
async fn libraries_are_searched_after_the_importing_files_directory_from_the_repository_root() {
    let tree = Tree::new();
    tree.write(
        "vendor/k.libsonnet",
        "{ configMap(name):: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name } } }",
    )
    .write("vendor/name.libsonnet", "'from-the-library'")
    .write("apps/web/name.libsonnet", "'from-beside-the-file'")
    .write("apps/web/data.txt", "plain text\n")
    .write(
        "apps/web/main.jsonnet",
        r#"local k = import 'k.libsonnet';
[
  k.configMap(import 'name.libsonnet'),
  k.configMap('text') + { data: { text: importstr 'data.txt' } },
]
"#,
    );
    let opts = jsonnet_options(JsonnetOptions {
        libs: vec!["vendor".into()],
        ..Default::default()
    });

    let objs = tree.render("apps/web", &opts).await;

    assert_eq!(
        keys(&objs),
        [
            "/ConfigMap/prod/from-beside-the-file",
            "/ConfigMap/prod/text"
        ]
    );
    assert_eq!(objs[1].object["data"]["text"], "plain text\n");

    let err = tree.render_err("apps/web", &RenderOptions::default()).await;
    assert!(
        matches!(&err, RenderError::Jsonnet { file, .. } if file == "apps/web/main.jsonnet"),
        "without the library the import is not found: {err:?}"
    );
    assert!(err.to_string().contains("\"k.libsonnet\""), "{err}");
}

#[tokio::test]
async fn a_jsonnet_list_and_nested_arrays_are_flattened_into_their_items() {
    let tree = Tree::new();
    tree.write(
        "list.jsonnet",
        r#"local cm(name) = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name } };
{ apiVersion: 'v1', kind: 'List', items: [cm('a'), cm('b')] }
"#,
    )
    .write(
        "nested.jsonnet",
        r#"local cm(name) = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name } };
[[cm('c')], [cm('d'), [cm('e')]], []]
"#,
    );

    let objs = tree.render(".", &RenderOptions::default()).await;

    assert_eq!(
        keys(&objs),
        [
            "/ConfigMap/prod/a",
            "/ConfigMap/prod/b",
            "/ConfigMap/prod/c",
            "/ConfigMap/prod/d",
            "/ConfigMap/prod/e"
        ]
    );
    assert_eq!(objs[4].origin, origin("nested.jsonnet", 3));
}

#[tokio::test]
async fn a_jsonnet_import_that_leaves_the_repository_is_refused_naming_the_file_and_the_path() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.libsonnet"), "'stolen'").unwrap();
    let tree = Tree::new();
    tree.write("deploy/app.jsonnet", "import 'lib.libsonnet'");
    // Opened first, as a Git checkout is: only the rendered path is walked for links
    // when rendering, so the link under shared/ is for the import resolver to catch.
    let checkout = tree.checkout("deploy");
    std::fs::create_dir_all(tree.root().join("shared")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.libsonnet"),
        tree.root().join("shared/linked.libsonnet"),
    )
    .unwrap();
    let cases = [
        ("import '../../etc/passwd'", "../../etc/passwd"),
        ("importstr '/etc/passwd'", "/etc/passwd"),
        ("importbin '../../../etc/passwd'", "../../../etc/passwd"),
        (
            "import '../shared/linked.libsonnet'",
            "../shared/linked.libsonnet",
        ),
    ];
    for (expr, path) in cases {
        tree.write(
            "deploy/lib.libsonnet",
            &format!("{{ apiVersion: 'v1', kind: 'ConfigMap', metadata: {{ name: 'x' }}, data: {{ a: {expr} }} }}"),
        );

        let err = render::render(
            &checkout,
            &RenderOptions::default(),
            "prod",
            &Scopes::builtin(),
        )
        .await
        .unwrap_err();

        assert!(
            matches!(
                &err,
                RenderError::JsonnetImport { file, import, .. }
                    if file == "deploy/lib.libsonnet" && import == path
            ),
            "{expr}: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("deploy/lib.libsonnet: import {path:?} is refused")
        );
    }
    let RenderError::JsonnetImport { source, .. } = &err_for_link(&tree, &checkout).await else {
        unreachable!("checked above")
    };
    assert!(
        matches!(source, ConfineError::SymlinkEscapes { link, .. } if link == "shared/linked.libsonnet"),
        "the link is named: {source:?}"
    );

    let escaping_lib = jsonnet_options(JsonnetOptions {
        libs: vec!["../vendor".into()],
        ..Default::default()
    });
    let err = render::render(&checkout, &escaping_lib, "prod", &Scopes::builtin())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RenderError::Confine(ConfineError::Escapes { path }) if path == "../vendor"),
        "a library outside the repository: {err:?}"
    );
}

async fn err_for_link(tree: &Tree, checkout: &Checkout) -> RenderError {
    tree.write(
        "deploy/lib.libsonnet",
        "import '../shared/linked.libsonnet'",
    );
    render::render(
        checkout,
        &RenderOptions::default(),
        "prod",
        &Scopes::builtin(),
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn a_jsonnet_syntax_error_names_the_file_and_the_line() {
    let tree = Tree::new();
    tree.write(
        "deploy/broken.jsonnet",
        "{\n  apiVersion: 'v1',\n  kind: 'ConfigMap' 'oops',\n}\n",
    );

    let err = tree.render_err("deploy", &RenderOptions::default()).await;

    let msg = err.to_string();
    assert!(
        msg.starts_with("deploy/broken.jsonnet:3:"),
        "file and line first: {msg}"
    );
    assert!(msg.contains("syntax error"), "{msg}");
}

#[tokio::test]
async fn a_jsonnet_runtime_error_names_the_file_and_the_line_where_it_happened() {
    let tree = Tree::new();
    tree.write(
        "deploy/lib.libsonnet",
        "{\n  name(x)::\n    if x == '' then error 'a name is required' else x,\n}\n",
    )
    .write(
        "deploy/app.jsonnet",
        "local lib = import 'lib.libsonnet';\n{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: lib.name('') } }\n",
    )
    .write("deploy/text.jsonnet", "'just a string'");

    let err = tree.render_err("deploy", &RenderOptions::default()).await;

    assert!(
        matches!(&err, RenderError::Jsonnet { file, at: Some(at), .. }
            if file == "deploy/app.jsonnet" && at.file == "deploy/lib.libsonnet" && at.line == 3),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("deploy/app.jsonnet: deploy/lib.libsonnet:3:"),
        "{err}"
    );
    assert!(err.to_string().contains("a name is required"), "{err}");

    tree.write(
        "deploy/app.jsonnet",
        "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ok' } }",
    );
    let err = tree.render_err("deploy", &RenderOptions::default()).await;
    assert_eq!(
        err.to_string(),
        "deploy/text.jsonnet: the output holds a string, where an object or an array of objects belongs"
    );
}

#[tokio::test]
async fn runaway_jsonnet_recursion_is_stopped_by_the_stack_limit() {
    let tree = Tree::new();
    tree.write(
        "deploy/loop.jsonnet",
        "local f(n) = f(n + 1) + 1;\n{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' }, data: { n: f(0) } }\n",
    );

    let err = tree.render_err("deploy", &RenderOptions::default()).await;

    assert!(
        matches!(&err, RenderError::Jsonnet { file, at: Some(at), .. }
            if file == "deploy/loop.jsonnet" && at.line == 1),
        "{err:?}"
    );
    assert!(err.to_string().contains("stack limit"), "{err}");
}

#[tokio::test]
async fn jsonnet_running_past_its_timeout_fails_with_the_timeout_error() {
    let tree = Tree::new();
    // Exponential, but finite: the thread left behind ends soon after the test.
    tree.write(
        "deploy/slow.jsonnet",
        "local f(n) = if n == 0 then 1 else f(n - 1) + f(n - 1);\n{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' }, data: { n: std.toString(f(22)) } }\n",
    );
    let opts = jsonnet_options(JsonnetOptions {
        timeout: Duration::from_millis(100),
        ..Default::default()
    });

    let started = std::time::Instant::now();
    let err = tree.render_err("deploy", &opts).await;

    assert!(
        matches!(&err, RenderError::Timeout { tool: "jsonnet", path, .. } if path == "deploy"),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "returned at the timeout"
    );
}

#[tokio::test]
async fn deeply_nested_jsonnet_source_is_an_error_not_a_crash() {
    let tree = Tree::new();
    let depth = 20_000;
    tree.write(
        "deploy/deep.jsonnet",
        &format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
    );

    let err = tree.render_err("deploy", &RenderOptions::default()).await;

    assert!(
        matches!(&err, RenderError::Jsonnet { file, .. } if file == "deploy/deep.jsonnet"),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_evaluation_that_ends_after_its_timeout_no_longer_counts_against_the_limit() {
    let tree = Tree::new();
    tree.write(
        "slow/slow.jsonnet",
        "local f(n) = if n == 0 then 1 else f(n - 1) + f(n - 1);\n{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' }, data: { n: std.toString(f(16)) } }\n",
    )
    .write(
        "fine/cm.jsonnet",
        "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'fine' } }",
    );
    let hurried = jsonnet_options(JsonnetOptions {
        timeout: Duration::from_millis(1),
        ..Default::default()
    });

    // More timeouts than the limit, one after another: each abandoned thread ends
    // soon (f(16) is quick), and the limit only counts those still running.
    for _ in 0..render::jsonnet::MAX_ABANDONED * 2 {
        let err = render::render(&tree.checkout("slow"), &hurried, "prod", &Scopes::builtin())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                RenderError::Timeout {
                    tool: "jsonnet",
                    ..
                }
            ),
            "{err:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let objs = tree.render("fine", &RenderOptions::default()).await;
    assert_eq!(keys(&objs), ["/ConfigMap/prod/fine"]);
}
