//! The in-cluster install in `deploy/`: applied with the real `kubectl` to the embedded
//! API server, its CRDs kept identical to the generated ones, and its controller
//! arguments run by the real binary.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use capstan_testkit::TestCluster;
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn json(cluster: &TestCluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&cluster.kubectl_ok(&all)).expect("kubectl prints JSON")
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
    let args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| {
            a.as_str()
                .unwrap()
                .replace("$(POD_NAME)", "capstan-controller-0")
        })
        .collect();
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(&args)
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .env("CAPSTAN_STATE_DIR", state.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(holder, "capstan-controller-0");
}
