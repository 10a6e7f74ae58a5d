//! The fault suite (issue 11): real `capstan apiserver` and `capstan controller`
//! processes and a real git server, with faults injected, processes killed with
//! SIGKILL at random points, servers taken away and brought back, and a full disk.
//! Each test checks that the cluster ends as Git says, with nothing lost, nothing
//! doubled and nothing wrongly pruned, and prints the figures docs/reliability.md
//! quotes (`cargo nextest run -p capstan -E 'test(/^faults::/)' --no-capture`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capstan_testkit::{GitServer, TestRepo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// `capstan apiserver` as a process, with its stdout lines kept.
struct ApiProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// `127.0.0.1:PORT`.
    listen: String,
}

impl ApiProcess {
    fn start(data: &Path, kubeconfig: &Path, listen: &str, faults: Option<&str>) -> ApiProcess {
        Self::start_with(data, kubeconfig, listen, faults, "100ms")
    }

    /// [`start`](Self::start) with simulated rollouts taking `rollout` (e.g. `1s`).
    fn start_with(
        data: &Path,
        kubeconfig: &Path,
        listen: &str,
        faults: Option<&str>,
        rollout: &str,
    ) -> ApiProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
        cmd.args(["apiserver", "--listen", listen, "--simulate-delay", rollout])
            .arg("--data-dir")
            .arg(data)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(spec) = faults {
            cmd.args(["--faults", spec]);
        }
        let mut child = cmd.spawn().expect("capstan apiserver starts");
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        reader.read_line(&mut first).expect("first line");
        let listen = first
            .trim()
            .strip_prefix("API server listening on https://")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        let lines = Arc::new(Mutex::new(vec![first.trim().to_string()]));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        ApiProcess {
            child,
            lines,
            listen,
        }
    }

    /// SIGTERM, wait for the exit; every line it printed.
    fn stop(mut self) -> Vec<String> {
        signal(&self.child, "TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the API server did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(100));
        self.lines.lock().unwrap().clone()
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `capstan controller` as a process, logging to `state/controller.log`.
struct ControllerProcess {
    child: Child,
}

impl ControllerProcess {
    fn start(kubeconfig: &Path, state: &Path) -> ControllerProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state.join("controller.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_capstan"))
            .arg("controller")
            .env("CAPSTAN_LISTEN", "127.0.0.1:0")
            .env(
                "CAPSTAN_LOG",
                "capstan_controller=debug,capstan_engine=debug",
            )
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--state-dir")
            .arg(state)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("capstan controller starts");
        ControllerProcess { child }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directories and servers one test uses.
struct Bench {
    root: tempfile::TempDir,
    repo: TestRepo,
    git: Option<GitServer>,
    kubeconfig: PathBuf,
}

impl Bench {
    fn new() -> Bench {
        let root = tempfile::tempdir().unwrap();
        let repo = TestRepo::create(root.path(), "env.git");
        let git = GitServer::start(root.path(), None).unwrap();
        let kubeconfig = root.path().join("kubeconfig");
        for dir in ["data", "state", "home"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        Bench {
            root,
            repo,
            git: Some(git),
            kubeconfig,
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn repo_url(&self) -> String {
        self.git.as_ref().expect("git is up").url("env.git")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir("state").join("controller.log")).unwrap_or_default()
    }

    /// `kubectl`, once.
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        super::apiserver_restart::try_kubectl(&self.kubeconfig, &self.dir("home"), args, stdin)
    }

    /// `kubectl` until it succeeds (the server injects faults, or is coming back).
    fn kubectl_retry(&self, args: &[&str], stdin: Option<&str>) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.kubectl(args, stdin) {
                Ok(out) => return out,
                Err(e) if Instant::now() > deadline => panic!("kubectl {args:?}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn application(&self, name: &str, path: &str, target: &str) {
        self.kubectl_retry(
            &["apply", "-f", "-"],
            Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n"),
        );
        let yaml = format!(
            "apiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: apps\nspec:\n  source:\n    repoURL: {}\n    path: {path}\n  destination:\n    namespace: {target}\n  interval: 2s\n  syncPolicy:\n    automated:\n      prune: true\n      selfHeal: true\n",
            self.repo_url()
        );
        self.kubectl_retry(&["apply", "-f", "-"], Some(&yaml));
    }

    fn app(&self, name: &str) -> Option<Value> {
        let out = self
            .kubectl(
                &["get", "applications", name, "-n", "apps", "-o", "json"],
                None,
            )
            .ok()?;
        serde_json::from_str(&out).ok()
    }

    /// The ConfigMaps of `ns`: name → (uid, data.value).
    fn configmaps(&self, ns: &str) -> Option<BTreeMap<String, (String, String)>> {
        let out = self
            .kubectl(&["get", "cm", "-n", ns, "-o", "json"], None)
            .ok()?;
        let list: Value = serde_json::from_str(&out).ok()?;
        Some(
            list["items"]
                .as_array()?
                .iter()
                .map(|o| {
                    (
                        o["metadata"]["name"].as_str().unwrap_or("").to_string(),
                        (
                            o["metadata"]["uid"].as_str().unwrap_or("").to_string(),
                            o["data"]["value"].as_str().unwrap_or("").to_string(),
                        ),
                    )
                })
                .filter(|(name, _)| name != "kube-root-ca.crt")
                .collect(),
        )
    }

    /// Poll until `check` holds; on timeout fail with `what` and the controller log's tail.
    fn eventually(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        panic!(
            "timed out after {timeout:?} waiting for {what}\ncontroller log (last lines):\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }

    /// True when the Application is Synced and Healthy at `revision`.
    fn synced_at(&self, name: &str, revision: &str) -> bool {
        self.app(name).is_some_and(|a| {
            a["status"]["sync"]["status"] == "Synced"
                && a["status"]["sync"]["revision"] == revision
                && a["status"]["health"]["status"] == "Healthy"
        })
    }
}

fn configmap(name: &str, value: &str, wave: Option<i32>) -> String {
    let annotations = wave
        .map(|w| format!("  annotations:\n    capstan.dev/sync-wave: \"{w}\"\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{annotations}data:\n  value: \"{value}\"\n"
    )
}

fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

/// The `injecting faults`/`N faults injected` summary a stopped server printed.
fn fault_summary(lines: &[String]) -> String {
    lines
        .iter()
        .find(|l| l.contains("faults injected in"))
        .cloned()
        .unwrap_or_else(|| panic!("no fault summary in {lines:?}"))
}

#[test]
fn a_thousand_object_sync_at_ten_percent_faults_converges_with_nothing_lost_or_doubled() {
    let b = Bench::new();
    b.repo.write("big/ns.yaml", namespace("big"));
    for i in 0..1000 {
        b.repo.write(
            format!("big/cm-{i:04}.yaml"),
            configmap(&format!("cm-{i:04}"), &format!("value-{i}"), None),
        );
    }
    let head = b.repo.commit("a thousand ConfigMaps");
    let spec = "rate=0.1,status=500|503|429|409|504,delay=1s,reset,watch-close=5s,gone,seed=1011";
    let api = ApiProcess::start(&b.dir("data"), &b.kubeconfig, "127.0.0.1:0", Some(spec));
    let started = Instant::now();
    let controller = ControllerProcess::start(&b.kubeconfig, &b.dir("state"));
    b.application("big", "big", "big");
    b.eventually(
        "the sync to converge under faults",
        Duration::from_secs(600),
        || b.synced_at("big", &head),
    );
    let took = started.elapsed();
    controller.kill();
    let summary = fault_summary(&api.stop());

    // read back from the same data, without faults: what was acknowledged is there
    let api = ApiProcess::start(&b.dir("data"), &b.kubeconfig, "127.0.0.1:0", None);
    let cms = b.configmaps("big").expect("the ConfigMaps list");
    let expected: BTreeSet<String> = (0..1000).map(|i| format!("cm-{i:04}")).collect();
    let names: BTreeSet<String> = cms.keys().cloned().collect();
    let lost: Vec<_> = expected.difference(&names).collect();
    let extra: Vec<_> = names.difference(&expected).collect();
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(extra.is_empty(), "doubled or unexpected: {extra:?}");
    for (name, (_, value)) in &cms {
        let i: usize = name["cm-".len()..].parse().unwrap();
        assert_eq!(value, &format!("value-{i}"), "{name}");
    }
    let inventory = b.kubectl_retry(
        &[
            "get",
            "cm",
            "-n",
            "capstan-system",
            "capstan-inventory-apps.big",
            "-o",
            "jsonpath={.data.objects}",
        ],
        None,
    );
    for name in &expected {
        assert!(
            inventory.contains(name.as_str()),
            "{name} is in the inventory"
        );
    }
    eprintln!(
        "FIGURE 1000-object sync at 10% faults: converged in {:.1} s; {summary}; lost 0, doubled 0",
        took.as_secs_f64()
    );
    drop(api);
}

/// Where a kill landed, judged from what the cluster holds right after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum KillPoint {
    BeforeApplying,
    InTheWaves,
    BeforeOrWhilePruning,
    RecordingTheResult,
    AfterTheSync,
}

#[test]
fn killed_at_random_points_of_syncs_the_controller_and_api_server_converge_after_each_restart() {
    let b = Bench::new();
    let mut rng = StdRng::seed_from_u64(20_261_202);
    // an app over three waves with a Deployment in the middle one (1 s to roll out, and
    // its image changes every round, so the sync waits there),
    // an Application beside it that must never be touched, and an object nobody manages
    let mut desired: BTreeMap<String, (String, i32)> = (0..24)
        .map(|i| (format!("obj-{i:02}"), (format!("v0-{i}"), i % 3)))
        .collect();
    let write_desired = |desired: &BTreeMap<String, (String, i32)>| {
        for f in std::fs::read_dir(b.repo.work_path().join("kill"))
            .into_iter()
            .flatten()
        {
            let f = f.unwrap().path();
            if f.file_name().unwrap().to_string_lossy().starts_with("obj-") {
                std::fs::remove_file(f).unwrap();
            }
        }
        for (name, (value, wave)) in desired {
            b.repo.write(
                format!("kill/{name}.yaml"),
                configmap(name, value, Some(*wave)),
            );
        }
    };
    b.repo.write("kill/ns.yaml", namespace("kill"));
    let deployment = |tag: u32| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: middle\n  annotations:\n    capstan.dev/sync-wave: \"1\"\nspec:\n  selector:\n    matchLabels: {{app: middle}}\n  template:\n    metadata:\n      labels: {{app: middle}}\n    spec:\n      containers:\n      - {{name: c, image: \"nginx:1.{tag}\"}}\n"
        )
    };
    b.repo.write("kill/deploy.yaml", deployment(0));
    write_desired(&desired);
    b.repo.write("other/ns.yaml", namespace("other"));
    for i in 0..5 {
        b.repo.write(
            format!("other/keep-{i}.yaml"),
            configmap(&format!("keep-{i}"), "other", None),
        );
    }
    let mut head = b.repo.commit("first");

    let mut api = Some(ApiProcess::start_with(
        &b.dir("data"),
        &b.kubeconfig,
        "127.0.0.1:0",
        None,
        "1s",
    ));
    let listen = api.as_ref().unwrap().listen.clone();
    let mut controller = Some(ControllerProcess::start(&b.kubeconfig, &b.dir("state")));
    b.application("kill", "kill", "kill");
    b.application("other", "other", "other");
    b.kubectl_retry(&["apply", "-f", "-"], Some(&namespace("kill")));
    b.kubectl_retry(
        &["apply", "-f", "-"],
        Some(
            &configmap("unmanaged", "mine", None)
                .replace("metadata:\n", "metadata:\n  namespace: kill\n"),
        ),
    );
    b.eventually("the first syncs", Duration::from_secs(60), || {
        b.synced_at("kill", &head) && b.synced_at("other", &head)
    });
    let other_before = b.configmaps("other").unwrap();
    let unmanaged_uid = b.configmaps("kill").unwrap()["unmanaged"].0.clone();

    let mut points: BTreeMap<KillPoint, u32> = BTreeMap::new();
    let (mut controller_kills, mut server_kills) = (0, 0);
    let mut next = 100;
    for round in 0..25 {
        let before = b.configmaps("kill").unwrap();
        // remove three, add three, change three, move one to another wave
        let names: Vec<String> = desired.keys().cloned().collect();
        let mut removed = Vec::new();
        for _ in 0..3 {
            let name = &names[rng.random_range(0..names.len())];
            if desired.remove(name).is_some() {
                removed.push(name.clone());
            }
        }
        let mut added = Vec::new();
        for _ in 0..3 {
            let name = format!("obj-{next}");
            next += 1;
            desired.insert(name.clone(), (format!("v{round}"), rng.random_range(0..3)));
            added.push(name);
        }
        let kept: Vec<String> = desired.keys().cloned().collect();
        for _ in 0..3 {
            let name = &kept[rng.random_range(0..kept.len())];
            desired.get_mut(name).unwrap().0 = format!("changed-{round}");
        }
        let name = &kept[rng.random_range(0..kept.len())];
        desired.get_mut(name).unwrap().1 = rng.random_range(0..3);
        write_desired(&desired);
        b.repo.write("kill/deploy.yaml", deployment(round + 1));
        head = b.repo.commit(&format!("round {round}"));
        let _ = Command::new(env!("CARGO_BIN_EXE_capstan"))
            .args(["refresh", "kill", "-n", "apps", "--kubeconfig"])
            .arg(&b.kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        std::thread::sleep(Duration::from_millis(rng.random_range(0..1300)));
        let kill_server = round % 5 == 4;
        if kill_server {
            // the API server goes instead, under the running controller
            api.take().unwrap().kill();
            server_kills += 1;
            std::thread::sleep(Duration::from_millis(rng.random_range(200..2000)));
            api = Some(ApiProcess::start(
                &b.dir("data"),
                &b.kubeconfig,
                &listen,
                None,
            ));
        } else {
            controller.take().unwrap().kill();
            controller_kills += 1;
            // judge where it landed while nothing moves
            let now = b.configmaps("kill").unwrap();
            let applied = desired
                .iter()
                .filter(|(n, (v, _))| now.get(*n).is_some_and(|(_, got)| got == v))
                .count();
            let pruned = removed.iter().all(|n| !now.contains_key(n));
            let point = if b.synced_at("kill", &head) {
                KillPoint::AfterTheSync
            } else if applied == 0 || added.iter().all(|n| !now.contains_key(n)) {
                KillPoint::BeforeApplying
            } else if applied < desired.len() {
                KillPoint::InTheWaves
            } else if !pruned {
                KillPoint::BeforeOrWhilePruning
            } else {
                KillPoint::RecordingTheResult
            };
            *points.entry(point).or_default() += 1;
            controller = Some(ControllerProcess::start(&b.kubeconfig, &b.dir("state")));
        }
        b.eventually(
            &format!("round {round} to converge"),
            Duration::from_secs(90),
            || {
                b.synced_at("kill", &head)
                    && b.configmaps("kill").is_some_and(|now| {
                        desired
                            .iter()
                            .all(|(n, (v, _))| now.get(n).is_some_and(|(_, got)| got == v))
                            && removed.iter().all(|n| !now.contains_key(n))
                    })
            },
        );
        assert!(
            controller.as_mut().unwrap().alive(),
            "the controller runs on"
        );
        let after = b.configmaps("kill").unwrap();
        // nothing wrongly pruned: what stayed desired was never deleted and recreated
        for (name, (uid, _)) in &before {
            if desired.contains_key(name) {
                assert_eq!(&after[name].0, uid, "round {round}: {name} was recreated");
            }
        }
        assert_eq!(after["unmanaged"].0, unmanaged_uid, "round {round}");
        let managed: BTreeSet<&String> = after.keys().filter(|n| *n != "unmanaged").collect();
        let wanted: BTreeSet<&String> = desired.keys().collect();
        assert_eq!(managed, wanted, "round {round}: exactly what Git says");
        assert_eq!(
            b.configmaps("other").unwrap(),
            other_before,
            "round {round}"
        );
    }
    let mid_sync: u32 = points
        .iter()
        .filter(|(p, _)| **p != KillPoint::AfterTheSync)
        .map(|(_, n)| n)
        .sum();
    assert!(
        mid_sync >= 6,
        "most kills should land inside a sync, not after it: {points:?}"
    );
    eprintln!(
        "FIGURE SIGKILL rounds: {controller_kills} controller kills landing {points:?}, {server_kills} API server kills; all converged, lost 0, wrongly pruned 0"
    );
}

#[test]
fn while_git_is_down_the_last_state_stays_nothing_is_pruned_and_it_recovers() {
    let mut b = Bench::new();
    b.repo.write("web/ns.yaml", namespace("web"));
    for name in ["one", "two", "three"] {
        b.repo
            .write(format!("web/{name}.yaml"), configmap(name, "first", None));
    }
    let first = b.repo.commit("first");
    let _api = ApiProcess::start(&b.dir("data"), &b.kubeconfig, "127.0.0.1:0", None);
    let _controller = ControllerProcess::start(&b.kubeconfig, &b.dir("state"));
    b.application("web", "web", "web");
    b.eventually("the first sync", Duration::from_secs(60), || {
        b.synced_at("web", &first)
    });
    let before = b.configmaps("web").unwrap();

    let addr = b.git.take().unwrap().addr();
    // while it is down, Git moves on: one file goes, one changes
    b.repo.remove("web/three.yaml");
    b.repo
        .write("web/one.yaml", configmap("one", "second", None));
    let second = b.repo.commit("second");
    b.eventually(
        "a condition saying the fetch failed",
        Duration::from_secs(60),
        || {
            b.app("web").is_some_and(|a| {
                a["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c["type"] == "Ready"
                            && c["status"] == "False"
                            && c["reason"] == "FetchFailed"
                            && c["message"]
                                .as_str()
                                .is_some_and(|m| m.contains(&addr.port().to_string()))
                    })
                })
            })
        },
    );
    // several intervals pass: the last good state stays, nothing is pruned
    std::thread::sleep(Duration::from_secs(5));
    let app = b.app("web").unwrap();
    assert_eq!(app["status"]["sync"]["revision"], first.as_str());
    assert_eq!(
        b.configmaps("web").unwrap(),
        before,
        "nothing changed or pruned"
    );

    b.git = Some(GitServer::start_at(b.root.path(), None, addr).expect("git comes back"));
    b.eventually(
        "recovery at the new revision",
        Duration::from_secs(60),
        || {
            b.synced_at("web", &second)
                && b.configmaps("web").is_some_and(|cms| {
                    !cms.contains_key("three") && cms.get("one").is_some_and(|(_, v)| v == "second")
                })
        },
    );
    let app = b.app("web").unwrap();
    let ready = app["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap();
    assert_eq!(ready["status"], "True", "{ready}");
}

/// Run `mount` (through `sudo -n` when not root).
fn mount(args: &[&str]) {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let mut cmd = if root {
        Command::new("mount")
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", "mount"]);
        c
    };
    let out = cmd.args(args).output().expect("mount runs");
    assert!(
        out.status.success(),
        "the disk-full test mounts a small tmpfs and needs root or password-less sudo: mount {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = Command::new("sudo")
            .args(["-n", "umount", "-l"])
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn a_full_disk_is_a_clear_error_and_nothing_is_corrupted_when_space_returns() {
    let b = Bench::new();
    let data = b.dir("small");
    std::fs::create_dir_all(&data).unwrap();
    mount(&[
        "-t",
        "tmpfs",
        "-o",
        "size=3m",
        "tmpfs",
        data.to_str().unwrap(),
    ]);
    let _tmpfs = Tmpfs(data.clone());
    let api = ApiProcess::start(&data, &b.kubeconfig, "127.0.0.1:0", None);
    b.kubectl_retry(&["apply", "-f", "-"], Some(&namespace("fill")));
    // 40 KiB per ConfigMap until the disk is full
    let payload = "x".repeat(40 * 1024);
    let mut acknowledged = Vec::new();
    let error = loop {
        let name = format!("fill-{:03}", acknowledged.len());
        let yaml = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: fill\ndata:\n  value: \"{payload}\"\n"
        );
        match b.kubectl(&["create", "-f", "-"], Some(&yaml)) {
            Ok(_) => acknowledged.push(name),
            Err(e) => break e,
        }
        assert!(acknowledged.len() < 200, "3 MiB never filled up");
    };
    assert!(
        error.contains("storage write failed") && error.contains("full"),
        "a clear error: {error}"
    );
    assert!(!acknowledged.is_empty());
    // reads go on, and what was acknowledged is all there
    let listed: BTreeSet<String> = b.configmaps("fill").unwrap().into_keys().collect();
    assert_eq!(
        listed,
        acknowledged.iter().cloned().collect::<BTreeSet<_>>()
    );
    let refused = format!("fill-{:03}", acknowledged.len());

    // space returns: writes work again, and nothing is lost across a hard restart
    mount(&["-o", "remount,size=64m", data.to_str().unwrap()]);
    let yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: after\n  namespace: fill\ndata:\n  value: \"{payload}\"\n"
    );
    b.kubectl(&["create", "-f", "-"], Some(&yaml))
        .expect("a write after space returned");
    api.kill();
    let _api = ApiProcess::start(&data, &b.kubeconfig, "127.0.0.1:0", None);
    let cms = b.configmaps("fill").expect("the store opens and lists");
    let mut want: BTreeSet<String> = acknowledged.iter().cloned().collect();
    want.insert("after".into());
    assert_eq!(cms.keys().cloned().collect::<BTreeSet<_>>(), want);
    assert!(
        !cms.contains_key(&refused),
        "the refused write never appears"
    );
    for (name, (_, value)) in &cms {
        assert_eq!(value.len(), payload.len(), "{name} is whole");
    }
    eprintln!(
        "FIGURE disk full: {} writes acknowledged before the 3 MiB tmpfs filled, the next refused with {:?}; after remount and kill -9: all {} present, 0 corrupt",
        acknowledged.len(),
        error.trim(),
        want.len()
    );
}
