//! Benchmark of the push-based CLI against kubectl: `capstan apply` vs
//! `kubectl apply --server-side`, and `capstan diff` vs `kubectl diff --server-side`,
//! on the same 2,000-object directory and the same kind of embedded API server
//! (a fresh one per tool, so both start from an empty cluster).
//!
//! Run: `cargo bench -p capstan --bench push` (env: BENCH_OBJECTS, default 2000).

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

fn main() {
    let n: usize = std::env::var("BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("deploy");
    let d = dir.to_str().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    // kubectl keeps its discovery cache under HOME: a private one for the bench.
    let with_home = |mut c: Command| {
        c.env("HOME", &home);
        c
    };

    write_objects(&dir, n, 0);
    let k = Server::start();
    let kubectl_apply = timed(
        with_home(kubectl(&k, &["apply", "--server-side", "-f", d])),
        &[0],
    );
    let kubectl_reapply = timed(
        with_home(kubectl(&k, &["apply", "--server-side", "-f", d])),
        &[0],
    );
    let kubectl_diff_same = timed(
        with_home(kubectl(&k, &["diff", "--server-side", "-f", d])),
        &[0],
    );
    write_objects(&dir, n, 1);
    let kubectl_diff_changed = timed(
        with_home(kubectl(&k, &["diff", "--server-side", "-f", d])),
        &[1],
    );
    drop(k);

    write_objects(&dir, n, 0);
    let c = Server::start();
    let capstan_apply = timed(
        capstan(
            &c,
            &[
                "apply",
                d,
                "--app",
                "bench",
                "--namespace",
                "bench",
                "--prune",
            ],
        ),
        &[0],
    );
    let capstan_reapply = timed(
        capstan(
            &c,
            &[
                "apply",
                d,
                "--app",
                "bench",
                "--namespace",
                "bench",
                "--prune",
            ],
        ),
        &[0],
    );
    let capstan_diff_same = timed(
        capstan(&c, &["diff", d, "--app", "bench", "--namespace", "bench"]),
        &[0],
    );
    write_objects(&dir, n, 1);
    let capstan_diff_changed = timed(
        capstan(&c, &["diff", d, "--app", "bench", "--namespace", "bench"]),
        &[1],
    );
    drop(c);

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("| operation ({n} objects) | kubectl ms | capstan ms | kubectl ÷ capstan |");
    println!("|---|---|---|---|");
    for (name, a, b) in [
        (
            "first apply (creates everything)",
            kubectl_apply,
            capstan_apply,
        ),
        (
            "second apply (nothing changed)",
            kubectl_reapply,
            capstan_reapply,
        ),
        (
            "diff, nothing changed",
            kubectl_diff_same,
            capstan_diff_same,
        ),
        (
            "diff, 10% changed",
            kubectl_diff_changed,
            capstan_diff_changed,
        ),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.1}× |",
            ms(a),
            ms(b),
            ms(a) / ms(b)
        );
    }
}
