//! Benchmark of `/metrics` at fleet scale: what one Prometheus scrape costs the
//! controller process with N Applications in its cache.
//!
//! The cache is filled directly (a kube-runtime reflector Store, written as the
//! controller's watch writes it) with N Applications in 100 namespaces — a mix of
//! sync and health states, 50 repositories, a tenth suspended — and every
//! Application has a `capstan_app_sync_total{phase="Succeeded"}` series (a tenth a
//! `Failed` one too), as in a fleet that has synced once. The API server is left out:
//! filling it measures the API server, while a scrape reads only the cache.
//!
//! Measured per N, over BENCH_SCRAPES scrapes each:
//! - encode: `Metrics::encode()` alone (the server time of the route: it does nothing
//!   else), p50 / p99 / max;
//! - HTTP: `GET /metrics` on the real server (`capstan_server`, axum) over loopback,
//!   from request to the last byte read, p50 / p99;
//! - the response size, and the number of series.
//!
//! Run: `cargo bench -p capstan --bench metrics` (env: BENCH_APPS, default
//! "1000,10000"; BENCH_SCRAPES, default 200).

use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_controller::crd::{HealthStatus, SyncStatus};
use capstan_controller::metrics::Metrics;
use capstan_controller::{Application, ApplicationSpec, ApplicationStatus, LeaderFlag, StopFlag};
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;

const SYNC: [&str; 3] = ["Synced", "Synced", "OutOfSync"];
const HEALTH: [&str; 5] = ["Healthy", "Healthy", "Healthy", "Progressing", "Degraded"];

fn application(i: usize) -> Application {
    let mut app = Application::new(&format!("app-{i:05}"), ApplicationSpec::default());
    app.metadata.namespace = Some(format!("team-{:02}", i % 100));
    app.spec.source.repo_url = format!("https://git.example.com/org/env-{:02}.git", i % 50);
    app.spec.source.path = Some(format!("apps/app-{i:05}"));
    app.spec.destination.namespace = Some(format!("app-{i:05}"));
    app.spec.suspend = i % 10 == 9;
    app.status = Some(ApplicationStatus {
        sync: Some(SyncStatus {
            status: SYNC[i % SYNC.len()].into(),
            revision: format!("{i:040x}"),
            short_revision: format!("{:07x}", i),
        }),
        health: Some(HealthStatus {
            status: HEALTH[i % HEALTH.len()].into(),
            message: String::new(),
        }),
        ..Default::default()
    });
    app
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

struct Row {
    apps: usize,
    series: usize,
    bytes: usize,
    encode: Vec<Duration>,
    http: Vec<Duration>,
}

fn measure(apps: usize, scrapes: usize, rt: &tokio::runtime::Runtime) -> Row {
    let metrics = Arc::new(Metrics::default());
    let mut writer: Writer<Application> = Writer::default();
    let stop = StopFlag::default();
    stop.store(false);
    for i in 0..apps {
        let app = application(i);
        let (ns, name) = (
            app.metadata.namespace.clone().unwrap(),
            app.metadata.name.clone().unwrap(),
        );
        metrics.sync_finished(&ns, &name, "Succeeded");
        if i % 10 == 0 {
            metrics.sync_finished(&ns, &name, "Failed");
        }
        writer.apply_watcher_event(&Event::Apply(app));
        metrics.reconciled(Duration::from_millis((i % 300) as u64));
    }
    for r in 0..50 {
        let url = format!("https://git.example.com/org/env-{r:02}.git");
        metrics.git_fetch(&url, Duration::from_millis(40), true);
    }
    let store = writer.as_reader();
    metrics.follow_fleet(store.clone(), stop.clone());

    // encode alone
    let mut encode = Vec::with_capacity(scrapes);
    let mut text = String::new();
    for _ in 0..scrapes {
        let t = Instant::now();
        text = metrics.encode();
        encode.push(t.elapsed());
    }
    let series = text.lines().filter(|l| !l.starts_with('#')).count();

    // through the server
    let client = rt.block_on(async {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        kube::Client::try_from(config).unwrap()
    });
    // a controller that is never run: its Handle, pointed at the filled cache
    let (mut handle, _never_run) = rt.block_on(async {
        capstan_controller::start_with_metrics(
            client,
            capstan_controller::ControllerOptions::default(),
            metrics.clone(),
            None,
        )
    });
    handle.applications = store.clone();
    handle.stop = stop.clone();
    handle.leader = LeaderFlag::always();
    // start_with_metrics pointed the metrics at its own (empty) cache: the filled one again
    metrics.follow_fleet(store, stop);
    let bound = rt
        .block_on(capstan_server::bind("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let url = format!("http://{}/metrics", bound.addr);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = rt.block_on(async {
        capstan_server::AppState::new(
            handle,
            capstan_server::ServerOptions {
                // the scrape's own cost, without a token check
                api: capstan_server::api::ApiOptions {
                    metrics_auth: false,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
    });
    let serving = rt.spawn(bound.serve(state, async {
        let _ = rx.await;
    }));
    let http_client = capstan_testkit::client::http();
    let mut http = Vec::with_capacity(scrapes);
    let mut bytes = 0;
    for _ in 0..scrapes {
        let t = Instant::now();
        let body = http_client.get(&url).send().unwrap().bytes().unwrap();
        http.push(t.elapsed());
        bytes = body.len();
    }
    let _ = tx.send(());
    let _ = rt.block_on(serving);
    encode.sort();
    http.sort();
    Row {
        apps,
        series,
        bytes,
        encode,
        http,
    }
}

fn main() {
    let apps: Vec<usize> = std::env::var("BENCH_APPS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .map(|n| n.trim().parse().expect("BENCH_APPS: numbers"))
        .collect();
    let scrapes: usize = std::env::var("BENCH_SCRAPES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for n in apps {
        eprintln!("{n} Applications, {scrapes} scrapes …");
        rows.push(measure(n, scrapes, &rt));
    }
    println!(
        "| Applications | series | response | encode p50 ms | encode p99 ms | encode max ms | HTTP GET p50 ms | HTTP GET p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.1} MiB | {} | {} | {} | {} | {} |",
            r.apps,
            r.series,
            r.bytes as f64 / (1024.0 * 1024.0),
            ms(percentile(&r.encode, 0.5)),
            ms(percentile(&r.encode, 0.99)),
            ms(*r.encode.last().unwrap()),
            ms(percentile(&r.http, 0.5)),
            ms(percentile(&r.http, 0.99)),
        );
    }
}
