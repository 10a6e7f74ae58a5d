//! The in-cluster install in `deploy/`: applied with the real `kubectl` to the embedded
//! API server, its CRDs kept identical to the generated ones, and its controller
//! arguments run by the real binary.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use capstan_apiserver::http::requests::{RequestLog, RequestRecord};
use capstan_testkit::{BasicAuth, GitServer, TestCluster, TestRepo};
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn json(cluster: &TestCluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&cluster.kubectl_ok(&all)).expect("kubectl prints JSON")
}

/// Run the binary with a Deployment container's arguments (the pod name standing in
/// for `$(POD_NAME)`, and a free loopback port for the container's port: tests run side
/// by side) against `cluster`; returns the arguments, the process and that port.
fn run_deployment_args(
    cluster: &TestCluster,
    container: &Value,
    state: &std::path::Path,
) -> (Vec<String>, std::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let container_port = container["ports"][0]["containerPort"]
        .as_u64()
        .expect("a container port");
    let args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| {
            a.as_str()
                .unwrap()
                .replace("$(POD_NAME)", "capstan-controller-0")
                .replace(
                    &format!("--listen=:{container_port}"),
                    &format!("--listen=127.0.0.1:{port}"),
                )
        })
        .collect();
    let child = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(&args)
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .env("CAPSTAN_STATE_DIR", state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (args, child, port)
}

/// GET `http://127.0.0.1:PORT{path}`: the status and body (`None` while refused).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    capstan_testkit::client::get(&format!("http://127.0.0.1:{port}{path}"))
}

#[test]
fn the_deploy_crds_are_the_ones_the_binary_generates() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
    cmd.args(["install", "--print"]);
    let out = capstan_testkit::process::run(cmd, None, Duration::from_secs(60));
    capstan_testkit::process::assert_success(&out, "capstan install --print");
    let on_disk = std::fs::read_to_string(deploy_dir().join("crds.yaml")).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout) == on_disk,
        "deploy/crds.yaml is stale: regenerate it with `cargo run -p capstan -- install --print > deploy/crds.yaml`"
    );
}

#[test]
fn the_deploy_manifests_install_two_controller_replicas_that_elect_a_leader() {
    let cluster = TestCluster::start();
    let dir = deploy_dir();
    let out = cluster.kubectl_ok(&["apply", "--server-side", "-k", dir.to_str().unwrap()]);
    for expected in [
        "namespace/capstan-system serverside-applied",
        "customresourcedefinition.apiextensions.k8s.io/applications.capstan.dev serverside-applied",
        "customresourcedefinition.apiextensions.k8s.io/auditrecords.capstan.dev serverside-applied",
        "serviceaccount/capstan-controller serverside-applied",
        "clusterrole.rbac.authorization.k8s.io/capstan-deployer serverside-applied",
        "rolebinding.rbac.authorization.k8s.io/capstan-controller serverside-applied",
        "deployment.apps/capstan-controller serverside-applied",
        "service/capstan serverside-applied",
        "poddisruptionbudget.policy/capstan-controller serverside-applied",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/applications.capstan.dev",
        "crd/auditrecords.capstan.dev",
    ]);
    cluster.kubectl_ok(&[
        "-n",
        "capstan-system",
        "rollout",
        "status",
        "deployment/capstan-controller",
        "--timeout=60s",
    ]);
    let deploy = json(
        &cluster,
        &[
            "-n",
            "capstan-system",
            "get",
            "deployment",
            "capstan-controller",
        ],
    );
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(deploy["status"]["availableReplicas"], 2);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "capstan-controller");
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);

    // The example Application is valid against the installed CRD.
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/applications/guestbook.yaml");
    cluster.kubectl_ok(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "-f",
        example.to_str().unwrap(),
    ]);

    // The Deployment's arguments are flags the binary accepts: run them (the pod name
    // standing in for $(POD_NAME)) and see the replica take the Lease.
    let state = tempfile::tempdir().unwrap();
    let (args, mut child, port) = run_deployment_args(&cluster, container, state.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    let holder = loop {
        let out = cluster.kubectl(&[
            "-n",
            "capstan-system",
            "get",
            "lease",
            "capstan-controller",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        let holder = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && !holder.is_empty() || Instant::now() > deadline {
            break holder;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("capstan {} exited: {status}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(holder, "capstan-controller-0");

    // The probes the Deployment declares answer on the port it names, and the Service
    // targets that port.
    let probe = |p: &str| {
        let path = container[p]["httpGet"]["path"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            container[p]["httpGet"]["port"],
            container["ports"][0]["name"]
        );
        path
    };
    let (live, ready) = (probe("livenessProbe"), probe("readinessProbe"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let answers = loop {
        let answers = (http_get(port, &live), http_get(port, &ready));
        if matches!(&answers, (Some((200, _)), Some((200, _)))) || Instant::now() > deadline {
            break answers;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // SIGTERM: the replica stops in order within 10 s and gives the Lease up, so a
    // standby takes over at its next look instead of after the lease duration
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the controller did not exit within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let out = cluster.kubectl(&[
        "-n",
        "capstan-system",
        "get",
        "lease",
        "capstan-controller",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "the Lease is released"
    );
    let (Some((200, _)), Some((200, ready_body))) = &answers else {
        panic!("the probes did not answer 200: {answers:?}");
    };
    let ready: Value = serde_json::from_str(ready_body).unwrap();
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["role"], "leader", "{ready}");
    let svc = json(
        &cluster,
        &["-n", "capstan-system", "get", "service", "capstan"],
    );
    assert_eq!(
        svc["spec"]["ports"][0]["targetPort"],
        container["ports"][0]["name"]
    );
    assert_eq!(
        svc["spec"]["selector"],
        deploy["spec"]["selector"]["matchLabels"]
    );
}

/// The rules a ServiceAccount gets from the RBAC objects in `docs`: (namespace the rule
/// is limited to — `None` for cluster-wide —, rule). ClusterRole aggregation is
/// resolved as the cluster's aggregation controller would.
fn rules_of(docs: &[Value], ns: &str, sa: &str) -> Vec<(Option<String>, Value)> {
    let kind = |d: &Value, k: &str| d["kind"] == k;
    let cluster_role = |name: &str| -> Vec<Value> {
        let Some(role) = docs
            .iter()
            .find(|d| kind(d, "ClusterRole") && d["metadata"]["name"] == name)
        else {
            return Vec::new();
        };
        let mut rules: Vec<Value> = role["rules"].as_array().cloned().unwrap_or_default();
        for selector in role["aggregationRule"]["clusterRoleSelectors"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let wanted = selector["matchLabels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for other in docs.iter().filter(|d| kind(d, "ClusterRole")) {
                let labels = &other["metadata"]["labels"];
                if wanted.iter().all(|(k, v)| &labels[k] == v) {
                    rules.extend(other["rules"].as_array().cloned().unwrap_or_default());
                }
            }
        }
        rules
    };
    let binds_sa = |b: &Value| {
        b["subjects"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == ns)
        })
    };
    let mut out = Vec::new();
    for b in docs.iter().filter(|d| binds_sa(d)) {
        let role = b["roleRef"]["name"].as_str().unwrap();
        let rules = match (b["kind"].as_str(), b["roleRef"]["kind"].as_str()) {
            (_, Some("ClusterRole")) => cluster_role(role),
            (Some("RoleBinding"), Some("Role")) => docs
                .iter()
                .find(|d| {
                    kind(d, "Role")
                        && d["metadata"]["name"] == role
                        && d["metadata"]["namespace"] == b["metadata"]["namespace"]
                })
                .and_then(|r| r["rules"].as_array().cloned())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let scope = match b["kind"].as_str() {
            Some("RoleBinding") => b["metadata"]["namespace"].as_str().map(str::to_string),
            _ => None,
        };
        out.extend(rules.into_iter().map(|r| (scope.clone(), r)));
    }
    out
}

fn allows(rules: &[(Option<String>, Value)], r: &RequestRecord) -> bool {
    let has = |v: &Value, s: &str| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|x| x == s || x == "*"))
    };
    let resource = match &r.subresource {
        Some(sub) => format!("{}/{sub}", r.resource),
        None => r.resource.clone(),
    };
    rules.iter().any(|(scope, rule)| {
        let in_scope = scope.is_none() || scope == &r.namespace;
        let names = rule["resourceNames"].as_array();
        let named = names.is_none_or(|n| {
            n.is_empty()
                || r.name
                    .as_ref()
                    .is_some_and(|name| n.iter().any(|x| x == name))
        });
        in_scope
            && named
            && has(&rule["verbs"], &r.verb)
            && has(&rule["apiGroups"], &r.group)
            && has(&rule["resources"], &resource)
    })
}

#[test]
fn the_deploy_rbac_allows_every_request_the_controller_makes() {
    let log = Arc::new(RequestLog::default());
    let mut opts = TestCluster::default_options();
    opts.request_log = Some(log.clone());
    let cluster = TestCluster::start_with(opts);
    cluster.kubectl_ok(&[
        "apply",
        "--server-side",
        "-k",
        deploy_dir().to_str().unwrap(),
    ]);

    // A private repository (credentials Secret), a Deployment, prune and self-heal.
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "env.git");
    let server = GitServer::start(root.path(), Some(BasicAuth::new("deployer", "s3cret"))).unwrap();
    repo.write(
        "web/ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n",
    );
    repo.write(
        "web/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  k: v\n",
    );
    repo.write(
        "web/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - {name: web, image: nginx:1.27}\n",
    );
    repo.commit("web");
    cluster.apply(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: git-creds\n  namespace: capstan-system\nstringData:\n  username: deployer\n  password: s3cret\n",
    );
    cluster.apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: web\n  namespace: capstan-system\nspec:\n  source:\n    repoURL: {}\n    path: web\n    credentialsSecret: git-creds\n  destination:\n    namespace: web\n  interval: 2s\n  syncPolicy:\n    automated:\n      prune: true\n      selfHeal: true\n",
        server.url("env.git")
    ));

    // The controller with the Deployment's arguments.
    let deploy = json(
        &cluster,
        &[
            "-n",
            "capstan-system",
            "get",
            "deployment",
            "capstan-controller",
        ],
    );
    let state = tempfile::tempdir().unwrap();
    let (_, mut child, _) = run_deployment_args(
        &cluster,
        &deploy["spec"]["template"]["spec"]["containers"][0],
        state.path(),
    );
    let wait = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let app = || {
        json(
            &cluster,
            &["-n", "capstan-system", "get", "application", "web"],
        )
    };
    wait("synced and healthy", &|| {
        let a = app();
        a["status"]["sync"]["status"] == "Synced" && a["status"]["health"]["status"] == "Healthy"
    });
    // Drift healed, a file pruned, the emergency stop followed.
    cluster.kubectl_ok(&["-n", "web", "scale", "deployment", "web", "--replicas=3"]);
    wait("the edit healed", &|| {
        json(&cluster, &["-n", "web", "get", "deployment", "web"])["spec"]["replicas"] == 1
    });
    repo.remove("web/cm.yaml");
    repo.commit("no settings");
    wait("the ConfigMap pruned", &|| {
        !cluster
            .kubectl(&["-n", "web", "get", "configmap", "settings"])
            .status
            .success()
    });
    let mut stop = Command::new(env!("CARGO_BIN_EXE_capstan"));
    stop.args(["stop", "--kubeconfig"])
        .arg(cluster.kubeconfig_path());
    capstan_testkit::process::assert_success(
        &capstan_testkit::process::run(stop, None, Duration::from_secs(60)),
        "capstan stop",
    );
    repo.write(
        "web/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  k: back\n",
    );
    repo.commit("settings again");
    wait("the stop reported", &|| {
        app()["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["reason"] == "EmergencyStop"))
    });
    let _ = child.kill();
    let _ = child.wait();

    // Every request the controller made is allowed by deploy/rbac.yaml.
    let text = std::fs::read_to_string(deploy_dir().join("rbac.yaml")).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let rules = rules_of(&docs, "capstan-system", "capstan-controller");
    let mine: Vec<RequestRecord> = log
        .records()
        .into_iter()
        .filter(|r| r.user_agent.contains("(controller)"))
        .collect();
    let mut denied: Vec<String> = mine
        .iter()
        .filter(|r| !allows(&rules, r))
        .map(|r| {
            format!(
                "{} {}/{}{} in {:?}",
                r.verb,
                r.group,
                r.resource,
                r.subresource
                    .as_deref()
                    .map(|s| format!("/{s}"))
                    .unwrap_or_default(),
                r.namespace
            )
        })
        .collect();
    denied.sort();
    denied.dedup();
    assert!(
        denied.is_empty(),
        "deploy/rbac.yaml denies:\n{}",
        denied.join("\n")
    );
    // ...and the scenario exercised the controller's whole range.
    let did = |verb: &str, group: &str, resource: &str, sub: Option<&str>| {
        mine.iter().any(|r| {
            r.verb == verb
                && r.group == group
                && r.resource == resource
                && r.subresource.as_deref() == sub
        })
    };
    for (verb, group, resource, sub) in [
        ("get", "", "secrets", None),
        ("watch", "", "configmaps", None),
        ("patch", "", "configmaps", None),
        ("delete", "", "configmaps", None),
        ("patch", "apps", "deployments", None),
        ("watch", "capstan.dev", "applications", None),
        ("patch", "capstan.dev", "applications", Some("status")),
        ("create", "capstan.dev", "auditrecords", None),
        ("create", "coordination.k8s.io", "leases", None),
        ("update", "coordination.k8s.io", "leases", None),
    ] {
        assert!(
            did(verb, group, resource, sub),
            "the scenario made no {verb} on {group}/{resource} {sub:?}"
        );
    }
    // Requests the policy must not allow, to show the check can fail.
    for (verb, group, resource) in [
        ("delete", "capstan.dev", "applications"),
        ("update", "capstan.dev", "auditrecords"),
        ("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
    ] {
        let r = RequestRecord {
            user_agent: String::new(),
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: None,
            namespace: Some("capstan-system".into()),
            name: Some("x".into()),
        };
        assert!(!allows(&rules, &r), "{verb} {group}/{resource} is allowed");
    }
}
