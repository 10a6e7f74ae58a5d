//! Benchmark of the pull-based operator at fleet scale: N Applications, each a single
//! 2 KB ConfigMap in its own path of one Git repository (the workload of the published
//! Argo CD scalability tests). The API server and the controller are separate
//! processes (release builds of this binary), so each one's CPU and memory are its own.
//!
//! Measured per N:
//! - cold sync: from the controller's start until every Application is Synced and
//!   Healthy (its ConfigMap applied, inventory and status written);
//! - steady state: CPU seconds of the controller (and of the API server) per full pass
//!   over the fleet when nothing changed, from the reconciles counted in a window of
//!   two intervals;
//! - controller peak RSS (VmHWM), and per Application.
//!
//! Run: `cargo bench -p capstan --bench controller` (env: BENCH_APPS, default
//! "1000,10000"; BENCH_INTERVAL, default 60s; BENCH_CONCURRENCY, default 8).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Process {
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // fields after the command name (which is in parentheses)
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on Linux
    ticks / 100.0
}

/// A memory figure from /proc/PID/status, in KiB (VmRSS, VmHWM).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn capstan() -> Command {
    Command::new(env!("CARGO_BIN_EXE_capstan"))
}

fn run_ok(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn start_apiserver(kubeconfig: &Path) -> Process {
    let mut child = capstan()
        .args([
            "apiserver",
            "--listen",
            "127.0.0.1:0",
            "--no-simulate",
            "--kubeconfig",
        ])
        .arg(kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    std::thread::spawn(move || for _ in reader.lines() {});
    Process { child }
}

fn git(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com");
    run_ok(cmd, &format!("git {}", args.join(" ")));
}

/// A repository with `apps/a-I/configmap.yaml` for every I, each a 2 KB ConfigMap.
fn write_repo(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    for i in 0..n {
        let app = dir.join(format!("apps/a-{i}"));
        std::fs::create_dir_all(&app).unwrap();
        let payload: String = (0..2000)
            .map(|j| (b'a' + ((i + j) % 26) as u8) as char)
            .collect();
        std::fs::write(
            app.join("configmap.yaml"),
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  payload: {payload}\n"
            ),
        )
        .unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "fleet"]);
}

/// N Applications in namespace `fleet`, all delivering into namespace `bench`.
fn write_applications(file: &Path, repo: &Path, n: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(file).unwrap());
    writeln!(
        f,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: fleet"
    )
    .unwrap();
    writeln!(
        f,
        "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench"
    )
    .unwrap();
    for i in 0..n {
        writeln!(
            f,
            "---\napiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: a-{i}\n  namespace: fleet\nspec:\n  source:\n    repoURL: file://{}\n    targetRevision: main\n    path: apps/a-{i}\n  destination:\n    namespace: bench\n  syncPolicy:\n    automated:\n      prune: true\n      selfHeal: true",
            repo.display()
        )
        .unwrap();
    }
}

/// How many Applications are Synced and Healthy, and how many exist.
fn synced(kubeconfig: &Path, home: &Path) -> (usize, usize) {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .env("HOME", home)
        .args([
            "get",
            "applications",
            "-n",
            "fleet",
            "-o",
            "jsonpath={range .items[*]}{.status.sync.status}/{.status.health.status}{\"\\n\"}{end}",
        ]);
    let out = run_ok(cmd, "kubectl get applications");
    let lines: Vec<&str> = out.lines().collect();
    (
        lines.iter().filter(|l| **l == "Synced/Healthy").count(),
        lines.len(),
    )
}

struct Figures {
    n: usize,
    cold: Duration,
    passes: f64,
    controller_cpu_per_pass: f64,
    apiserver_cpu_per_pass: f64,
    cold_controller_cpu: f64,
    peak_rss_kib: u64,
    rss_kib: u64,
}

fn bench(n: usize, interval: Duration, concurrency: usize) -> Figures {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let kubeconfig = work.path().join("kubeconfig");
    let repo = work.path().join("repo");
    eprintln!("[{n}] writing the repository");
    write_repo(&repo, n);
    let apps = work.path().join("applications");
    std::fs::create_dir_all(&apps).unwrap();
    write_applications(&apps.join("applications.yaml"), &repo, n);

    let apiserver = start_apiserver(&kubeconfig);
    let mut install = capstan();
    install.arg("install").arg("--kubeconfig").arg(&kubeconfig);
    run_ok(install, "capstan install");
    eprintln!("[{n}] creating {n} Applications");
    let mut create = capstan();
    create
        .args(["apply", "--app", "fleet"])
        .arg(&apps)
        .arg("--kubeconfig")
        .arg(&kubeconfig);
    run_ok(create, "capstan apply (the Applications)");

    eprintln!("[{n}] starting the controller");
    let state = work.path().join("state");
    let reconciles = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut child = capstan()
        .arg("controller")
        .env("CAPSTAN_LISTEN", "127.0.0.1:0")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--state-dir")
        .arg(&state)
        .arg("--interval")
        .arg(format!("{}s", interval.as_secs()))
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .env(
            "CAPSTAN_LOG",
            "warn,capstan_controller=debug,capstan_controller::tracker=info,capstan_controller::reconcile=info,capstan_controller::leader=info",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let controller = Process { child };
    let counter = reconciles.clone();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains(" reconciled") {
                counter.fetch_add(1, Ordering::Relaxed);
            } else if line.contains("WARN") || line.contains("ERROR") {
                eprintln!("controller: {line}");
            }
        }
    });

    // Cold sync: wait until every Application has been reconciled once, then until
    // every one is Synced and Healthy.
    loop {
        std::thread::sleep(Duration::from_millis(250));
        if reconciles.load(Ordering::Relaxed) >= n {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "cold sync of {n} did not finish in 30 minutes"
        );
    }
    let cold = loop {
        let took = start.elapsed();
        let (ok, total) = synced(&kubeconfig, &home);
        assert_eq!(total, n);
        if ok == n {
            break took;
        }
        eprintln!("[{n}] {ok}/{n} synced and healthy");
        std::thread::sleep(Duration::from_millis(500));
    };
    let cold_controller_cpu = cpu_seconds(controller.pid());
    eprintln!(
        "[{n}] cold sync {:.1}s; measuring two intervals of steady state",
        cold.as_secs_f64()
    );

    // Steady state: let the first periodic passes begin, then measure two intervals.
    std::thread::sleep(Duration::from_secs(5));
    let c0 = cpu_seconds(controller.pid());
    let a0 = cpu_seconds(apiserver.pid());
    let r0 = reconciles.load(Ordering::Relaxed);
    std::thread::sleep(interval * 2);
    let c1 = cpu_seconds(controller.pid());
    let a1 = cpu_seconds(apiserver.pid());
    let r1 = reconciles.load(Ordering::Relaxed);
    let passes = (r1 - r0) as f64 / n as f64;
    let (ok, _) = synced(&kubeconfig, &home);
    assert_eq!(ok, n, "every Application still Synced and Healthy");
    let figures = Figures {
        n,
        cold,
        passes,
        controller_cpu_per_pass: (c1 - c0) / passes,
        apiserver_cpu_per_pass: (a1 - a0) / passes,
        cold_controller_cpu,
        peak_rss_kib: memory_kib(controller.pid(), "VmHWM:"),
        rss_kib: memory_kib(controller.pid(), "VmRSS:"),
    };
    drop(controller);
    drop(apiserver);
    figures
}

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_APPS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("BENCH_APPS: numbers"))
        .collect();
    let interval = Duration::from_secs(
        std::env::var("BENCH_INTERVAL")
            .ok()
            .and_then(|v| v.trim_end_matches('s').parse().ok())
            .unwrap_or(60),
    );
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let results: Vec<Figures> = sizes
        .iter()
        .map(|&n| bench(n, interval, concurrency))
        .collect();
    println!(
        "| Applications | cold sync | apps/s | controller CPU, cold sync | controller CPU per steady pass | API server CPU per steady pass | passes measured | controller peak RSS | peak RSS per app |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for f in &results {
        println!(
            "| {} | {:.1} s | {:.0} | {:.1} s | {:.2} s | {:.2} s | {:.2} | {:.1} MiB (now {:.1}) | {:.1} KiB |",
            f.n,
            f.cold.as_secs_f64(),
            f.n as f64 / f.cold.as_secs_f64(),
            f.cold_controller_cpu,
            f.controller_cpu_per_pass,
            f.apiserver_cpu_per_pass,
            f.passes,
            f.peak_rss_kib as f64 / 1024.0,
            f.rss_kib as f64 / 1024.0,
            f.peak_rss_kib as f64 / f.n as f64,
        );
    }
}
