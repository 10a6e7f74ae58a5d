//! Benchmark of the HTTP API's Application list at fleet scale: N Applications (default
//! 10,000) with varied sync and health states and labels, served from the controller's
//! cache by `capstan-server` on loopback.
//!
//! Everything runs in this process: the embedded API server (testkit's TestCluster),
//! the controller (`capstan_controller::start`, a standby: another replica holds the
//! Lease, so it fills its cache but reconciles nothing and the statuses stay as
//! written), the HTTP server, and a reqwest client with keep-alive sending one request
//! at a time. The time measured is the whole round trip over loopback — request
//! parsing, authentication (a static token, cached), filtering, sorting, paging and
//! JSON encoding — an upper bound of the server time.
//!
//! Run: `cargo bench -p capstan --bench api` (env: BENCH_APPS, default 10000;
//! BENCH_REQUESTS per query, default 200).

#[path = "common/fleet.rs"]
mod fleet;

use std::time::Instant;

use capstan_testkit::TestCluster;
use fleet::{TOKEN, env_usize, percentile};

fn main() {
    let apps = env_usize("BENCH_APPS", 10_000);
    let requests = env_usize("BENCH_REQUESTS", 200);
    let cluster = fleet::cluster();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&cluster, apps, requests));
}

async fn run(cluster: &TestCluster, apps: usize, requests: usize) {
    let (base, _handle) = fleet::serve(cluster, apps, "viewer").await;
    let base = format!("{base}/api/v1/applications");
    let http = capstan_testkit::client::http_async();
    let queries = [
        ("unfiltered, first page of 100", ""),
        ("unfiltered, page 50 of 100", "page=50"),
        ("unfiltered, 1000 rows", "limit=1000"),
        (
            "sync=OutOfSync&health=Degraded",
            "sync=OutOfSync&health=Degraded",
        ),
        ("label team=t3,tier=prod", "label=team=t3,tier=prod"),
        ("text q=web-012", "q=web-012"),
        (
            "repo + namespace, sort -lastSync",
            "repo=fleet-7.git&namespace=team-d&sort=-lastSync",
        ),
    ];
    println!("| query | matches | rows | p50 ms | p99 ms | body KiB |");
    println!("|---|---|---|---|---|---|");
    for (label, q) in queries {
        let url = format!("{base}?{q}");
        let mut times = Vec::with_capacity(requests);
        let mut last = serde_json::Value::Null;
        let mut bytes = 0;
        for i in 0..requests + 10 {
            let t = Instant::now();
            let resp = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{url}");
            let body = resp.bytes().await.unwrap();
            let took = t.elapsed();
            // the first few warm the connection and caches
            if i >= 10 {
                times.push(took);
            }
            bytes = body.len();
            if i == 0 {
                last = serde_json::from_slice(&body).unwrap();
            }
        }
        times.sort();
        println!(
            "| {label} | {} | {} | {:.2} | {:.2} | {:.0} |",
            last["total"],
            last["items"].as_array().map_or(0, Vec::len),
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            bytes as f64 / 1024.0
        );
    }
}
