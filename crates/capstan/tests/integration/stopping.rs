//! `capstan up` stops, always and in order: SIGTERM, then a new `capstan up` on the same
//! directory at once, 20 times, with both cores busy. Every old process exits within
//! 10 s and says it stopped; a new one is refused (clearly) while the old holds the
//! directory and starts once it has gone; nothing of the cluster's state is lost.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use capstan_testkit::TestRepo;

use super::up::{Up, kubectl, spawn_up};

/// Both cores busy until dropped.
struct Load(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl Load {
    fn start() -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x: u64 = 1;
                    while !stop.load(Ordering::Relaxed) {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        std::hint::black_box(x);
                    }
                })
            })
            .collect();
        Load(stop, threads)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

fn sigterm(up: &Up) {
    let status = Command::new("kill")
        .args(["-TERM", &up.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Wait (up to `within`) for `up` to exit; its status.
fn exited(up: &mut Up, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = up.child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything `up` printed until now (after it exited: everything).
fn drain(up: &mut Up) -> Vec<String> {
    let mut lines = std::mem::take(&mut up.seen);
    while let Ok(l) = up.lines.recv_timeout(Duration::from_millis(200)) {
        lines.push(l);
    }
    lines
}

#[test]
fn sigterm_then_a_new_up_at_once_twenty_times_under_load_ends_every_old_process_in_order() {
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "capstan.git");
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    capstan_testkit::copy_tree(&examples, &repo.work_path().join("examples"));
    repo.commit("examples");
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_string();
    let args = [
        "up",
        "--port",
        "0",
        "--listen",
        "127.0.0.1:0",
        "--dir",
        dir.as_str(),
    ];
    let mut up = spawn_up(repo.work_path(), &args);
    up.wait_for(
        &["capstan-system/guestbook: Synced at", "Healthy"],
        Duration::from_secs(90),
    );

    let _load = Load::start();
    let mut refused = 0;
    let mut slowest = Duration::ZERO;
    for round in 0..20 {
        sigterm(&up);
        let signalled = Instant::now();
        // at once: a new one on the same directory, refused while the old one holds it
        let mut next = loop {
            let mut n = spawn_up(repo.work_path(), &args);
            match exited(&mut n, Duration::from_millis(300)) {
                Some(status) => {
                    let out = drain(&mut n).join("\n");
                    assert!(
                        out.contains("is in use by another capstan up")
                            && out.contains(&format!("pid {}", up.child.id())),
                        "round {round}: a second capstan up fails only because the directory is taken ({status}):\n{out}"
                    );
                    refused += 1;
                }
                None => break n,
            }
            assert!(
                signalled.elapsed() < Duration::from_secs(15),
                "round {round}: the old process still holds the directory"
            );
        };
        let status = exited(
            &mut up,
            Duration::from_secs(10).saturating_sub(signalled.elapsed()),
        )
        .unwrap_or_else(|| {
            panic!(
                "round {round}: the old capstan up did not exit within 10 s of SIGTERM:\n{}",
                drain(&mut up).join("\n")
            )
        });
        slowest = slowest.max(signalled.elapsed());
        let out = drain(&mut up);
        assert!(
            status.success(),
            "round {round}: {status}:\n{}",
            out.join("\n")
        );
        let tail: Vec<&String> = out.iter().rev().take(3).collect();
        assert!(
            out.last().is_some_and(|l| l == "stopped"),
            "round {round}: a clean stop ends with `stopped`: {tail:?}\n{}",
            out.join("\n")
        );
        assert!(
            !out.iter()
                .any(|l| l.contains("WARN") || l.contains("panicked")),
            "round {round}: a clean stop is quiet:\n{}",
            out.join("\n")
        );
        next.wait_for(&["controller running"], Duration::from_secs(60));
        up = next;
    }
    eprintln!(
        "20 rounds: the slowest stop took {slowest:?}; {refused} starts refused while the old process held the directory"
    );

    // nothing lost: the last one still has the Application, synced, and its objects
    up.wait_for(
        &["capstan-system/guestbook: Synced at", "Healthy"],
        Duration::from_secs(60),
    );
    let home = data.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let kubeconfig = data.path().join("kubeconfig");
    let cm = kubectl(
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
    assert_eq!(cm, "blue");
    sigterm(&up);
    assert!(exited(&mut up, Duration::from_secs(10)).is_some_and(|s| s.success()));
}

/// CPU seconds (user + system) `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // the fields after the command name, which is in parentheses
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn with_its_api_server_gone_up_does_not_spin_and_still_stops_within_ten_seconds() {
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "capstan.git");
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    capstan_testkit::copy_tree(&examples, &repo.work_path().join("examples"));
    repo.commit("examples");
    let data = tempfile::tempdir().unwrap();
    let kubeconfig = data.path().join("kubeconfig");
    let mut apiserver = super::apiserver_restart::start(&data.path().join("api"), &kubeconfig);
    let dir = data.path().join("up");
    let mut up = spawn_up(
        repo.work_path(),
        &[
            "up",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--dir",
            dir.to_str().unwrap(),
        ],
    );
    up.wait_for(
        &["capstan-system/guestbook: Synced at", "Healthy"],
        Duration::from_secs(90),
    );
    // the API server dies; the controller's watches fail and retry, backed off
    let _ = apiserver.kill();
    let _ = apiserver.wait();
    std::thread::sleep(Duration::from_secs(1));
    let before = cpu_seconds(up.child.id());
    std::thread::sleep(Duration::from_secs(5));
    let used = cpu_seconds(up.child.id()) - before;
    assert!(
        used < 1.0,
        "capstan up used {used:.2} s of CPU in 5 s with its API server gone: a busy loop"
    );
    sigterm(&up);
    let status = exited(&mut up, Duration::from_secs(10)).unwrap_or_else(|| {
        panic!(
            "no exit within 10 s of SIGTERM:\n{}",
            drain(&mut up).join("\n")
        )
    });
    let out = drain(&mut up);
    assert!(status.success(), "{status}:\n{}", out.join("\n"));
    assert_eq!(
        out.last().map(String::as_str),
        Some("stopped"),
        "{}",
        out.join("\n")
    );
    eprintln!("with the API server gone: {used:.2} s of CPU in 5 s");
}
