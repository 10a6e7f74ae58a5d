//! Import scenarios: Argo CD and Flux objects in, Capstan Applications, warnings and
//! errors out. The last tests read the conformance snapshots of
//! argoproj/argocd-example-apps and fluxcd/flux2-kustomize-helm-example.

use std::path::{Path, PathBuf};

use capstan_import::{ImportOptions, Outcome, RepoMap, import, manifest};
use serde_json::Value;

fn run(yaml: &str) -> Outcome {
    run_with(yaml, &ImportOptions::default())
}

fn run_with(yaml: &str, opts: &ImportOptions) -> Outcome {
    let input = manifest::parse(yaml, "input.yaml").expect("the scenario parses");
    import(&input, opts)
}

fn json(out: &Outcome, i: usize) -> Value {
    serde_json::to_value(&out.objects[i].application).unwrap()
}

/// `field: message` of every warning about `object` (`Kind ns/name`).
fn warnings_of(out: &Outcome, object: &str) -> Vec<String> {
    out.warnings
        .iter()
        .filter(|w| w.object.to_string() == object)
        .map(|w| format!("{}: {}", w.field, w.message))
        .collect()
}

fn has_warning(out: &Outcome, field: &str) -> bool {
    out.warnings.iter().any(|w| w.field == field)
}

fn errors(out: &Outcome) -> Vec<String> {
    out.errors.iter().map(|e| e.to_string()).collect()
}

const ARGO_FULL: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: shop
  namespace: argocd
  labels: {team: web}
  finalizers: [resources-finalizer.argocd.argoproj.io]
spec:
  project: default
  source:
    repoURL: https://git.example.com/org/env.git
    targetRevision: main
    path: ./charts/shop
    helm:
      releaseName: shop-prod
      valueFiles: [values-prod.yaml, ../../shared/common.yaml]
      values: |
        replicas: 2
      valuesObject: {image: {tag: "1.2"}}
      parameters:
      - {name: service.port, value: "8080"}
      - {name: flag, value: "true", forceString: true}
      fileParameters:
      - {name: cert, path: files/cert.pem}
  destination:
    server: https://kubernetes.default.svc
    namespace: shop
  syncPolicy:
    automated: {prune: true, selfHeal: true, allowEmpty: true}
    syncOptions: [CreateNamespace=true, ServerSideApply=false, NotAnOption=yes]
    retry:
      limit: 3
      backoff: {duration: "10", factor: 3, maxDuration: 5m}
    managedNamespaceMetadata:
      labels: {env: prod}
  ignoreDifferences:
  - group: apps
    kind: Deployment
    jsonPointers: [/spec/replicas]
    jqPathExpressions: ['.spec.template.spec.initContainers[]']
  - kind: Secret
    managedFieldsManagers: [vault]
  revisionHistoryLimit: 3
"#;

#[test]
fn an_argo_application_maps_every_field_capstan_has_and_names_the_rest() {
    let out = run(ARGO_FULL);
    assert!(out.errors.is_empty(), "{:?}", errors(&out));
    let app = json(&out, 0);
    assert_eq!(app["apiVersion"], "capstan.dev/v1alpha1");
    assert_eq!(app["kind"], "Application");
    assert_eq!(app["metadata"]["namespace"], "capstan-system");
    assert_eq!(app["metadata"]["labels"]["team"], "web");
    assert_eq!(
        app["metadata"]["finalizers"][0],
        "capstan.dev/delete-resources"
    );
    let src = &app["spec"]["source"];
    assert_eq!(src["repoURL"], "https://git.example.com/org/env.git");
    assert_eq!(src["targetRevision"], "main");
    assert_eq!(src["path"], "charts/shop");
    assert_eq!(src["helm"]["releaseName"], "shop-prod");
    assert_eq!(
        src["helm"]["valueFiles"],
        serde_json::json!(["charts/shop/values-prod.yaml", "shared/common.yaml"])
    );
    assert_eq!(src["helm"]["values"], "replicas: 2\n");
    assert_eq!(src["helm"]["valuesObject"]["image"]["tag"], "1.2");
    assert_eq!(src["helm"]["parameters"][0]["name"], "service.port");
    assert_eq!(app["spec"]["destination"]["namespace"], "shop");
    let policy = &app["spec"]["syncPolicy"];
    assert_eq!(policy["automated"]["prune"], true);
    assert_eq!(policy["automated"]["selfHeal"], true);
    assert_eq!(policy["allowEmpty"], true);
    assert_eq!(policy["createNamespace"], true);
    assert_eq!(
        policy["syncOptions"],
        serde_json::json!(["CreateNamespace=true", "ServerSideApply=false"])
    );
    assert_eq!(policy["retry"]["limit"], 3);
    assert_eq!(policy["retry"]["backoffDuration"], "10s");
    assert_eq!(policy["retry"]["backoffFactor"], 3);
    assert_eq!(policy["retry"]["backoffMaxDuration"], "5m");
    assert_eq!(policy["managedNamespaceMetadata"]["labels"]["env"], "prod");
    let ignore = app["spec"]["ignoreDifferences"].as_array().unwrap();
    assert_eq!(ignore.len(), 1, "the entry with only managers is left out");
    assert_eq!(ignore[0]["jsonPointers"][0], "/spec/replicas");

    let fields: Vec<&str> = out.warnings.iter().map(|w| w.field.as_str()).collect();
    for f in [
        "spec.source.helm.parameters[1].forceString",
        "spec.source.helm.fileParameters",
        "spec.syncPolicy.syncOptions[2]",
        "spec.ignoreDifferences[0].jqPathExpressions",
        "spec.ignoreDifferences[1]",
        "spec.revisionHistoryLimit",
    ] {
        assert!(fields.contains(&f), "no warning about {f}: {fields:?}");
    }
    assert!(
        !has_warning(&out, "spec.destination.server"),
        "in-cluster is not a warning"
    );
    assert!(
        !has_warning(&out, "spec.project"),
        "the default project is not a warning"
    );
    let w = out
        .warnings
        .iter()
        .find(|w| w.field == "spec.syncPolicy.syncOptions[2]")
        .unwrap();
    assert_eq!(w.location.file, "input.yaml");
    assert_eq!(w.object.to_string(), "Application argocd/shop");
    assert!(w.message.contains("NotAnOption"), "{}", w.message);
}

#[test]
fn plugins_projects_other_clusters_and_kustomize_overrides_warn() {
    let out = run(r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: cmp, namespace: argocd}
spec:
  project: team-a
  source:
    repoURL: https://git.example.com/env.git
    path: apps/cmp
    plugin: {name: kasane, env: [{name: A, value: b}]}
  destination: {server: 'https://prod.example.com:6443', namespace: cmp}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: kust, namespace: argocd}
spec:
  source:
    repoURL: https://git.example.com/env.git
    path: apps/kust
    kustomize: {namePrefix: prod-, images: ['nginx:1.27']}
  destination: {name: staging}
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: team-a, namespace: argocd}
spec:
  sourceRepos: ['*']
"#);
    assert!(out.errors.is_empty(), "{:?}", errors(&out));
    assert_eq!(out.objects.len(), 2, "nothing is made from the AppProject");
    let cmp = warnings_of(&out, "Application argocd/cmp");
    assert!(
        cmp.iter()
            .any(|w| w.starts_with("spec.project: project \"team-a\"")),
        "{cmp:?}"
    );
    assert!(
        cmp.iter()
            .any(|w| w.starts_with("spec.source.plugin.name: Config Management Plugins")),
        "{cmp:?}"
    );
    assert!(
        cmp.iter().any(|w| w.starts_with(
            "spec.destination.server: https://prod.example.com:6443 is not the in-cluster server"
        )),
        "{cmp:?}"
    );
    let kust = warnings_of(&out, "Application argocd/kust");
    assert!(
        kust.iter()
            .any(|w| w.starts_with("spec.source.kustomize.namePrefix")),
        "{kust:?}"
    );
    assert!(
        kust.iter()
            .any(|w| w.starts_with("spec.source.kustomize.images")),
        "{kust:?}"
    );
    assert!(
        kust.iter().any(|w| w.starts_with("spec.destination.name")),
        "{kust:?}"
    );
    assert_eq!(
        json(&out, 1)["spec"]["source"]["kustomize"],
        serde_json::json!({})
    );
    let project = warnings_of(&out, "AppProject argocd/team-a");
    assert_eq!(project.len(), 1, "{project:?}");
    assert!(
        project[0].contains("no Capstan equivalent yet"),
        "{project:?}"
    );
}

#[test]
fn jsonnet_settings_map_field_by_field() {
    let out = run(r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: jsonnet-guestbook-tla, namespace: argocd}
spec:
  source:
    repoURL: https://github.com/argoproj/argocd-example-apps
    path: jsonnet-guestbook-tla
    directory:
      recurse: true
      jsonnet:
        libs: [vendor]
        extVars: [{name: env, value: prod}]
        tlas:
        - {name: replicas, value: "3", code: true}
        - {name: image, value: gcr.io/heptio-images/ks-guestbook-demo:0.1}
  destination: {namespace: guestbook}
"#);
    assert!(out.errors.is_empty(), "{:?}", errors(&out));
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert_eq!(
        json(&out, 0)["spec"]["source"]["directory"]["jsonnet"],
        serde_json::json!({
            "extVars": [{"name": "env", "value": "prod"}],
            "tlas": [
                {"name": "replicas", "value": "3", "code": true},
                {"name": "image", "value": "gcr.io/heptio-images/ks-guestbook-demo:0.1"}
            ],
            "libs": ["vendor"]
        })
    );
    // an empty `jsonnet: {}`, as `kubectl get -o yaml` of an Argo CD Application shows
    // it, is no setting and no warning
    let out = run(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: d, namespace: argocd}\nspec:\n  source: {repoURL: 'https://x', path: d, directory: {recurse: true, jsonnet: {}}}\n",
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert!(
        json(&out, 0)["spec"]["source"]["directory"]
            .get("jsonnet")
            .is_none()
    );
}

#[test]
fn multi_source_keeps_refs_and_dollar_values_files() {
    let out = run(r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: ms, namespace: argocd}
spec:
  sources:
  - repoURL: https://charts.example.com
    chart: web
    targetRevision: 1.2.x
    helm: {valueFiles: [$values/env/prod/web.yaml]}
  - repoURL: https://git.example.com/values.git
    targetRevision: main
    ref: values
  - repoURL: registry.example.com/charts
    chart: db
    targetRevision: 2.0.0
  destination: {namespace: web}
"#);
    assert!(out.errors.is_empty(), "{:?}", errors(&out));
    let app = json(&out, 0);
    let s = &app["spec"]["sources"];
    assert_eq!(s[0]["chart"], "web");
    assert_eq!(s[0]["helm"]["valueFiles"][0], "$values/env/prod/web.yaml");
    assert_eq!(s[1]["ref"], "values");
    assert_eq!(s[2]["repoURL"], "oci://registry.example.com/charts");
    assert!(
        app["spec"]["source"]["repoURL"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}

#[test]
fn a_directory_without_recurse_reads_only_its_top_level() {
    let out = run(r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: d, namespace: argocd}
spec:
  source: {repoURL: https://git.example.com/env.git, path: d, directory: {include: '*.yaml'}}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: r, namespace: argocd}
spec:
  source: {repoURL: https://git.example.com/env.git, path: r, directory: {recurse: true, exclude: 'test/*'}}
"#);
    assert_eq!(
        json(&out, 0)["spec"]["source"]["directory"],
        serde_json::json!({"include": ["*.yaml"], "exclude": ["*/*"]})
    );
    assert_eq!(
        json(&out, 1)["spec"]["source"]["directory"],
        serde_json::json!({"exclude": ["test/*"]})
    );
}

#[test]
fn bad_argo_input_is_an_error_naming_file_object_and_field() {
    let out = run(r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: nosrc, namespace: argocd}
spec: {destination: {namespace: x}}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: badtype, namespace: argocd}
spec: {source: {repoURL: https://x, path: [a]}}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {namespace: argocd}
spec: {source: {repoURL: https://x}}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: ok, namespace: argocd}
spec: {source: {repoURL: https://x, path: ok}}
"#);
    assert_eq!(
        errors(&out),
        [
            "input.yaml (document 1): Application argocd/nosrc: spec.source: is required (or spec.sources)",
            "input.yaml (document 2): Application argocd/badtype: spec.source.path: must be a string, not a list",
            "input.yaml (document 3): Application without a name: metadata.name: is required",
        ]
    );
    assert_eq!(out.objects.len(), 1, "the good one is still converted");
}

const APPSET_LIST: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: guestbook, namespace: argocd}
spec:
  generators:
  - list:
      elements:
      - {cluster: engineering-dev, url: 'https://kubernetes.default.svc'}
      - {cluster: engineering-prod, url: 'https://kubernetes.default.svc', values: {replicas: "3"}}
  template:
    metadata:
      name: '{{cluster}}-guestbook'
      labels: {cluster: '{{ cluster }}'}
    spec:
      project: default
      source:
        repoURL: https://github.com/argoproj/argo-cd.git
        targetRevision: HEAD
        path: applicationset/examples/list-generator/guestbook/{{cluster}}
        helm:
          parameters: [{name: replicas, value: '{{values.replicas}}'}]
      destination: {server: '{{url}}', namespace: guestbook}
  syncPolicy: {preserveResourcesOnDeletion: true}
"#;

#[test]
fn a_list_generator_makes_one_application_per_element() {
    let out = run(APPSET_LIST);
    assert!(out.errors.is_empty(), "{:?}", errors(&out));
    let names: Vec<String> = out
        .objects
        .iter()
        .map(|o| o.application.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        ["engineering-dev-guestbook", "engineering-prod-guestbook"]
    );
    let dev = json(&out, 0);
    assert_eq!(
        dev["spec"]["source"]["path"],
        "applicationset/examples/list-generator/guestbook/engineering-dev"
    );
    assert_eq!(dev["metadata"]["labels"]["cluster"], "engineering-dev");
    assert_eq!(
        json(&out, 1)["spec"]["source"]["helm"]["parameters"][0]["value"],
        "3"
    );
    let w = warnings_of(&out, "ApplicationSet argocd/guestbook");
    assert!(
        w.iter()
            .any(|w| w.starts_with("spec.syncPolicy.preserveResourcesOnDeletion")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|w| w.starts_with(
            "spec.template.spec.source.helm.parameters[0].value: the parameter \"values.replicas\""
        )),
        "the first element has no values.replicas: {w:?}"
    );
    assert!(
        out.objects
            .iter()
            .all(|o| o.from.to_string() == "ApplicationSet argocd/guestbook")
    );
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn a_git_directory_generator_reads_the_repository_with_both_template_syntaxes() {
    let repo = tempfile::tempdir().unwrap();
    for d in [
        "apps/web_ui",
        "apps/api",
        "apps/legacy",
        "apps/.hidden",
        "other/x",
    ] {
        write(repo.path(), &format!("{d}/cm.yaml"), "kind: ConfigMap\n");
    }
    let url = "https://git.example.com/cluster-addons.git";
    let opts = ImportOptions {
        repos: RepoMap {
            rewrites: vec![],
            dirs: vec![(url.into(), repo.path().to_path_buf())],
        },
        ..Default::default()
    };
    let appset = |go: bool, name: &str, path: &str| {
        format!(
            r#"
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {{name: addons, namespace: argocd}}
spec:
  goTemplate: {go}
  goTemplateOptions: ["missingkey=error"]
  generators:
  - git:
      repoURL: {url}
      revision: HEAD
      directories:
      - path: apps/*
      - path: apps/legacy
        exclude: true
  template:
    metadata: {{name: '{name}'}}
    spec:
      source: {{repoURL: {url}, targetRevision: HEAD, path: '{path}'}}
      destination: {{namespace: '{name}'}}
"#
        )
    };
    for (go, name, path) in [
        (false, "{{path.basenameNormalized}}", "{{path}}"),
        (true, "{{ .path.basenameNormalized }}", "{{ .path.path }}"),
    ] {
        let out = run_with(&appset(go, name, path), &opts);
        assert!(out.errors.is_empty(), "{:?}", errors(&out));
        let made: Vec<(String, String)> = (0..out.objects.len())
            .map(|i| {
                let a = json(&out, i);
                (
                    a["metadata"]["name"].as_str().unwrap().to_string(),
                    a["spec"]["source"]["path"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            made,
            [
                ("api".to_string(), "apps/api".to_string()),
                ("web-ui".to_string(), "apps/web_ui".to_string())
            ],
            "goTemplate: {go}"
        );
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    }
    // without a local copy the generator is named in a warning, never silently empty
    let out = run(&appset(false, "{{path.basename}}", "{{path}}"));
    assert!(out.objects.is_empty());
    assert!(
        has_warning(&out, "spec.generators[0].git.repoURL"),
        "{:?}",
        out.warnings
    );
    // a Go template construct import cannot evaluate is an error, not a wrong name
    let out = run_with(
        &appset(true, "{{ .path.basename | sha1sum }}", "{{ .path.path }}"),
        &opts,
    );
    assert!(
        errors(&out)[0]
            .contains("spec.template.metadata.name: the Go template function \"sha1sum\""),
        "{:?}",
        errors(&out)
    );
}

#[test]
fn a_matrix_combines_a_list_and_git_directories_and_other_generators_warn() {
    let repo = tempfile::tempdir().unwrap();
    write(repo.path(), "apps/a/x.yaml", "");
    write(repo.path(), "apps/b/x.yaml", "");
    let opts = ImportOptions {
        repos: RepoMap {
            rewrites: vec![],
            dirs: vec![(
                "https://git.example.com/r".into(),
                repo.path().to_path_buf(),
            )],
        },
        ..Default::default()
    };
    let out = run_with(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: m, namespace: argocd}
spec:
  generators:
  - matrix:
      generators:
      - list: {elements: [{env: dev}, {env: prod}]}
      - git: {repoURL: 'https://git.example.com/r.git', revision: main, directories: [{path: 'apps/*'}]}
  - clusters: {selector: {matchLabels: {env: prod}}}
  template:
    metadata: {name: '{{env}}-{{path.basename}}'}
    spec:
      source: {repoURL: 'https://git.example.com/r.git', path: '{{path}}'}
      destination: {namespace: '{{env}}'}
"#,
        &opts,
    );
    assert!(out.errors.is_empty(), "{:?}", errors(&out));
    let names: Vec<String> = out
        .objects
        .iter()
        .map(|o| o.application.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["dev-a", "dev-b", "prod-a", "prod-b"]);
    assert!(
        has_warning(&out, "spec.generators[1].clusters"),
        "{:?}",
        out.warnings
    );
}

const FLUX_GIT: &str = r#"
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: infra, namespace: flux-system}
spec:
  interval: 1m0s
  url: ssh://git@github.com/org/infra
  ref: {branch: main}
  secretRef: {name: infra-ssh}
  ignore: "/docs"
---
apiVersion: v1
kind: Secret
metadata: {name: infra-ssh, namespace: flux-system}
data: {identity: c2VjcmV0LWtleS1ieXRlcw==, known_hosts: eA==}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: infra-controllers, namespace: flux-system}
spec:
  interval: 1h
  sourceRef: {kind: GitRepository, name: infra}
  path: ./infrastructure/controllers
  prune: true
  wait: true
  timeout: 5m
  targetNamespace: infra
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: apps, namespace: flux-system}
spec:
  interval: 10m
  dependsOn: [{name: infra-controllers}, {name: elsewhere}]
  sourceRef: {kind: GitRepository, name: infra}
  path: ./apps
  prune: false
  suspend: true
  postBuild:
    substitute: {cluster: prod}
  healthCheckExprs:
  - apiVersion: example.com/v1
    kind: Database
    inProgress: "status.phase == 'Creating'"
    failed: "status.phase == 'Failed'"
    current: "status.phase == 'Ready'"
"#;

#[test]
fn flux_kustomizations_become_applications_with_their_git_source() {
    let out = run(FLUX_GIT);
    assert!(out.errors.is_empty(), "{:?}", errors(&out));
    assert_eq!(out.objects.len(), 2);
    let infra = json(&out, 0);
    assert_eq!(infra["metadata"]["name"], "infra-controllers");
    assert_eq!(
        infra["metadata"]["finalizers"][0],
        "capstan.dev/delete-resources"
    );
    assert_eq!(
        infra["spec"]["source"]["repoURL"],
        "ssh://git@github.com/org/infra"
    );
    assert_eq!(infra["spec"]["source"]["targetRevision"], "main");
    assert_eq!(
        infra["spec"]["source"]["path"],
        "infrastructure/controllers"
    );
    assert_eq!(infra["spec"]["source"]["credentialsSecret"], "infra-ssh");
    assert_eq!(
        infra["spec"]["interval"], "1m0s",
        "the source's shorter interval"
    );
    assert_eq!(infra["spec"]["destination"]["namespace"], "infra");
    assert_eq!(
        infra["spec"]["syncPolicy"]["automated"],
        serde_json::json!({"prune": true, "selfHeal": true})
    );
    let apps = json(&out, 1);
    assert_eq!(
        apps["spec"]["dependsOn"],
        serde_json::json!(["infra-controllers", "elsewhere"])
    );
    assert_eq!(apps["spec"]["suspend"], true);
    assert_eq!(apps["spec"]["syncPolicy"]["automated"]["prune"], false);
    assert!(
        apps["metadata"].get("finalizers").is_none(),
        "no prune, no delete"
    );

    let w = warnings_of(&out, "Kustomization flux-system/infra-controllers");
    assert!(w.iter().any(|w| w.starts_with("spec.timeout")), "{w:?}");
    assert!(
        w.iter()
            .any(|w| w.contains("rename identity → sshPrivateKey, known_hosts → knownHosts")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("read from the Application's namespace capstan-system")),
        "{w:?}"
    );
    let w = warnings_of(&out, "Kustomization flux-system/apps");
    assert!(
        w.iter().any(|w| w
            .starts_with("spec.postBuild.substitute.cluster: post-build variable substitution")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|w| w.starts_with(
            "spec.dependsOn[1]: Kustomization flux-system/elsewhere is not in the input"
        )),
        "{w:?}"
    );
    let w = warnings_of(&out, "GitRepository flux-system/infra");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("spec.ignore: "), "{w:?}");
    // the Secret's values are never read, let alone printed
    let all = format!("{:?}{:?}", out.warnings, out.notes);
    assert!(
        !all.contains("c2VjcmV0") && !all.contains("secret-key"),
        "{all}"
    );
}

#[test]
fn git_refs_become_target_revisions_in_fluxs_order() {
    for (reference, expected) in [
        ("{branch: release}", "release"),
        ("{tag: v1.2.0, branch: main}", "v1.2.0"),
        ("{semver: '>=1.0.0 <2.0.0', tag: v1.2.0}", ">=1.0.0 <2.0.0"),
        (
            "{commit: 0123456789abcdef0123456789abcdef01234567, branch: main}",
            "0123456789abcdef0123456789abcdef01234567",
        ),
        ("{name: refs/tags/v3}", "v3"),
        ("{}", "master"),
    ] {
        let out = run(&format!(
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {{name: r, namespace: f}}\nspec: {{url: 'https://git.example.com/r', ref: {reference}}}\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {{name: k, namespace: f}}\nspec: {{sourceRef: {{kind: GitRepository, name: r}}, path: ./}}\n"
        ));
        assert!(out.errors.is_empty(), "{:?}", errors(&out));
        assert_eq!(
            json(&out, 0)["spec"]["source"]["targetRevision"],
            expected,
            "{reference}"
        );
        assert_eq!(json(&out, 0)["spec"]["source"]["path"], ".");
    }
}

#[test]
fn a_source_ref_to_an_object_not_in_the_input_is_an_error() {
    let out = run(r#"
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: apps, namespace: flux-system}
spec:
  sourceRef: {kind: GitRepository, name: flux-system}
  path: ./apps
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: web, namespace: web}
spec:
  chart: {spec: {chart: web, sourceRef: {kind: HelmRepository, name: charts, namespace: flux-system}}}
"#);
    let e = errors(&out);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("input.yaml (document 1): Kustomization flux-system/apps: spec.sourceRef: GitRepository flux-system/flux-system is not in the input; `flux bootstrap` writes it"), "{e:?}");
    assert_eq!(
        e[1],
        "input.yaml (document 2): HelmRelease web/web: spec.chart.spec.sourceRef: HelmRepository flux-system/charts is not in the input"
    );
    assert!(out.objects.is_empty());
}

const FLUX_HELM: &str = r#"
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata: {name: podinfo, namespace: podinfo}
spec: {interval: 5m, url: 'https://stefanprodan.github.io/podinfo'}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata: {name: ghcr, namespace: podinfo}
spec: {type: oci, url: 'oci://ghcr.io/stefanprodan/charts', secretRef: {name: ghcr-auth}}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: podinfo, namespace: podinfo}
spec:
  interval: 50m
  chart:
    spec:
      chart: podinfo
      version: '>=6.0.0'
      sourceRef: {kind: HelmRepository, name: podinfo}
  install:
    createNamespace: true
    strategy: {name: RetryOnFailure}
  driftDetection: {mode: enabled}
  values: {replicaCount: 2}
  valuesFrom:
  - {kind: ConfigMap, name: podinfo-values, valuesKey: prod.yaml}
  - {kind: Secret, name: podinfo-secrets, targetPath: redis.password, optional: true}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: podinfo-oci, namespace: podinfo}
spec:
  targetNamespace: web
  chart: {spec: {chart: podinfo, sourceRef: {kind: HelmRepository, name: ghcr}}}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata: {name: cert-manager, namespace: cert-manager}
spec:
  interval: 24h
  url: oci://quay.io/jetstack/charts/cert-manager
  layerSelector: {mediaType: "application/vnd.cncf.helm.chart.content.v1.tar+gzip", operation: copy}
  ref: {semver: "1.x"}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: cert-manager, namespace: cert-manager}
spec:
  interval: 12h
  chartRef: {kind: OCIRepository, name: cert-manager}
  values: {crds: {enabled: true}}
"#;

#[test]
fn helm_releases_become_applications_with_a_chart() {
    let out = run(FLUX_HELM);
    assert!(out.errors.is_empty(), "{:?}", errors(&out));
    assert_eq!(out.objects.len(), 3);
    let p = json(&out, 0);
    let src = &p["spec"]["source"];
    assert_eq!(src["repoURL"], "https://stefanprodan.github.io/podinfo");
    assert_eq!(src["chart"], "podinfo");
    assert_eq!(src["targetRevision"], ">=6.0.0");
    assert_eq!(src["helm"]["releaseName"], "podinfo");
    assert_eq!(src["helm"]["valuesObject"]["replicaCount"], 2);
    assert_eq!(
        src["helm"]["valuesFrom"][0],
        serde_json::json!({"kind": "ConfigMap", "name": "podinfo-values", "valuesKey": "prod.yaml"})
    );
    assert_eq!(src["helm"]["valuesFrom"][1]["targetPath"], "redis.password");
    assert_eq!(src["helm"]["valuesFrom"][1]["optional"], true);
    assert_eq!(p["spec"]["destination"]["namespace"], "podinfo");
    assert_eq!(p["spec"]["syncPolicy"]["createNamespace"], true);
    assert_eq!(
        p["spec"]["syncPolicy"]["automated"],
        serde_json::json!({"prune": true, "selfHeal": true})
    );
    assert_eq!(p["spec"]["interval"], "5m");
    let oci = json(&out, 1);
    assert_eq!(
        oci["spec"]["source"]["repoURL"],
        "oci://ghcr.io/stefanprodan/charts"
    );
    assert_eq!(oci["spec"]["source"]["targetRevision"], "*");
    assert_eq!(oci["spec"]["source"]["credentialsSecret"], "ghcr-auth");
    assert_eq!(
        oci["spec"]["source"]["helm"]["releaseName"], "web-podinfo-oci",
        "Flux's default release name"
    );
    assert_eq!(oci["spec"]["destination"]["namespace"], "web");
    assert_eq!(oci["spec"]["syncPolicy"]["automated"]["selfHeal"], false);
    let cm = json(&out, 2);
    assert_eq!(
        cm["spec"]["source"]["repoURL"],
        "oci://quay.io/jetstack/charts"
    );
    assert_eq!(cm["spec"]["source"]["chart"], "cert-manager");
    assert_eq!(cm["spec"]["source"]["targetRevision"], "1.x");

    let w = warnings_of(&out, "HelmRelease podinfo/podinfo");
    assert!(
        w.iter()
            .any(|w| w.starts_with("spec.install.strategy.name: Helm install options")),
        "{w:?}"
    );
    assert!(w.iter().any(|w| w.starts_with("spec.valuesFrom[0]: the ConfigMap podinfo/podinfo-values is read from the Application's namespace capstan-system")), "{w:?}");
    assert!(
        warnings_of(&out, "OCIRepository cert-manager/cert-manager").is_empty(),
        "the Helm chart layer is what Capstan reads"
    );
    // with the Applications in the HelmReleases' namespace nothing needs copying
    let out = run_with(
        FLUX_HELM,
        &ImportOptions {
            namespace: "podinfo".into(),
            ..Default::default()
        },
    );
    assert!(
        !warnings_of(&out, "HelmRelease podinfo/podinfo")
            .iter()
            .any(|w| w.contains("copy it there"))
    );
}

#[test]
fn a_name_taken_twice_gets_its_namespace_and_dependents_follow() {
    let out = run(r#"
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata: {name: charts, namespace: a}
spec: {url: 'https://charts.example.com'}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata: {name: charts, namespace: b}
spec: {url: 'https://charts.example.com'}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: redis, namespace: a}
spec: {chart: {spec: {chart: redis, sourceRef: {kind: HelmRepository, name: charts}}}}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: redis, namespace: b}
spec: {chart: {spec: {chart: redis, sourceRef: {kind: HelmRepository, name: charts}}}}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: app, namespace: b}
spec:
  dependsOn: [{name: redis}]
  chart: {spec: {chart: app, sourceRef: {kind: HelmRepository, name: charts}}}
"#);
    assert!(out.errors.is_empty(), "{:?}", errors(&out));
    assert_eq!(json(&out, 1)["metadata"]["name"], "b-redis");
    assert_eq!(
        json(&out, 1)["spec"]["source"]["helm"]["releaseName"],
        "redis"
    );
    assert_eq!(
        json(&out, 2)["spec"]["dependsOn"],
        serde_json::json!(["b-redis"])
    );
    assert!(has_warning(&out, "metadata.name"));
}

#[test]
fn capstan_applications_pass_through_and_other_kinds_are_notes() {
    let out = run(r#"
apiVersion: capstan.dev/v1alpha1
kind: Application
metadata: {name: native, namespace: apps}
spec: {source: {repoURL: 'https://git.example.com/r', path: web}}
---
apiVersion: v1
kind: Namespace
metadata: {name: podinfo}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata: {name: podinfo, namespace: flux-system}
spec: {image: ghcr.io/stefanprodan/podinfo}
"#);
    assert!(out.errors.is_empty(), "{:?}", errors(&out));
    assert_eq!(out.objects.len(), 1);
    assert_eq!(json(&out, 0)["metadata"]["namespace"], "apps");
    assert_eq!(out.notes.len(), 1);
    assert!(out.notes[0].message.contains("neither"));
    assert!(
        has_warning(&out, ""),
        "the ImageRepository is named: {:?}",
        out.warnings
    );
}

// ---- the conformance snapshots ----

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

#[test]
fn flux2_kustomize_helm_example_clusters_need_the_bootstrap_source_and_then_convert() {
    let Some(repos) = conformance() else { return };
    let example = repos.join("flux2-kustomize-helm-example");
    let clusters = manifest::read_path(&example.join("clusters/production")).unwrap();
    let out = import(&clusters, &ImportOptions::default());
    let e = errors(&out);
    assert_eq!(e.len(), 3, "one per Kustomization: {e:?}");
    assert!(e.iter().all(|e| e.contains("GitRepository flux-system/flux-system is not in the input; `flux bootstrap` writes it into flux-system/gotk-sync.yaml")), "{e:?}");

    // what `flux bootstrap` would have written into gotk-sync.yaml
    let mut input = clusters;
    input.extend(
        manifest::parse(
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: flux-system, namespace: flux-system}\nspec:\n  interval: 1m0s\n  ref: {branch: main}\n  url: ssh://git@github.com/fluxcd/flux2-kustomize-helm-example\n",
            "gotk-sync.yaml",
        )
        .unwrap(),
    );
    let out = import(&input, &ImportOptions::default());
    assert!(out.errors.is_empty(), "{:?}", errors(&out));
    let made: Vec<(String, String, Value)> = (0..out.objects.len())
        .map(|i| {
            let a = json(&out, i);
            (
                a["metadata"]["name"].as_str().unwrap().to_string(),
                a["spec"]["source"]["path"].as_str().unwrap().to_string(),
                a["spec"]["dependsOn"].clone(),
            )
        })
        .collect();
    assert_eq!(
        made,
        [
            (
                "apps".into(),
                "apps/production".into(),
                serde_json::json!(["infra-configs"])
            ),
            (
                "infra-controllers".into(),
                "infrastructure/controllers".into(),
                Value::Null
            ),
            (
                "infra-configs".into(),
                "infrastructure/configs".into(),
                serde_json::json!(["infra-controllers"])
            ),
        ]
    );
    let w = warnings_of(&out, "Kustomization flux-system/infra-configs");
    assert!(w.iter().any(|w| w.starts_with("spec.patches")), "{w:?}");
    assert!(
        w.iter().any(|w| w.starts_with("spec.retryInterval")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("read as the directory infrastructure")),
        "{w:?}"
    );
}

#[test]
fn flux2_kustomize_helm_example_infrastructure_controllers_make_chart_applications() {
    let Some(repos) = conformance() else { return };
    let dir = repos.join("flux2-kustomize-helm-example/infrastructure/controllers");
    let out = import(
        &manifest::read_path(&dir).unwrap(),
        &ImportOptions::default(),
    );
    assert!(out.errors.is_empty(), "{:?}", errors(&out));
    let charts: Vec<(String, String, String)> = (0..out.objects.len())
        .map(|i| {
            let s = &json(&out, i)["spec"]["source"];
            (
                s["repoURL"].as_str().unwrap().to_string(),
                s["chart"].as_str().unwrap().to_string(),
                s["targetRevision"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        charts,
        [
            (
                "oci://quay.io/jetstack/charts".into(),
                "cert-manager".into(),
                "1.x".into()
            ),
            (
                "oci://docker.io/envoyproxy".into(),
                "gateway-helm".into(),
                ">= 1.8.0-rc.0".into()
            ),
        ]
    );
    assert!(has_warning(&out, "spec.install.strategy.name"));
    assert!(has_warning(&out, "spec.upgrade.strategy.name"));
}
