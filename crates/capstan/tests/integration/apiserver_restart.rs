//! `capstan apiserver` as a process: every acknowledged write survives `kill -9`, and
//! resourceVersions after the restart are greater than every earlier one.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(super) fn start(data: &Path, kubeconfig: &Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args([
            "apiserver",
            "--listen",
            "127.0.0.1:0",
            "--simulate-delay",
            "100ms",
        ])
        .arg("--data-dir")
        .arg(data)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("capstan starts");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("first line");
    assert!(
        line.starts_with("API server listening on https://127.0.0.1:"),
        "{line}"
    );
    // keep draining stdout for the life of the server
    std::thread::spawn(move || for _ in reader.lines() {});
    child
}

fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str], stdin: Option<&str>) -> String {
    try_kubectl(kubeconfig, home, args, stdin).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
}

/// `kubectl` against `kubeconfig` with `home` for its cache: stdout, or stderr on failure.
pub(super) fn try_kubectl(
    kubeconfig: &Path,
    home: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(home.join("cache"))
        .args(args)
        .env("HOME", home)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl v1.32 must be on PATH");
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn a_killed_server_restarts_with_every_object_and_growing_versions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let kc = dir.path().join("kubeconfig");
    let mixed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../apiserver/tests/fixtures/mixed-set.yaml"),
    )
    .unwrap();

    let mut server = start(&data, &kc);
    kubectl(
        &kc,
        dir.path(),
        &["apply", "--server-side", "-f", "-"],
        Some(&mixed),
    );
    let before = kubectl(
        &kc,
        dir.path(),
        &["get", "cm,secret,deploy,svc", "-n", "demo", "-o", "name"],
        None,
    );
    let mut max_rv = 0u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    // let the simulated status land, so the last write before the kill is a status write
    loop {
        let ready = kubectl(
            &kc,
            dir.path(),
            &[
                "get",
                "deploy",
                "web",
                "-n",
                "demo",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
            None,
        );
        if ready == "2" {
            break;
        }
        // a deadline that passes is a failure, not a quiet end of the wait
        assert!(
            Instant::now() < deadline,
            "the simulated status never landed (readyReplicas {ready:?})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for rv in kubectl(
        &kc,
        dir.path(),
        &[
            "get",
            "cm,secret,deploy,svc,ns",
            "-A",
            "-o",
            "jsonpath={.items[*].metadata.resourceVersion}",
        ],
        None,
    )
    .split_whitespace()
    {
        max_rv = max_rv.max(rv.parse().unwrap());
    }
    server.kill().expect("SIGKILL");
    server.wait().unwrap();

    let mut server = start(&data, &kc);
    let after = kubectl(
        &kc,
        dir.path(),
        &["get", "cm,secret,deploy,svc", "-n", "demo", "-o", "name"],
        None,
    );
    assert_eq!(before, after, "every object is back");
    let ready = kubectl(
        &kc,
        dir.path(),
        &[
            "get",
            "deploy",
            "web",
            "-n",
            "demo",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
        None,
    );
    assert_eq!(ready, "2", "status written before the kill is kept");
    let created = kubectl(
        &kc,
        dir.path(),
        &[
            "create",
            "-f",
            "-",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: after-restart, namespace: demo}\n"),
    );
    let rv: u64 = created.parse().unwrap();
    assert!(rv > max_rv, "new resourceVersion {rv} must exceed {max_rv}");
    server.kill().unwrap();
    server.wait().unwrap();
}
