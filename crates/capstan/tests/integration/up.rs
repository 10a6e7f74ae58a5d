//! `capstan up`, as the README's first command runs it: the embedded API server, the
//! CRDs, the example Application, and the controller in the foreground — then a
//! commit to the example reaches the cluster.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use capstan_testkit::TestRepo;

pub(super) struct Up {
    pub(super) child: Child,
    pub(super) lines: mpsc::Receiver<String>,
    pub(super) seen: Vec<String>,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Up {
    /// Wait for a line of progress containing every one of `parts`.
    pub(super) fn wait_for(&mut self, parts: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if parts.iter().all(|p| line.contains(p)) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {parts:?} within {timeout:?}; capstan up printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

pub(super) fn spawn_up(dir: &Path, args: &[&str]) -> Up {
    let mut child = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("capstan up starts");
    let (tx, rx) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    Up {
        child,
        lines: rx,
        seen: Vec::new(),
    }
}

pub(super) fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .env("HOME", home)
        .args(args);
    let out = capstan_testkit::process::run(cmd, None, Duration::from_secs(60));
    capstan_testkit::process::assert_success(&out, &format!("kubectl {}", args.join(" ")));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn up_syncs_the_example_and_a_commit_reaches_the_cluster() {
    // The examples directory in a repository of its own, as in a fresh clone.
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "capstan.git");
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    capstan_testkit::copy_tree(&examples, &repo.work_path().join("examples"));
    repo.commit("examples");

    let data = tempfile::tempdir().unwrap();
    let mut up = spawn_up(
        repo.work_path(),
        &["up", "--port", "0", "--dir", data.path().to_str().unwrap()],
    );

    let kubeconfig = data.path().join("kubeconfig");
    up.wait_for(
        &["export KUBECONFIG=", "kubeconfig"],
        Duration::from_secs(60),
    );
    up.wait_for(
        &["Application capstan-system/guestbook applied from applications/guestbook.yaml"],
        Duration::from_secs(60),
    );
    // the server's URL, printed; it answers
    let line = up.wait_for(&["Capstan server: http://"], Duration::from_secs(60));
    let ui = up.wait_for(&["web UI:   http://"], Duration::from_secs(10));
    let url = line
        .split("Capstan server: ")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    let first = repo.head();
    up.wait_for(
        &[
            "capstan-system/guestbook: Synced at",
            &first[..7],
            "Healthy",
        ],
        Duration::from_secs(60),
    );

    let (code, ready) = capstan_testkit::client::get(&format!("{url}/readyz")).unwrap();
    assert_eq!(code, 200, "{ready}");
    assert!(ready.contains("\"ready\":true"), "{ready}");

    // kubectl sees what was applied, through the kubeconfig `up` wrote.
    let home = data.path().join("home");
    std::fs::create_dir_all(&home).unwrap();

    // the web UI: its line names how to get a token; with it, the login gives a session
    assert!(
        ui.contains(&format!("{url}/")) && ui.contains("config view --raw --minify"),
        "{ui}"
    );
    let token = kubectl(
        &kubeconfig,
        &home,
        &[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.users[0].user.token}",
        ],
    );
    assert!(
        !ui.contains(token.trim()),
        "the token itself is not printed"
    );
    let _ = capstan_testkit::client::http();
    let browser = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = browser.get(format!("{url}/")).send().unwrap();
    assert_eq!(
        login.status().as_u16(),
        303,
        "not logged in: to the login page"
    );
    let session = browser
        .post(format!("{url}/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={}&next=/", token.trim()))
        .send()
        .unwrap();
    assert_eq!(session.status().as_u16(), 303);
    let cookie = session.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let list = browser
        .get(format!("{url}/"))
        .header("Cookie", cookie)
        .send()
        .unwrap();
    assert_eq!(list.status().as_u16(), 200);
    let list = list.text().unwrap();
    assert!(
        list.contains("guestbook") && list.contains("Synced"),
        "{list}"
    );
    let deployments = kubectl(
        &kubeconfig,
        &home,
        &["get", "deployments", "-n", "guestbook"],
    );
    assert!(deployments.contains("guestbook"), "{deployments}");
    let apps = kubectl(&kubeconfig, &home, &["get", "applications", "-A"]);
    assert!(
        apps.contains("guestbook") && apps.contains("Synced") && apps.contains("Healthy"),
        "{apps}"
    );

    // Edit, commit: applied within the example's 10 s interval.
    let cm = repo.work_path().join("examples/guestbook/configmap.yaml");
    let text = std::fs::read_to_string(&cm).unwrap();
    std::fs::write(&cm, text.replace("blue", "green")).unwrap();
    let second = repo.commit("guestbook: green");
    up.wait_for(
        &["capstan-system/guestbook: Synced at", &second[..7]],
        Duration::from_secs(30),
    );
    let color = kubectl(
        &kubeconfig,
        &home,
        &[
            "get",
            "configmap",
            "guestbook-config",
            "-n",
            "guestbook",
            "-o",
            "jsonpath={.data.color}",
        ],
    );
    assert_eq!(color, "green");
}

#[test]
fn up_with_a_kubeconfig_uses_that_cluster() {
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "capstan.git");
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    capstan_testkit::copy_tree(&examples, &repo.work_path().join("examples"));
    let head = repo.commit("examples");
    let cluster = capstan_testkit::TestCluster::start();
    let data = tempfile::tempdir().unwrap();
    let mut up = spawn_up(
        repo.work_path(),
        &[
            "up",
            "examples",
            "--dir",
            data.path().to_str().unwrap(),
            "--kubeconfig",
            cluster.kubeconfig_path().to_str().unwrap(),
        ],
    );
    up.wait_for(
        &["capstan-system/guestbook: Synced at", &head[..7], "Healthy"],
        Duration::from_secs(60),
    );
    assert!(
        !up.seen.iter().any(|l| l.contains("embedded")),
        "no embedded API server: {:?}",
        up.seen
    );
    assert!(!data.path().join("kubeconfig").exists());
    let svc = cluster.kubectl_ok(&["get", "service", "guestbook", "-n", "guestbook"]);
    assert!(svc.contains("guestbook"), "{svc}");
}
