//! End-to-end: a real Prometheus (Debian's `prometheus`) scrapes `capstan controller
//! --listen` on loopback, and the metrics are read back through Prometheus' HTTP API
//! as a dashboard would: the Application's `capstan_app_info` labels, its sync
//! counter, the kube client's requests, the Git fetches — and the Application's series
//! gone once it is deleted, the emergency stop once it is on.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use capstan_testkit::{BasicAuth, GitServer, Prometheus, TestCluster, TestRepo};
use serde_json::Value;

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of a vector sample (`[time, "value"]`).
fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a sample value: {sample}"))
}

fn sum(result: &[Value]) -> f64 {
    result.iter().map(value).sum()
}

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn prometheus_scrapes_the_controller_and_answers_for_the_application() {
    let cluster = TestCluster::start();
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "env.git");
    let git = GitServer::start(root.path(), Some(BasicAuth::new("ci", "s3cret-token"))).unwrap();
    repo.write(
        "web/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  key: one\n",
    );
    repo.commit("first");
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = std::fs::File::create(state.path().join("controller.log")).unwrap();
    let _controller = Controller(
        Command::new(env!("CARGO_BIN_EXE_capstan"))
            .arg("controller")
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig_path())
            .arg("--state-dir")
            .arg(state.path())
            .arg(format!("--listen=127.0.0.1:{port}"))
            // Prometheus scrapes without a token here; the API tests check the default
            .arg("--open-metrics")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("capstan controller starts"),
    );
    cluster.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n",
    );
    // the CRDs are installed by the controller at start
    let app = format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: web\n  namespace: apps\nspec:\n  source:\n    repoURL: {}\n    path: web\n  destination:\n    namespace: web\n  interval: 2s\n  syncPolicy:\n    automated:\n      prune: true\n",
        git.url_with_credentials("env.git")
    );
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let out = cluster.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &app);
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the Application could not be created: {}\ncontroller log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(state.path().join("controller.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let prom = Prometheus::start(&[format!("127.0.0.1:{port}").parse().unwrap()]);
    prom.wait_for_scrape(TIMEOUT);

    let info = prom.query_until(
        r#"capstan_app_info{namespace="apps",name="web"}"#,
        TIMEOUT,
        |r| {
            r.len() == 1
                && r[0]["metric"]["sync_status"] == "Synced"
                && r[0]["metric"]["health_status"] == "Healthy"
        },
    );
    let labels = &info[0]["metric"];
    assert_eq!(labels["job"], capstan_testkit::prometheus::JOB);
    assert_eq!(
        labels["repo"],
        git.url("env.git").as_str(),
        "no credentials: {labels}"
    );
    assert_eq!(labels["dest_namespace"], "web");
    assert_eq!(labels["suspended"], "false");
    assert_eq!(value(&info[0]), 1.0);

    let synced =
        prom.query(r#"capstan_app_sync_total{namespace="apps",name="web",phase="Succeeded"}"#);
    assert_eq!(synced.len(), 1, "{synced:?}");
    assert!(value(&synced[0]) >= 1.0, "{synced:?}");

    // every request of the controller's client is counted, by Kubernetes verb and code
    let watches = prom.query(r#"capstan_kube_requests_total{verb="watch",code="200"}"#);
    assert!(sum(&watches) >= 1.0, "{watches:?}");
    let patches = prom.query(r#"capstan_kube_requests_total{verb="patch",code=~"2.."}"#);
    assert!(
        sum(&patches) >= 1.0,
        "status and objects are applied: {patches:?}"
    );

    let fetches = prom.query(r#"capstan_git_requests_total{result="success"}"#);
    assert_eq!(fetches.len(), 1, "{fetches:?}");
    assert_eq!(fetches[0]["metric"]["repo"], git.url("env.git").as_str());
    let fetch_count = prom.query("capstan_git_fetch_duration_seconds_count");
    assert!(sum(&fetch_count) >= 1.0, "{fetch_count:?}");
    let reconciles = prom.query("capstan_reconcile_duration_seconds_count");
    assert!(sum(&reconciles) >= 1.0, "{reconciles:?}");
    let build = prom.query("capstan_build_info");
    assert_eq!(build[0]["metric"]["version"], env!("CARGO_PKG_VERSION"));
    let stop = prom.query("capstan_emergency_stop");
    assert_eq!(stop.len(), 1, "{stop:?}");
    assert_eq!(value(&stop[0]), 0.0);
    let all = prom.query(r#"{__name__=~"capstan_.+", job="capstan"}"#);
    assert!(
        !all.iter().any(|s| s.to_string().contains("s3cret-token")),
        "a credential in a series: {all:?}"
    );

    // the emergency stop, and a deleted Application gone from the next scrape
    let mut stop_cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
    stop_cmd
        .args(["stop", "--reason", "metrics test", "--kubeconfig"])
        .arg(cluster.kubeconfig_path());
    let out = capstan_testkit::process::run(stop_cmd, None, Duration::from_secs(60));
    capstan_testkit::process::assert_success(&out, "capstan stop");
    prom.query_until("capstan_emergency_stop", TIMEOUT, |r| {
        r.len() == 1 && value(&r[0]) == 1.0
    });
    cluster.kubectl_ok(&["delete", "application", "web", "-n", "apps"]);
    prom.query_until(
        r#"capstan_app_info{name="web"}"#,
        TIMEOUT,
        <[Value]>::is_empty,
    );
    prom.query_until(
        r#"capstan_app_sync_total{name="web"}"#,
        TIMEOUT,
        <[Value]>::is_empty,
    );
}
