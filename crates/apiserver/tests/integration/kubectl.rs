//! The real `kubectl` (v1.32) against the embedded API server: whatever kubectl does
//! against a real cluster in a GitOps flow must behave the same here.

use std::time::Duration;

use crate::util::{TestServer, eventually, fixture, stderr, stdout};

fn apply_mixed_set(s: &TestServer) {
    s.apply(&fixture("mixed-set.yaml"));
}

#[test]
fn api_resources_lists_builtins_with_scope_kind_and_short_names() {
    let s = TestServer::start();
    let out = s.kubectl_ok(&["api-resources", "--no-headers"]);
    let row = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from api-resources:\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("deployments"),
        ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
    assert_eq!(
        row("namespaces"),
        ["namespaces", "ns", "v1", "false", "Namespace"]
    );
    assert_eq!(
        row("clusterroles"),
        [
            "clusterroles",
            "rbac.authorization.k8s.io/v1",
            "false",
            "ClusterRole"
        ]
    );
    assert_eq!(
        row("customresourcedefinitions"),
        [
            "customresourcedefinitions",
            "crd,crds",
            "apiextensions.k8s.io/v1",
            "false",
            "CustomResourceDefinition"
        ]
    );
    for name in [
        "configmaps",
        "secrets",
        "services",
        "serviceaccounts",
        "pods",
        "events",
        "endpoints",
        "persistentvolumeclaims",
        "statefulsets",
        "daemonsets",
        "replicasets",
        "jobs",
        "cronjobs",
        "ingresses",
        "networkpolicies",
        "roles",
        "rolebindings",
        "clusterrolebindings",
        "leases",
        "poddisruptionbudgets",
        "horizontalpodautoscalers",
    ] {
        row(name);
    }
}

#[test]
fn server_side_apply_of_a_mixed_set_creates_everything_including_a_crd_and_its_cr() {
    let s = TestServer::start();
    let out = s.apply(&fixture("mixed-set.yaml"));
    for line in [
        "namespace/demo serverside-applied",
        "configmap/cfg serverside-applied",
        "secret/sec serverside-applied",
        "deployment.apps/web serverside-applied",
        "service/web serverside-applied",
    ] {
        assert!(out.contains(line), "{out}");
    }
    s.apply(&fixture("widget-crd.yaml"));
    s.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=10s",
    ]);
    let out = s.apply(&fixture("widget.yaml"));
    assert!(
        out.contains("widget.example.com/w1 serverside-applied"),
        "{out}"
    );

    let widgets = s.kubectl_ok(&["get", "wd", "-n", "demo"]);
    assert!(
        widgets.contains("SIZE") && widgets.contains("w1") && widgets.contains(" 3 "),
        "printer columns:\n{widgets}"
    );
    let secret = s.kubectl_ok(&[
        "get",
        "secret",
        "sec",
        "-n",
        "demo",
        "-o",
        "jsonpath={.data.password}",
    ]);
    assert_eq!(secret, "aHVudGVyMg==", "stringData is folded into data");
    let svc = s.kubectl_ok(&[
        "get",
        "svc",
        "web",
        "-n",
        "demo",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert!(svc.starts_with("10.96."), "a ClusterIP is allocated: {svc}");
    let managers = s.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "demo",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[0].manager}/{.metadata.managedFields[0].operation}",
    ]);
    assert_eq!(managers, "kubectl/Apply");
}

#[test]
fn reapplying_without_a_label_removes_it() {
    let s = TestServer::start();
    apply_mixed_set(&s);
    let labels = s.kubectl_ok(&[
        "get",
        "cm",
        "cfg",
        "-n",
        "demo",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert!(labels.contains("tier"), "{labels}");
    s.apply(
        &fixture("mixed-set.yaml").replace("labels: {app: web, tier: front}", "labels: {app: web}"),
    );
    let labels = s.kubectl_ok(&[
        "get",
        "cm",
        "cfg",
        "-n",
        "demo",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert!(
        !labels.contains("tier"),
        "the removed label is gone: {labels}"
    );
    assert!(labels.contains("app"), "{labels}");
}

#[test]
fn an_apply_by_another_field_manager_conflicts_until_forced() {
    let s = TestServer::start();
    apply_mixed_set(&s);
    let changed = fixture("mixed-set.yaml").replace("key: value", "key: other");
    let args = ["apply", "--server-side", "--field-manager=other", "-f", "-"];
    let out = s.kubectl_stdin(&args, Some(&changed));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl\" using v1: .data.key"),
        "{err}"
    );

    let forced = [
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        "-",
    ];
    let out = s.kubectl_stdin(&forced, Some(&changed));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.kubectl_ok(&[
            "get",
            "cm",
            "cfg",
            "-n",
            "demo",
            "-o",
            "jsonpath={.data.key}"
        ]),
        "other"
    );
}

#[test]
fn diff_server_side_exits_0_without_and_1_with_differences() {
    let s = TestServer::start();
    apply_mixed_set(&s);
    let same = s.kubectl_stdin(
        &["diff", "--server-side", "-f", "-"],
        Some(&fixture("mixed-set.yaml")),
    );
    assert_eq!(
        same.status.code(),
        Some(0),
        "unchanged: {}{}",
        stdout(&same),
        stderr(&same)
    );
    let changed = fixture("mixed-set.yaml")
        .replace("key: value", "key: other")
        .replace("replicas: 2", "replicas: 5");
    let diff = s.kubectl_stdin(&["diff", "--server-side", "-f", "-"], Some(&changed));
    assert_eq!(diff.status.code(), Some(1), "{}", stderr(&diff));
    let text = stdout(&diff);
    assert!(
        text.contains("-  key: value") && text.contains("+  key: other"),
        "{text}"
    );
    assert!(text.contains("+  replicas: 5"), "{text}");
}

#[test]
fn patch_and_label_change_objects_with_every_patch_type() {
    let s = TestServer::start();
    apply_mixed_set(&s);
    s.kubectl_ok(&[
        "patch",
        "cm",
        "cfg",
        "-n",
        "demo",
        "-p",
        r#"{"data":{"added":"1"}}"#,
    ]);
    s.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        "demo",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
    ]);
    s.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        "demo",
        "--type=merge",
        "-p",
        r#"{"metadata":{"annotations":{"note":"x"}}}"#,
    ]);
    // strategic merge: a second container is merged in by name, the first one kept
    s.kubectl_ok(&["patch", "deploy", "web", "-n", "demo", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"}]}}}}"#]);
    let names = s.kubectl_ok(&["get", "deploy", "web", "-n", "demo", "-o", "jsonpath={.spec.template.spec.containers[*].name} {.spec.replicas} {.metadata.annotations.note}"]);
    assert_eq!(names, "web sidecar 3 x");
    assert_eq!(
        s.kubectl_ok(&[
            "get",
            "cm",
            "cfg",
            "-n",
            "demo",
            "-o",
            "jsonpath={.data.added}"
        ]),
        "1"
    );

    s.kubectl_ok(&["label", "cm", "cfg", "-n", "demo", "color=blue"]);
    let labelled = s.kubectl_ok(&["get", "cm", "-n", "demo", "-l", "color=blue", "-o", "name"]);
    assert_eq!(labelled.trim(), "configmap/cfg");
    s.kubectl_ok(&["label", "cm", "cfg", "-n", "demo", "color-"]);
    assert_eq!(
        s.kubectl_ok(&["get", "cm", "-n", "demo", "-l", "color", "-o", "name"])
            .trim(),
        ""
    );
    let generation = s.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "demo",
        "-o",
        "jsonpath={.metadata.generation}",
    ]);
    assert_eq!(
        generation, "3",
        "replicas and template changes bump generation, the annotation does not"
    );
}

#[test]
fn delete_waits_for_finalizers_and_completes_when_the_last_one_goes() {
    let s = TestServer::start();
    apply_mixed_set(&s);
    s.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: demo, finalizers: [example.com/hold]}\n");
    s.kubectl_ok(&["delete", "cm", "held", "-n", "demo", "--wait=false"]);
    let ts = s.kubectl_ok(&[
        "get",
        "cm",
        "held",
        "-n",
        "demo",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(
        !ts.is_empty(),
        "a deletionTimestamp is set while the finalizer holds the object"
    );
    s.kubectl_ok(&[
        "patch",
        "cm",
        "held",
        "-n",
        "demo",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let gone = s.kubectl(&["get", "cm", "held", "-n", "demo"]);
    assert!(stderr(&gone).contains("NotFound"), "{}", stderr(&gone));
}

#[test]
fn deleting_a_namespace_removes_everything_in_it() {
    let s = TestServer::start();
    apply_mixed_set(&s);
    s.apply(&fixture("widget-crd.yaml"));
    s.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=10s",
    ]);
    s.apply(&fixture("widget.yaml"));
    s.kubectl_ok(&["delete", "namespace", "demo", "--timeout=20s"]);
    let ns = s.kubectl(&["get", "ns", "demo"]);
    assert!(stderr(&ns).contains("NotFound"), "{}", stderr(&ns));
    for kind in ["cm", "secret", "deploy", "svc", "widgets"] {
        let left = s.kubectl_ok(&[
            "get",
            kind,
            "-A",
            "-o",
            "name",
            "--field-selector",
            "metadata.namespace=demo",
        ]);
        assert_eq!(left.trim(), "", "{kind} left in the deleted namespace");
    }
}

#[test]
fn deleting_a_crd_deletes_its_custom_resources() {
    let s = TestServer::start();
    apply_mixed_set(&s);
    s.apply(&fixture("widget-crd.yaml"));
    s.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=10s",
    ]);
    s.apply(&fixture("widget.yaml"));
    s.kubectl_ok(&["delete", "crd", "widgets.example.com", "--timeout=20s"]);
    assert_eq!(s.kubectl_ok(&["get", "crd", "-o", "name"]).trim(), "");
    let res = s.kubectl(&["get", "widgets", "-A"]);
    assert!(!res.status.success(), "the resource is no longer served");
    let all = s.server().cluster().store.all_objects();
    assert!(
        !all.iter().any(|(gr, _)| gr.group == "example.com"),
        "no Widget is left in storage"
    );
}

#[test]
fn wait_for_available_on_a_simulated_deployment() {
    let s = TestServer::start();
    apply_mixed_set(&s);
    s.kubectl_ok(&[
        "wait",
        "--for=condition=Available",
        "deploy/web",
        "-n",
        "demo",
        "--timeout=10s",
    ]);
    let ready = s.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "demo",
        "-o",
        "jsonpath={.status.readyReplicas}/{.status.observedGeneration}",
    ]);
    assert_eq!(ready, "2/1");
}

#[test]
fn kubectl_explain_finds_the_built_in_kinds_in_the_openapi_v3_documents() {
    let s = TestServer::start();
    let replicas = s.kubectl_ok(&["explain", "deployment.spec.replicas"]);
    assert!(
        replicas.contains("FIELD: replicas <integer>")
            && replicas.contains("Number of desired pods"),
        "{replicas}"
    );
    let image = s.kubectl_ok(&["explain", "pods.spec.containers.image"]);
    assert!(image.contains("Container image name"), "{image}");
    let cm = s.kubectl_ok(&["explain", "configmap"]);
    assert!(
        cm.contains("KIND:       ConfigMap") && cm.contains("data\t<map[string]string>"),
        "{cm}"
    );
}

#[test]
fn an_ingress_gets_a_load_balancer_address_unless_told_to_fail() {
    let s = TestServer::start();
    s.apply(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: shop, namespace: default}\nspec:\n  rules:\n    - host: shop.example\n      http:\n        paths:\n          - {path: /, pathType: Prefix, backend: {service: {name: front, port: {number: 80}}}}\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: broken, namespace: default, annotations: {simulate.capstan.dev/fail: \"true\"}}\nspec:\n  defaultBackend: {service: {name: front, port: {number: 80}}}\n",
    );
    // as on a cluster: kubectl waits for the address an ingress controller writes
    s.kubectl_ok(&[
        "wait",
        "--for=jsonpath={.status.loadBalancer.ingress[0].ip}=198.51.100.11",
        "ingress/shop",
        "--timeout=10s",
    ]);
    // the failing one gets the simulation's status too (no address), and no more
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let broken = loop {
        let out = s.kubectl_ok(&["get", "ingress", "broken", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        if v.pointer("/status/loadBalancer").is_some() {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the simulation never wrote the failing Ingress's status: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        broken["status"]["loadBalancer"],
        serde_json::json!({}),
        "a failing Ingress gets no address"
    );
}

#[test]
fn a_deployment_told_to_fail_exceeds_its_progress_deadline() {
    let s = TestServer::start();
    s.apply(&fixture("deployment-progress-deadline-exceeded.yaml"));
    s.kubectl_ok(&[
        "wait",
        "--for=condition=Progressing=False",
        "deploy/doomed",
        "--timeout=10s",
    ]);
    let reason = s.kubectl_ok(&[
        "get",
        "deploy",
        "doomed",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
    ]);
    assert_eq!(reason, "ProgressDeadlineExceeded");
    let out = s.kubectl(&[
        "wait",
        "--for=condition=Available",
        "deploy/doomed",
        "--timeout=1s",
    ]);
    assert!(
        !out.status.success(),
        "a failed deployment never becomes Available"
    );
}

#[test]
fn get_watch_sees_an_added_object() {
    let s = TestServer::start();
    apply_mixed_set(&s);
    let mut cmd = crate::util::kubectl_command(&s.kubeconfig, s.dir.path());
    cmd.args(["get", "cm", "-n", "demo", "-w", "--request-timeout=5s"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl get -w starts");
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout_pipe = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout_pipe)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut text = String::new();
    let wait_for = |prefix: &str, text: &mut String| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !text.lines().any(|l| l.starts_with(prefix)) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    text.push_str(&line);
                    text.push('\n');
                }
                Err(_) => return false,
            }
        }
        true
    };
    // the list is printed first; the watch resumes from its resourceVersion
    assert!(wait_for("cfg ", &mut text), "initial list printed:\n{text}");
    s.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: late, namespace: demo}\ndata: {a: b}\n",
    );
    let added = wait_for("late ", &mut text);
    let _ = child.kill();
    let _ = child.wait();
    assert!(added, "the ADDED event is printed:\n{text}");
}

#[test]
fn invalid_custom_resources_are_rejected_naming_the_field() {
    let s = TestServer::start();
    apply_mixed_set(&s);
    s.apply(&fixture("widget-crd.yaml"));
    s.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=10s",
    ]);
    let bad = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w2, namespace: demo}\nspec: {size: big, color: green}\n";
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(bad));
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("spec.size: Invalid value: \"big\"")
            && err.contains("must be of type integer"),
        "{err}"
    );
    assert!(
        err.contains("spec.color: Unsupported value: \"green\""),
        "{err}"
    );
    let missing = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w3, namespace: demo}\nspec: {color: red}\n";
    let err = stderr(&s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(missing)));
    assert!(err.contains("spec.size: Required value"), "{err}");
    let unknown = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w4, namespace: demo}\nspec: {size: 1, extra: 1}\n";
    let err = stderr(&s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(unknown)));
    assert!(
        err.contains("unknown field \"spec.extra\""),
        "kubectl asks for strict field validation: {err}"
    );
}

#[test]
fn objects_in_a_missing_namespace_are_not_found() {
    let s = TestServer::start();
    let out = s.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: nowhere}\n"),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("namespaces \"nowhere\" not found"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn scale_and_status_subresources() {
    let s = TestServer::start();
    apply_mixed_set(&s);
    s.kubectl_ok(&["scale", "deploy", "web", "-n", "demo", "--replicas=4"]);
    assert!(eventually(Duration::from_secs(10), || {
        s.kubectl_ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "demo",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]) == "4"
    }));
    let managers = s.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "demo",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(
        managers.contains("kubectl-scale") || managers.contains("kubectl"),
        "{managers}"
    );
}

#[test]
fn a_service_account_token_authenticates_but_is_not_authorized() {
    // the token is asked for as kube-rs does (JSON), and used with kubectl;
    // `kubectl create token` itself (a protobuf body) is in kubectl_imperative
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::api::{Api, PostParams};
    let s = TestServer::start();
    s.apply(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: deployer\n  namespace: default\n",
    );
    let server = &s;
    let request = |expiration: i64, name: &'static str| {
        server.block_on(async move {
            let api: Api<ServiceAccount> = Api::namespaced(server.client().await, "default");
            let req = TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(expiration),
                    ..Default::default()
                }),
                ..Default::default()
            };
            api.create_token_request(name, &PostParams::default(), &req)
                .await
        })
    };
    let token = request(3600, "deployer")
        .unwrap()
        .status
        .unwrap()
        .token
        .unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    // the server knows who it is, and, with no RBAC, authorizes only its admin token
    let out = s.kubectl(&["get", "configmaps", "--token", &token]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("Forbidden") && err.contains("system:serviceaccount:default:deployer"),
        "{err}"
    );
    // and it may ask what it may do (`kubectl auth can-i`, asked here as kube-rs asks
    // it, in JSON): nothing but that, while the admin may do everything
    let can_i = |token: Option<String>, verb: &'static str, resource: &'static str| {
        use k8s_openapi::api::authorization::v1::{
            ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
        };
        server.block_on(async move {
            let client = match token {
                None => server.client().await,
                Some(t) => {
                    let kc = kube::config::Kubeconfig::read_from(&server.kubeconfig).unwrap();
                    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                        .await
                        .unwrap();
                    cfg.auth_info.token = Some(t.into());
                    kube::Client::try_from(cfg).unwrap()
                }
            };
            let api: Api<SelfSubjectAccessReview> = Api::all(client);
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some(verb.into()),
                        resource: Some(resource.into()),
                        group: Some(
                            if resource.starts_with("selfsubject") {
                                "authorization.k8s.io"
                            } else {
                                ""
                            }
                            .into(),
                        ),
                        namespace: Some("default".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = api.create(&PostParams::default(), &review).await.unwrap();
            answer.status.unwrap().allowed
        })
    };
    assert!(can_i(None, "create", "deployments"), "the admin may");
    assert!(
        !can_i(Some(token.clone()), "get", "configmaps"),
        "the ServiceAccount may not"
    );
    assert!(
        can_i(Some(token.clone()), "create", "selfsubjectaccessreviews"),
        "but it may ask"
    );
    // `kubectl auth can-i --list`: the admin's rules are everything
    let rules = server.block_on(async move {
        use k8s_openapi::api::authorization::v1::{
            SelfSubjectRulesReview, SelfSubjectRulesReviewSpec,
        };
        let api: Api<SelfSubjectRulesReview> = Api::all(server.client().await);
        let review = SelfSubjectRulesReview {
            spec: SelfSubjectRulesReviewSpec {
                namespace: Some("default".into()),
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &review).await.unwrap()
    });
    let status = rules.status.unwrap();
    assert!(!status.incomplete);
    assert_eq!(status.resource_rules[0].verbs, ["*"]);
    assert_eq!(
        status.resource_rules[0].resources,
        Some(vec!["*".to_string()])
    );
    // an unknown ServiceAccount, or a too short lifetime, is refused as kube-apiserver does
    let e = request(3600, "nobody").unwrap_err();
    assert!(matches!(&e, kube::Error::Api(s) if s.code == 404), "{e:?}");
    let e = request(60, "deployer").unwrap_err();
    assert!(e.to_string().contains("10 minutes"), "{e}");
    // a token of a deleted ServiceAccount authenticates nobody
    s.kubectl_ok(&["delete", "serviceaccount", "deployer"]);
    let out = s.kubectl(&["get", "configmaps", "--token", &token]);
    assert!(stderr(&out).contains("Unauthorized"), "{}", stderr(&out));
}
