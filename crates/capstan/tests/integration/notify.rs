//! End-to-end Notifications: real `capstan controller` processes, the embedded API
//! server, a git server and HTTP receivers on loopback that record what arrives —
//! a webhook, Slack, Teams and a stand-in for GitHub's API, one that fails the first
//! attempts and one that never answers.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capstan_testkit::receiver::{Mode, Received, Receiver};
use capstan_testkit::{GitServer, TestCluster, TestRepo};
use serde_json::Value;

/// Values that must never appear in a log or a status.
const HOOK_PATH: &str = "/hooks/T0001/B0002/s3cr3t-hook-path";
const HMAC_KEY: &str = "hmac-key-not-for-logs";
const TOKEN: &str = "ghp_token_not_for_logs";

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Env {
    cluster: TestCluster,
    server: GitServer,
    repo: TestRepo,
    _root: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let root = tempfile::tempdir().unwrap();
        // owner/repo in the URL, as on a forge, so commit statuses find their repository
        let repo = TestRepo::create(root.path(), "acme/env.git");
        let server = GitServer::start(root.path(), None).unwrap();
        let cluster = TestCluster::start();
        let mut install = Command::new(env!("CARGO_BIN_EXE_capstan"));
        install
            .args(["install", "--kubeconfig"])
            .arg(cluster.kubeconfig_path());
        capstan_testkit::process::assert_success(
            &capstan_testkit::process::run(install, None, Duration::from_secs(60)),
            "capstan install",
        );
        cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n");
        Env {
            cluster,
            server,
            repo,
            _root: root,
            state: tempfile::tempdir().unwrap(),
        }
    }

    /// A controller process logging at debug level into `NAME.log`.
    fn controller(&self, name: &str, extra: &[&str]) -> Controller {
        let state = self.state.path().join(name);
        std::fs::create_dir_all(&state).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
        cmd.arg("controller")
            .arg("--kubeconfig")
            .arg(self.cluster.kubeconfig_path())
            .arg("--state-dir")
            .arg(&state)
            .args(["--identity", name, "--listen", "off"])
            .args(extra)
            .env("CAPSTAN_LOG", "capstan_controller=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.state.path().join(format!("{name}.log")))
                    .unwrap(),
            ));
        Controller(cmd.spawn().expect("capstan controller starts"))
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.state.path()).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                out.push_str(&format!(
                    "--- {}\n{}",
                    e.path().display(),
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                ));
            }
        }
        out
    }

    fn eventually(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}\n{}\nnotifications: {}\napplications: {}",
            self.logs(),
            self.cluster
                .kubectl_ok(&["get", "notifications", "-n", "apps", "-o", "json"]),
            self.cluster
                .kubectl_ok(&["get", "applications", "-n", "apps", "-o", "json"]),
        );
    }

    fn get(&self, kind: &str, name: &str) -> Value {
        serde_json::from_str(
            &self
                .cluster
                .kubectl_ok(&["get", kind, name, "-n", "apps", "-o", "json"]),
        )
        .unwrap()
    }

    /// The Secret `hooks` in `apps` with `KEY: VALUE` pairs.
    fn secret(&self, pairs: &[(&str, &str)]) {
        let data: String = pairs
            .iter()
            .map(|(k, v)| format!("  {k}: \"{v}\"\n"))
            .collect();
        self.cluster.apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: hooks\n  namespace: apps\nstringData:\n{data}"
        ));
    }

    /// A Notification in `apps`, and wait until the controller took it in.
    fn notification(&self, name: &str, spec: &str) {
        self.cluster.apply(&format!(
            "apiVersion: capstan.dev/v1alpha1\nkind: Notification\nmetadata:\n  name: {name}\n  namespace: apps\nspec:\n{spec}"
        ));
        self.eventually(
            &format!("Notification {name} ready"),
            Duration::from_secs(30),
            || {
                cond(&self.get("notifications", name), "Ready")
                    .is_some_and(|c| c["status"] == "True")
            },
        );
    }

    /// An automated Application `name` of `path`, into namespace `web`.
    fn application(&self, name: &str, path: &str, extra_spec: &str) {
        self.cluster.apply(&format!(
            "apiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: apps\n  labels: {{team: a}}\nspec:\n  source:\n    repoURL: {}\n    path: {path}\n  destination:\n    namespace: web\n  interval: 2s\n  syncPolicy:\n    automated:\n      prune: true\n{extra_spec}",
            self.server.url("acme/env.git")
        ));
    }

    fn deployed(&self, name: &str, rev: &str) -> bool {
        let app = self.get("applications", name);
        app["status"]["sync"]["status"] == "Synced"
            && app["status"]["health"]["status"] == "Healthy"
            && app["status"]["sync"]["revision"] == rev
    }

    /// No secret value in any log or in the Notification's status.
    fn assert_no_secrets(&self, notification: &str) {
        let status = self.get("notifications", notification)["status"].to_string();
        let logs = self.logs();
        for secret in [HOOK_PATH, "s3cr3t", HMAC_KEY, TOKEN] {
            assert!(!logs.contains(secret), "{secret:?} in the logs:\n{logs}");
            assert!(
                !status.contains(secret),
                "{secret:?} in the status: {status}"
            );
        }
    }
}

fn cond<'a>(o: &'a Value, ty: &str) -> Option<&'a Value> {
    o.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

fn cm(name: &str, wave: i32, data: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations:\n    capstan.dev/sync-wave: \"{wave}\"\ndata:\n  {data}\n"
    )
}

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n";

/// (trigger, revision) of each webhook body.
fn events(got: &[Received]) -> Vec<(String, String)> {
    got.iter()
        .map(|r| {
            let b = r.json();
            (
                b["trigger"].as_str().unwrap_or("").to_string(),
                b["revision"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

fn pair(t: &str, rev: &str) -> (String, String) {
    (t.to_string(), rev.to_string())
}

#[test]
fn syncs_and_deployments_are_sent_once_per_revision_signed_and_across_restarts() {
    let e = Env::new();
    let hook = Receiver::start(Mode::Ok);
    let github = Receiver::start(Mode::Ok);
    e.secret(&[
        ("url", &hook.url(HOOK_PATH)),
        ("hmac", HMAC_KEY),
        ("token", TOKEN),
    ]);
    e.repo.write("web/ns.yaml", NS);
    e.repo.write("web/cm.yaml", cm("settings", 0, "key: one"));
    e.repo.write("other/cm.yaml", cm("other", 0, "key: one"));
    let first = e.repo.commit("first");
    let c = e.controller("a", &[]);
    e.notification(
        "deploys",
        &format!(
            "  triggers: [on-sync-succeeded, on-deployed]\n  selector:\n    names: ['web*']\n    matchLabels: {{team: a}}\n  destinations:\n  - type: webhook\n    urlSecretRef: {{name: hooks, key: url}}\n    hmacSecretRef: {{name: hooks, key: hmac}}\n  - type: github\n    url: {}\n    tokenSecretRef: {{name: hooks, key: token}}\n",
            github.url("/api/v3")
        ),
    );
    e.application("web", "web", "");
    // not selected: another name
    e.application("other", "other", "");

    e.eventually(
        "the first revision's two events",
        Duration::from_secs(60),
        || hook.received().len() >= 2,
    );
    let got = hook.received();
    assert_eq!(
        sorted(events(&got)),
        [
            pair("on-deployed", &first),
            pair("on-sync-succeeded", &first)
        ]
    );
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, HOOK_PATH);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.header("x-capstan-signature").unwrap(),
            capstan_server::webhooks::verify::sign(HMAC_KEY.as_bytes(), &r.body),
            "the signature is the HMAC-SHA256 of the body as sent"
        );
        let body = r.json();
        assert_eq!(r.header("x-capstan-event"), body["trigger"].as_str());
        assert_eq!(r.header("x-capstan-delivery"), body["deliveryId"].as_str());
        assert_eq!(body["notification"], "apps/deploys");
        assert_eq!(body["application"]["name"], "web");
        assert_eq!(body["application"]["namespace"], "apps");
        assert!(body["message"].as_str().unwrap().contains(&first[..7]));
    }

    // the GitHub stand-in got commit statuses on the commit
    let statuses = github.wait_for(2, Duration::from_secs(30));
    for s in &statuses {
        assert_eq!(s.path, format!("/api/v3/repos/acme/env/statuses/{first}"));
        assert_eq!(
            s.header("authorization").map(str::to_string),
            Some(format!("Bearer {TOKEN}"))
        );
        let body = s.json();
        assert_eq!(body["state"], "success");
        assert_eq!(body["context"], "capstan/web");
    }

    // a second commit: its two events, and nothing again for the first
    e.repo.write("web/cm.yaml", cm("settings", 0, "key: two"));
    let second = e.repo.commit("second");
    e.eventually(
        "the second revision deployed",
        Duration::from_secs(30),
        || e.deployed("web", &second),
    );
    hook.wait_for(4, Duration::from_secs(30));
    // several reconciles (2 s interval) later, still four
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        sorted(events(&hook.received())),
        [
            pair("on-deployed", &first),
            pair("on-deployed", &second),
            pair("on-sync-succeeded", &first),
            pair("on-sync-succeeded", &second),
        ]
    );
    let n = e.get("notifications", "deploys");
    assert_eq!(n["status"]["lastDelivery"]["result"], "Sent");
    let sent = n["status"]["sent"].as_array().unwrap();
    assert_eq!(sent.len(), 8, "4 events × 2 destinations: {sent:?}");

    // a crash and a new controller: nothing is sent again...
    drop(c);
    let _c = e.controller("b", &[]);
    e.eventually(
        "the new controller at work",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(e.state.path().join("b.log"))
                .is_ok_and(|l| l.contains("reconciled"))
        },
    );
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(hook.received().len(), 4, "{:?}", events(&hook.received()));
    assert_eq!(github.received().len(), 4);
    // ...and nothing is lost: the next commit is announced by the new one
    e.repo.write("web/cm.yaml", cm("settings", 0, "key: three"));
    let third = e.repo.commit("third");
    e.eventually(
        "the third commit's two events",
        Duration::from_secs(60),
        || hook.received().len() >= 6,
    );
    let got = hook.received();
    assert_eq!(
        sorted(events(&got[4..])),
        [
            pair("on-deployed", &third),
            pair("on-sync-succeeded", &third)
        ]
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(hook.received().len(), 6);
    e.assert_no_secrets("deploys");
}

#[test]
fn failed_syncs_degraded_health_and_the_emergency_stop_are_sent() {
    let e = Env::new();
    let hook = Receiver::start(Mode::Ok);
    e.secret(&[("url", &hook.url(HOOK_PATH))]);
    // wave 0 judged Degraded by the Application's own rule: the sync fails before wave 1
    e.repo.write("web/ns.yaml", NS);
    e.repo
        .write("web/gate.yaml", cm("gate", 0, "ready: \"no\""));
    e.repo.write("web/after.yaml", cm("after", 1, "key: v"));
    let rev = e.repo.commit("a gate that fails");
    let _c = e.controller("a", &[]);
    e.notification(
        "alerts",
        "  triggers: [on-sync-failed, on-health-degraded, on-emergency-stop]\n  destinations:\n  - type: webhook\n    urlSecretRef: {name: hooks, key: url}\n",
    );
    e.application(
        "web",
        "web",
        "  healthChecks:\n  - apiVersion: v1\n    kind: ConfigMap\n    current: \"data.?ready.orValue('yes') == 'yes'\"\n    failed: \"data.?ready.orValue('') == 'no'\"\n    message: \"'ready is ' + data.?ready.orValue('unset')\"\n",
    );
    let got = hook.wait_for(2, Duration::from_secs(60));
    assert_eq!(
        sorted(events(&got)),
        [
            pair("on-health-degraded", &rev),
            pair("on-sync-failed", &rev)
        ]
    );
    let failed = got
        .iter()
        .find(|r| r.json()["trigger"] == "on-sync-failed")
        .unwrap()
        .json();
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("failed to sync"),
        "{failed}"
    );
    let degraded = got
        .iter()
        .find(|r| r.json()["trigger"] == "on-health-degraded")
        .unwrap()
        .json();
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("ready is no"),
        "{degraded}"
    );
    // the retries of the failing sync are not announced again
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(hook.received().len(), 2, "{:?}", events(&hook.received()));

    let mut stop = Command::new(env!("CARGO_BIN_EXE_capstan"));
    stop.args(["stop", "--reason", "incident 42", "--kubeconfig"])
        .arg(e.cluster.kubeconfig_path());
    capstan_testkit::process::assert_success(
        &capstan_testkit::process::run(stop, None, Duration::from_secs(60)),
        "capstan stop",
    );
    let got = hook.wait_for(3, Duration::from_secs(30));
    let stopped = got[2].json();
    assert_eq!(stopped["trigger"], "on-emergency-stop");
    assert!(
        stopped["message"].as_str().unwrap().contains("incident 42"),
        "{stopped}"
    );
    assert!(stopped.get("application").is_none());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(hook.received().len(), 3);
    e.assert_no_secrets("alerts");
}

#[test]
fn a_failing_receiver_gets_it_at_the_third_attempt_and_a_hanging_one_delays_nothing() {
    let e = Env::new();
    let flaky = Receiver::start(Mode::FailFirst(2));
    let stuck = Receiver::start(Mode::Hang);
    let slack = Receiver::start(Mode::Ok);
    let teams = Receiver::start(Mode::Ok);
    e.secret(&[
        ("flaky", &flaky.url(HOOK_PATH)),
        ("stuck", &stuck.url(HOOK_PATH)),
        ("slack", &slack.url(HOOK_PATH)),
        ("teams", &teams.url(HOOK_PATH)),
    ]);
    e.repo.write("web/ns.yaml", NS);
    e.repo.write("web/cm.yaml", cm("settings", 0, "key: one"));
    let first = e.repo.commit("first");
    let _c = e.controller("a", &["--notification-timeout", "2s"]);
    e.notification(
        "flaky",
        "  triggers: [on-deployed]\n  destinations:\n  - type: webhook\n    urlSecretRef: {name: hooks, key: flaky}\n",
    );
    e.notification(
        "chat",
        "  triggers: [on-deployed]\n  destinations:\n  - type: webhook\n    name: stuck\n    urlSecretRef: {name: hooks, key: stuck}\n  - type: slack\n    urlSecretRef: {name: hooks, key: slack}\n  - type: teams\n    urlSecretRef: {name: hooks, key: teams}\n",
    );
    e.application("web", "web", "");
    e.eventually("deployed", Duration::from_secs(60), || {
        e.deployed("web", &first)
    });
    let deployed_at = Instant::now();

    // Slack and Teams at once, while the other destination hangs
    let s = slack.wait_for(1, Duration::from_secs(10));
    let t = teams.wait_for(1, Duration::from_secs(10));
    let hung = stuck.wait_for(1, Duration::from_secs(10));
    assert_eq!(hung[0].answered, None);
    assert!(
        s[0].at.duration_since(deployed_at) < Duration::from_secs(5),
        "Slack waited for the hanging receiver"
    );
    let s = s[0].json();
    assert!(s["text"].as_str().unwrap().contains("apps/web"), "{s}");
    assert_eq!(s["blocks"][0]["type"], "section");
    let t = t[0].json();
    assert_eq!(t["type"], "message");
    assert_eq!(
        t["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(t["attachments"][0]["content"]["type"], "AdaptiveCard");

    // the flaky receiver: two 500s, then the same delivery succeeds
    let f = flaky.wait_for(3, Duration::from_secs(30));
    assert_eq!(
        f.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [Some(500), Some(500), Some(200)]
    );
    let id = f[0].header("x-capstan-delivery").unwrap();
    assert!(f.iter().all(|r| r.header("x-capstan-delivery") == Some(id)));
    assert!(
        f[2].at.duration_since(f[0].at) >= Duration::from_secs(2),
        "retried with backoff (1 s, 2 s)"
    );
    e.eventually(
        "the flaky delivery recorded",
        Duration::from_secs(10),
        || {
            let n = e.get("notifications", "flaky");
            n["status"]["lastDelivery"]["attempts"] == 3
                && n["status"]["lastDelivery"]["result"] == "Sent"
        },
    );

    // reconciles go on while a receiver hangs: the next commit is deployed at once
    e.repo.write("web/cm.yaml", cm("settings", 0, "key: two"));
    let second = e.repo.commit("second");
    e.eventually(
        "the second commit deployed",
        Duration::from_secs(20),
        || e.deployed("web", &second),
    );
    slack.wait_for(2, Duration::from_secs(10));
    teams.wait_for(2, Duration::from_secs(10));

    // the hanging destination is given up on after its attempts, and says so
    e.eventually(
        "the hanging delivery given up",
        Duration::from_secs(90),
        || {
            cond(&e.get("notifications", "chat"), "Delivered").is_some_and(|c| {
                c["status"] == "False"
                    && c["reason"] == "DeliveryFailed"
                    && c["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("to stuck"))
            })
        },
    );
    assert!(stuck.received().len() >= 5);
    e.assert_no_secrets("chat");
    e.assert_no_secrets("flaky");
}

#[test]
fn an_application_deployed_before_the_notification_existed_is_not_announced() {
    let e = Env::new();
    let hook = Receiver::start(Mode::Ok);
    e.secret(&[("url", &hook.url(HOOK_PATH))]);
    e.repo.write("web/ns.yaml", NS);
    e.repo.write("web/cm.yaml", cm("settings", 0, "key: one"));
    let first = e.repo.commit("first");
    let _c = e.controller("a", &[]);
    e.application("web", "web", "");
    e.eventually("deployed", Duration::from_secs(60), || {
        e.deployed("web", &first)
    });
    std::thread::sleep(Duration::from_millis(1100));
    e.notification(
        "late",
        "  triggers: [on-deployed, on-sync-succeeded]\n  destinations:\n  - type: webhook\n    urlSecretRef: {name: hooks, key: url}\n",
    );
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        hook.received().is_empty(),
        "announced the past: {:?}",
        events(&hook.received())
    );
    e.repo.write("web/cm.yaml", cm("settings", 0, "key: two"));
    let second = e.repo.commit("second");
    let got = hook.wait_for(2, Duration::from_secs(60));
    assert_eq!(
        sorted(events(&got)),
        [
            pair("on-deployed", &second),
            pair("on-sync-succeeded", &second)
        ]
    );
}

#[test]
fn a_new_leader_sends_nothing_twice_and_goes_on() {
    let e = Env::new();
    let hook = Receiver::start(Mode::Ok);
    e.secret(&[("url", &hook.url(HOOK_PATH))]);
    e.repo.write("web/ns.yaml", NS);
    e.repo.write("web/cm.yaml", cm("settings", 0, "key: one"));
    let first = e.repo.commit("first");
    let elect = ["--leader-elect", "--lease-duration", "3s"];
    let mut replicas = [
        ("a", Some(e.controller("a", &elect))),
        ("b", Some(e.controller("b", &elect))),
    ];
    e.notification(
        "deploys",
        "  triggers: [on-deployed]\n  destinations:\n  - type: webhook\n    urlSecretRef: {name: hooks, key: url}\n",
    );
    e.application("web", "web", "");
    let got = hook.wait_for(1, Duration::from_secs(60));
    assert_eq!(events(&got), [pair("on-deployed", &first)]);

    let holder = || {
        e.cluster
            .kubectl(&[
                "get",
                "lease",
                "capstan-controller",
                "-n",
                "capstan-system",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ])
            .stdout
    };
    let leader = String::from_utf8(holder()).unwrap();
    let (standby, _) = replicas.iter().find(|(n, _)| *n != leader).unwrap();
    let standby = standby.to_string();
    for (name, c) in replicas.iter_mut() {
        if *name == leader {
            drop(c.take());
        }
    }
    e.eventually("the standby leads", Duration::from_secs(30), || {
        String::from_utf8(holder()).unwrap() == standby
    });
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(hook.received().len(), 1, "{:?}", events(&hook.received()));
    e.repo.write("web/cm.yaml", cm("settings", 0, "key: two"));
    let second = e.repo.commit("second");
    let got = hook.wait_for(2, Duration::from_secs(60));
    assert_eq!(events(&got[1..]), [pair("on-deployed", &second)]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(hook.received().len(), 2);
}
