//! Benchmark of the push-based CLI against kubectl: `capstan apply` vs
//! `kubectl apply --server-side`, and `capstan diff` vs `kubectl diff --server-side`,
//! on the same 2,000-object directory and the same kind of embedded API server
//! (a fresh one per tool, so both start from an empty cluster).
//!
//! Run: `cargo bench -p capstan --bench push` (env: BENCH_OBJECTS, default 2000;
//! BENCH_RUNS, default 5: rounds per tool, alternating, medians reported).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let mut child = Command::new(env!("CARGO_BIN_EXE_capstan"))
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
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        std::thread::spawn(move || for _ in reader.lines() {});
        Server {
            child,
            kubeconfig,
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 2,000 objects: 60% ConfigMaps, 20% Secrets, 10% Services, 10% Deployments, in 20 files.
fn write_objects(dir: &Path, n: usize, generation: usize) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("00-namespace.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench\n",
    )
    .unwrap();
    let per_file = n.div_ceil(20);
    for f in 0..20 {
        let mut text = String::new();
        for i in f * per_file..((f + 1) * per_file).min(n) {
            // `generation` changes one object in ten
            let value = if i % 10 == 3 {
                format!("v{generation}")
            } else {
                "v0".into()
            };
            let doc = match i % 10 {
                0..=5 => format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n  namespace: bench\n  labels: {{app: bench, shard: \"{}\"}}\ndata:\n  value: \"{value}\"\n  payload: \"{}\"\n",
                    i % 7,
                    "x".repeat(200)
                ),
                6 | 7 => format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: secret-{i}\n  namespace: bench\nstringData:\n  token: \"{value}-{i}\"\n"
                ),
                8 => format!(
                    "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  namespace: bench\nspec:\n  selector: {{app: app-{i}}}\n  ports:\n  - port: 80\n    targetPort: 8080\n"
                ),
                _ => format!(
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  namespace: bench\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: app-{i}}}\n  template:\n    metadata:\n      labels: {{app: app-{i}}}\n    spec:\n      containers:\n      - name: app\n        image: \"example.com/app:{value}\"\n        ports:\n        - containerPort: 8080\n"
                ),
            };
            text.push_str("---\n");
            text.push_str(&doc);
        }
        std::fs::write(dir.join(format!("objects-{f:02}.yaml")), text).unwrap();
    }
}

fn timed(mut cmd: Command, ok_codes: &[i32]) -> Duration {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let took = start.elapsed();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        ok_codes.contains(&code),
        "{cmd:?} exited {code}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn kubectl(server: &Server, args: &[&str]) -> Command {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(&server.kubeconfig).args(args);
    cmd
}

fn capstan(server: &Server, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
    cmd.args(args).arg("--kubeconfig").arg(&server.kubeconfig);
    cmd
}

/// One round of the four operations with one tool against a fresh server:
/// first apply, second apply, diff with nothing changed, diff with 10% changed.
fn round(dir: &Path, n: usize, home: &Path, tool: &str) -> [Duration; 4] {
    let d = dir.to_str().unwrap();
    write_objects(dir, n, 0);
    let server = Server::start();
    let with_home = |mut c: Command| {
        // kubectl keeps its discovery cache under HOME: a private one for the bench.
        c.env("HOME", home);
        c
    };
    let apply: Vec<&str> = match tool {
        "kubectl" => vec!["apply", "--server-side", "-f", d],
        _ => vec![
            "apply",
            d,
            "--app",
            "bench",
            "--namespace",
            "bench",
            "--prune",
        ],
    };
    let diff: Vec<&str> = match tool {
        "kubectl" => vec!["diff", "--server-side", "-f", d],
        _ => vec!["diff", d, "--app", "bench", "--namespace", "bench"],
    };
    let cmd = |args: &[&str]| match tool {
        "kubectl" => with_home(kubectl(&server, args)),
        _ => capstan(&server, args),
    };
    let first = timed(cmd(&apply), &[0]);
    let second = timed(cmd(&apply), &[0]);
    let same = timed(cmd(&diff), &[0]);
    write_objects(dir, n, 1);
    let changed = timed(cmd(&diff), &[1]);
    [first, second, same, changed]
}

fn main() {
    let n: usize = std::env::var("BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("deploy");
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).unwrap();

    // Rounds alternate between the tools, so a change in the machine's load while the
    // bench runs reaches both; each figure is the median of its rounds.
    let mut kubectl_runs = Vec::new();
    let mut capstan_runs = Vec::new();
    for r in 0..runs {
        eprintln!("round {}/{runs}", r + 1);
        kubectl_runs.push(round(&dir, n, &home, "kubectl"));
        capstan_runs.push(round(&dir, n, &home, "capstan"));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = |runs: &[[Duration; 4]], i: usize| {
        let mut v: Vec<f64> = runs.iter().map(|r| ms(r[i])).collect();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    println!(
        "| operation ({n} objects, median of {runs}) | kubectl ms (min–max) | capstan ms (min–max) | kubectl ÷ capstan |"
    );
    println!("|---|---|---|---|");
    for (i, name) in [
        "first apply (creates everything)",
        "second apply (nothing changed)",
        "diff, nothing changed",
        "diff, 10% changed",
    ]
    .iter()
    .enumerate()
    {
        let (k, kmin, kmax) = median(&kubectl_runs, i);
        let (c, cmin, cmax) = median(&capstan_runs, i);
        println!(
            "| {name} | {k:.0} ({kmin:.0}–{kmax:.0}) | {c:.0} ({cmin:.0}–{cmax:.0}) | {:.1}× |",
            k / c
        );
    }
}
