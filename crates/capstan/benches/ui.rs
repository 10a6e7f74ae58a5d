//! Benchmark of the web UI at fleet scale: the Application list at N Applications
//! (default 10,000, the fleet of the `api` bench) and the page of one Application of
//! M objects (default 2,000).
//!
//! Two views of the same pages:
//! - **HTTP**: a reqwest client with keep-alive, one request at a time, authenticated
//!   with a bearer token: time to the first byte (the response head), time to the
//!   whole body, and its size; and the live script's poll when nothing changed (`304`);
//! - **a real browser**: Debian's headless chromium (testkit's `Browser`), logged in
//!   through the login form, opening each page again and again; the Navigation Timing
//!   of each load gives the first byte, the DOM ready (the page is usable: the HTML is
//!   server-rendered and complete) and the load event.
//!
//! Run: `cargo bench -p capstan --bench ui` (env: BENCH_APPS, default 10000;
//! BENCH_OBJECTS, default 2000; BENCH_REQUESTS per page, default 50).

#[path = "common/fleet.rs"]
mod fleet;

use std::time::{Duration, Instant};

use capstan_testkit::{Browser, TestCluster};
use fleet::{TOKEN, apply, env_usize, percentile};
use futures::{StreamExt, stream};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::json;

fn main() {
    let apps = env_usize("BENCH_APPS", 10_000);
    let objects = env_usize("BENCH_OBJECTS", 2_000);
    let requests = env_usize("BENCH_REQUESTS", 50);
    let cluster = fleet::cluster();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&cluster, apps, objects, requests));
}

/// The Application `big/inventory`, whose status lists `objects` ConfigMaps that exist.
async fn big_application(client: &kube::Client, objects: usize) {
    let ns_ar = ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&());
    let namespaces: Api<DynamicObject> = Api::all_with(client.clone(), &ns_ar);
    apply(
        &namespaces,
        "big",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "big"}}),
    )
    .await;
    let cm_ar = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
    stream::iter(0..objects)
        .map(|i| {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "big", &cm_ar);
            async move {
                let name = format!("settings-{i:05}");
                apply(
                    &api,
                    &name,
                    json!({
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "namespace": "big"},
                        "data": {"index": i.to_string(), "colour": "blue"},
                    }),
                )
                .await;
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let app_ar = ApiResource::erase::<capstan_controller::Application>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "big", &app_ar);
    apply(&api, "inventory", json!({
        "apiVersion": "capstan.dev/v1alpha1", "kind": "Application",
        "metadata": {"name": "inventory", "namespace": "big"},
        "spec": {"source": {"repoURL": "https://git.example/inventory.git", "path": "settings"}},
    }))
    .await;
    let sha = format!("{:040x}", 42);
    let resources: Vec<serde_json::Value> = (0..objects)
        .map(|i| json!({"group": "", "version": "v1", "kind": "ConfigMap", "namespace": "big",
            "name": format!("settings-{i:05}"), "status": "Synced", "health": {"status": "Healthy"}}))
        .collect();
    let history: Vec<serde_json::Value> = (1..=10)
        .map(|id| json!({"id": id, "revision": format!("{:040x}", id), "author": "Dev <dev@example.com>",
            "message": format!("change {id}"), "deployedAt": "2026-12-01T10:00:00Z", "trigger": "automated", "result": "Succeeded"}))
        .collect();
    let status = json!({
        "apiVersion": "capstan.dev/v1alpha1", "kind": "Application",
        "status": {
            "sync": {"status": "Synced", "revision": sha, "shortRevision": &sha[..7]},
            "health": {"status": "Healthy"},
            "resources": resources,
            "history": history,
            "operationState": {"phase": "Succeeded", "message": "synced", "revision": sha, "trigger": "automated",
                "startedAt": "2026-12-01T10:00:00Z", "finishedAt": "2026-12-01T10:00:30Z"},
        },
    });
    api.patch_status(
        "inventory",
        &PatchParams::apply("bench").force(),
        &Patch::Apply(&status),
    )
    .await
    .unwrap();
}

struct Timing {
    first_byte: Vec<Duration>,
    whole: Vec<Duration>,
    bytes: usize,
}

async fn http_timing(http: &reqwest::Client, url: &str, requests: usize) -> Timing {
    let mut t = Timing {
        first_byte: Vec::new(),
        whole: Vec::new(),
        bytes: 0,
    };
    for i in 0..requests + 3 {
        let start = Instant::now();
        let resp = http.get(url).bearer_auth(TOKEN).send().await.unwrap();
        let head = start.elapsed();
        assert_eq!(resp.status(), 200, "{url}");
        let body = resp.bytes().await.unwrap();
        let whole = start.elapsed();
        if i >= 3 {
            t.first_byte.push(head);
            t.whole.push(whole);
        }
        t.bytes = body.len();
    }
    t.first_byte.sort();
    t.whole.sort();
    t
}

/// The live script's poll of `url` when nothing changed: p50 and p99 of the `304`.
async fn poll_timing(http: &reqwest::Client, url: &str, requests: usize) -> (f64, f64) {
    let first = http
        .get(url)
        .bearer_auth(TOKEN)
        .header("X-Capstan-Live", "1")
        .send()
        .await
        .unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let mut times = Vec::new();
    for _ in 0..requests {
        let start = Instant::now();
        let r = http
            .get(url)
            .bearer_auth(TOKEN)
            .header("X-Capstan-Live", "1")
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 304, "{url}: the poll of an unchanged page");
        times.push(start.elapsed());
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

/// Navigation Timing of `loads` loads of `url` in the browser: p50 of the first byte,
/// DOM ready and load, in ms.
async fn browser_timing(b: &Browser, url: &str, loads: usize) -> (f64, f64, f64) {
    let mut ttfb = Vec::new();
    let mut ready = Vec::new();
    let mut load = Vec::new();
    for i in 0..loads + 2 {
        b.goto(url).await;
        let v = b
            .eval(
                "const n = performance.getEntriesByType('navigation')[0]; \
                 return [n.responseStart - n.startTime, n.domContentLoadedEventEnd - n.startTime, n.loadEventEnd - n.startTime]",
            )
            .await;
        let ms = |k: usize| Duration::from_secs_f64(v[k].as_f64().unwrap_or(0.0) / 1000.0);
        if i >= 2 {
            ttfb.push(ms(0));
            ready.push(ms(1));
            load.push(ms(2));
        }
    }
    for v in [&mut ttfb, &mut ready, &mut load] {
        v.sort();
    }
    (
        percentile(&ttfb, 0.5),
        percentile(&ready, 0.5),
        percentile(&load, 0.5),
    )
}

async fn run(cluster: &TestCluster, apps: usize, objects: usize, requests: usize) {
    let (base, handle) = fleet::serve(cluster, apps, "viewer").await;
    let client = cluster.client().await;
    let t = Instant::now();
    big_application(&client, objects).await;
    while handle.applications.state().len() < apps + 1 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "created big/inventory with {objects} ConfigMaps in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let http = capstan_testkit::client::http_async();
    let pages = [
        ("list, first page of 100", "/".to_string()),
        ("list, page 50", "/?page=50".to_string()),
        (
            "list, sync=OutOfSync&health=Degraded",
            "/?sync=OutOfSync&health=Degraded".to_string(),
        ),
        ("list, text q=web-012", "/?q=web-012".to_string()),
        (
            "one Application of the fleet",
            "/applications/team-a/web-00004".to_string(),
        ),
        (
            "Application of 2,000 objects",
            "/applications/big/inventory".to_string(),
        ),
    ];
    println!("HTTP, one request at a time ({requests} per page):\n");
    println!("| page | first byte p50 ms | p99 ms | whole page p50 ms | p99 ms | HTML KiB |");
    println!("|---|---|---|---|---|---|");
    for (label, path) in &pages {
        let t = http_timing(&http, &format!("{base}{path}"), requests).await;
        println!(
            "| {label} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            percentile(&t.first_byte, 0.5),
            percentile(&t.first_byte, 0.99),
            percentile(&t.whole, 0.5),
            percentile(&t.whole, 0.99),
            t.bytes as f64 / 1024.0
        );
    }
    for asset in ["/ui/app.css", "/ui/app.js"] {
        let body = http
            .get(format!("{base}{asset}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        println!(
            "\n{asset}: {:.1} KiB (cached by the browser for 5 minutes)",
            body.len() as f64 / 1024.0
        );
    }
    println!("\nThe live poll when nothing changed (304):\n");
    println!("| page | p50 ms | p99 ms |");
    println!("|---|---|---|");
    for (label, path) in [&pages[0], &pages[5]] {
        let (p50, p99) = poll_timing(&http, &format!("{base}{path}"), requests).await;
        println!("| {label} | {p50:.1} | {p99:.1} |");
    }

    let b = Browser::start().await;
    b.goto(&format!("{base}/login")).await;
    b.fill("#token", TOKEN).await;
    b.click("section.login button[type=submit]").await;
    b.wait_for_text("Applications", Duration::from_secs(60))
        .await;
    let loads = requests.min(20);
    println!("\nHeadless chromium, {loads} loads per page (Navigation Timing, p50):\n");
    println!("| page | first byte ms | DOM ready (usable) ms | load ms |");
    println!("|---|---|---|---|");
    for (label, path) in [&pages[0], &pages[3], &pages[5]] {
        let (ttfb, ready, load) = browser_timing(&b, &format!("{base}{path}"), loads).await;
        println!("| {label} | {ttfb:.1} | {ready:.1} | {load:.1} |");
    }
}
