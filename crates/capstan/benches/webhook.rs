//! Benchmark of a push webhook's latency: from the moment a signed GitHub push is
//! sent to the Capstan server until the pushed commit is applied and its Application
//! reports `Synced` at that revision.
//!
//! The API server and the controller (with its server) are separate processes of this
//! binary, as deployed; the repository is served over HTTP by `git http-backend`
//! (testkit's GitServer), as a forge serves it. The repository holds `BENCH_APPS`
//! Applications (default 100), each a ConfigMap in its own path; every push changes one
//! of them, and the payload lists the changed file, so only that Application is
//! refreshed. The interval is an hour: nothing but the webhook brings the commit.
//!
//! Run: `cargo bench -p capstan --bench webhook` (env: BENCH_PUSHES, default 100;
//! BENCH_APPS, default 100).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capstan_testkit::{GitServer, TestRepo};
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher;

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn capstan() -> Command {
    Command::new(env!("CARGO_BIN_EXE_capstan"))
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn kubectl_apply(kubeconfig: &Path, home: &Path, yaml: &str) {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("HOME", home)
        .args(["apply", "--server-side", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "kubectl apply");
}

fn cm(i: usize, value: usize) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  value: \"{value}\"\n"
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn main() {
    let pushes = env_usize("BENCH_PUSHES", 100);
    let apps = env_usize("BENCH_APPS", 100);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let kubeconfig = work.path().join("kubeconfig");

    let repo = TestRepo::create(work.path(), "fleet.git");
    for i in 0..apps {
        repo.write(format!("apps/a-{i}/cm.yaml"), cm(i, 0));
    }
    repo.commit("fleet");
    let git = GitServer::start(work.path(), None).unwrap();
    let url = git.url("fleet.git");

    let mut api = capstan()
        .args([
            "apiserver",
            "--listen",
            "127.0.0.1:0",
            "--no-simulate",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(api.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    std::thread::spawn(move || for _ in reader.lines() {});
    let _api = Process(api);

    let port = free_port();
    let state = work.path().join("state");
    let _controller = Process(
        capstan()
            .args(["controller", "--interval", "1h", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--state-dir")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let server = format!("http://127.0.0.1:{port}");
    let http = capstan_testkit::client::http();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http
        .get(format!("{server}/readyz"))
        .send()
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        assert!(
            Instant::now() < deadline,
            "the controller's server is not ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut yaml = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: fleet\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: capstan-system\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: capstan-webhooks\n  namespace: capstan-system\nstringData:\n  github: bench-secret\n",
    );
    for i in 0..apps {
        yaml.push_str(&format!(
            "---\napiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: a-{i}\n  namespace: fleet\nspec:\n  interval: 1h\n  source:\n    repoURL: {url}\n    targetRevision: main\n    path: apps/a-{i}\n  destination:\n    namespace: bench\n  syncPolicy:\n    automated:\n      prune: true\n"
        ));
    }
    kubectl_apply(&kubeconfig, &home, &yaml);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
        kube::Client::try_from(config).unwrap()
    });
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("capstan.dev", "v1alpha1", "Application"),
        "applications",
    );
    let apps_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "fleet", &ar);
    let synced_at = |app: &DynamicObject, rev: &str| {
        app.data["status"]["sync"]["status"] == "Synced"
            && app.data["status"]["sync"]["revision"] == rev
    };
    eprintln!("waiting for the first sync of {apps} Applications");
    let first = repo.head();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = rt.block_on(apps_api.list(&Default::default())).unwrap();
        if list.items.iter().filter(|a| synced_at(a, &first)).count() == apps {
            break;
        }
        assert!(Instant::now() < deadline, "the fleet did not sync");
        std::thread::sleep(Duration::from_millis(500));
    }

    eprintln!("{pushes} pushes");
    let mut latencies = Vec::with_capacity(pushes);
    for p in 0..pushes {
        let i = p % apps;
        let file = format!("apps/a-{i}/cm.yaml");
        repo.write(&file, cm(i, p + 1));
        let sha = repo.commit(&format!("push {p}"));
        let body = serde_json::to_vec(&serde_json::json!({
            "ref": "refs/heads/main",
            "after": sha,
            "repository": {"html_url": url, "default_branch": "main"},
            "commits": [{"id": sha, "added": [], "modified": [file], "removed": []}],
        }))
        .unwrap();
        let name = format!("a-{i}");
        // watch the Application from before the push, so no change is missed
        let watch = watcher(
            apps_api.clone(),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        );
        let started = rt.block_on(async {
            let mut stream = watch.boxed();
            // the watch is established once its initial list is in
            while let Some(ev) = stream.next().await {
                if matches!(ev, Ok(watcher::Event::InitDone)) {
                    break;
                }
            }
            let t0 = Instant::now();
            let sig = capstan_server::webhooks::verify::sign(b"bench-secret", &body);
            let server = server.clone();
            let body = body.clone();
            let answer = tokio::task::spawn_blocking(move || {
                capstan_testkit::client::http()
                    .post(format!("{server}/webhooks/github"))
                    .header("X-GitHub-Event", "push")
                    .header("X-GitHub-Delivery", format!("bench-{p}"))
                    .header("X-Hub-Signature-256", sig)
                    .body(body)
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            })
            .await
            .unwrap();
            assert_eq!(answer, 200);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let ev = tokio::time::timeout_at(deadline, stream.next())
                    .await
                    .expect("the Application synced within a minute");
                if let Some(Ok(watcher::Event::Apply(app))) = ev
                    && synced_at(&app, &sha)
                {
                    return t0.elapsed();
                }
            }
        });
        latencies.push(started);
    }
    latencies.sort();
    let mean: Duration = latencies.iter().sum::<Duration>() / latencies.len() as u32;
    println!(
        "webhook → applied and Synced, {pushes} pushes, {apps} Applications in the repository: p50 {:.0} ms, p99 {:.0} ms, min {:.0} ms, max {:.0} ms, mean {:.0} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies[0].as_secs_f64() * 1000.0,
        latencies[latencies.len() - 1].as_secs_f64() * 1000.0,
        mean.as_secs_f64() * 1000.0,
    );
}
