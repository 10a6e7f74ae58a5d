//! Benchmark of the embedded API server: create 10,000 ConfigMaps, list them, watch
//! them. Reports write throughput, latency percentiles, list and watch times, and the
//! server's peak RSS (VmHWM of the `capstan apiserver` process).
//!
//! Run: `cargo bench -p capstan --bench apiserver` (env: BENCH_OBJECTS, BENCH_CONCURRENCY).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

fn start(dir: &Path, persist: bool) -> (Child, std::path::PathBuf) {
    let kc = dir.join("kubeconfig");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
    cmd.args([
        "apiserver",
        "--listen",
        "127.0.0.1:0",
        "--no-simulate",
        "--kubeconfig",
    ])
    .arg(&kc);
    if persist {
        cmd.arg("--data-dir").arg(dir.join("data"));
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("capstan");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    std::thread::spawn(move || for _ in reader.lines() {});
    (child, kc)
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(persist: bool, objects: usize, concurrency: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, kc) = start(dir.path(), persist);
    let yaml = std::fs::read_to_string(&kc).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&yaml).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // A live watch running during the creates.
    let live = {
        let api = api.clone();
        let rv = api
            .list(&ListParams::default().limit(1))
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap();
        tokio::spawn(async move {
            let mut s = api
                .watch(&WatchParams::default().timeout(290), &rv)
                .await
                .unwrap()
                .boxed();
            let mut n = 0;
            while n < objects {
                if let Some(Ok(WatchEvent::Added(_))) = s.next().await {
                    n += 1;
                }
            }
            Instant::now()
        })
    };

    let started = Instant::now();
    let mut latencies: Vec<Duration> = stream::iter(0..objects)
        .map(|i| {
            let api = api.clone();
            async move {
                let cm: ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": format!("cm-{i:05}"), "labels": {"bench": "apiserver", "shard": (i % 10).to_string()}},
                    "data": {"payload": "x".repeat(100)}
                }))
                .unwrap();
                let t = Instant::now();
                api.create(&PostParams::default(), &cm).await.expect("create");
                t.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let write_time = started.elapsed();
    let live_done = live.await.unwrap();
    let watch_lag = live_done.saturating_duration_since(started + write_time);
    latencies.sort();

    let t = Instant::now();
    let all = api.list(&ListParams::default()).await.unwrap();
    let list_time = t.elapsed();
    assert_eq!(all.items.len(), objects);

    let t = Instant::now();
    let mut paged = 0;
    let mut lp = ListParams::default().limit(500);
    loop {
        let page = api.list(&lp).await.unwrap();
        paged += page.items.len();
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    let paged_time = t.elapsed();
    assert_eq!(paged, objects);

    let t = Instant::now();
    let mut s = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let mut seen = 0;
    while seen < objects {
        if let Some(WatchEvent::Added(_)) = s.try_next().await.unwrap() {
            seen += 1;
        }
    }
    let watch_time = t.elapsed();
    let rss = peak_rss_kib(child.id());
    child.kill().unwrap();
    child.wait().unwrap();

    let mode = if persist {
        "SQLite (--data-dir)"
    } else {
        "in memory"
    };
    println!(
        "| {mode} | {objects} | {concurrency} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} |",
        objects as f64 / write_time.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        list_time.as_secs_f64() * 1e3,
        paged_time.as_secs_f64() * 1e3,
        watch_time.as_secs_f64() * 1e3,
        watch_lag.as_secs_f64() * 1e3,
        rss as f64 / 1024.0,
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we need.
    let objects: usize = std::env::var("BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| store | objects | in flight | creates/s | p50 ms | p99 ms | list all ms | list by 500 ms | watch from 0 ms | live watch lag ms | server peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    rt.block_on(run(false, objects, concurrency));
    rt.block_on(run(true, objects, concurrency));
}
