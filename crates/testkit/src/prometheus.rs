//! A real Prometheus on loopback: Debian's `prometheus` (2.x), run by the test,
//! scraping the targets it is given and queried through its HTTP API.
//!
//! [`Prometheus::start`] writes a configuration into a temporary directory (one job
//! `capstan` scraping every target's `/metrics` each second), keeps the TSDB there
//! too, and runs `/usr/bin/prometheus` on `127.0.0.1:<free port>` until the value is
//! dropped; then the process is killed and the directory removed. Queries go through
//! `GET /api/v1/query` as any dashboard's would.
//!
//! The HTTP helpers run on a thread of their own, so they may be called from inside
//! an async runtime.
//!
//! ```no_run
//! use std::time::Duration;
//! use capstan_testkit::prometheus::Prometheus;
//! let prom = Prometheus::start(&["127.0.0.1:8080".parse().unwrap()]);
//! prom.wait_for_scrape(Duration::from_secs(30));
//! let series = prom.query("capstan_build_info");
//! assert_eq!(series[0]["metric"]["job"], "capstan");
//! ```

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where Debian installs the server.
pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";

/// How long the server may take to answer `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Ports tried before giving up (another process may take the free port first).
const PORT_ATTEMPTS: usize = 5;

/// A running Prometheus; see the [module documentation](self).
pub struct Prometheus {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    config: PathBuf,
    // Declared last: removed after the child is killed.
    dir: tempfile::TempDir,
}

/// The job name the scrape configuration uses (the `job` label of every series).
pub const JOB: &str = "capstan";

impl Prometheus {
    /// Start Prometheus scraping `targets` (`HOST:PORT`, path `/metrics`) every
    /// second. Returns once it is ready (not once it has scraped: see
    /// [`wait_for_scrape`](Self::wait_for_scrape)). Panics with a clear message when
    /// the binary is missing (install the Debian package `prometheus`; scripts/test
    /// does), and with its log when it does not come up.
    pub fn start(targets: &[SocketAddr]) -> Prometheus {
        let binary = Path::new(PROMETHEUS_BIN);
        assert!(
            binary.is_file(),
            "{PROMETHEUS_BIN} is missing; the metrics tests scrape with a real Prometheus and \
             are not skipped: install the Debian package prometheus (scripts/test does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("capstan-prometheus-")
            .tempdir()
            .expect("tempdir for prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, scrape_config(targets))
            .unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
        let log = dir.path().join("prometheus.log");
        let mut prom = Prometheus {
            port: 0,
            child: None,
            log,
            config,
            dir,
        };
        for _ in 0..PORT_ATTEMPTS {
            prom.port = free_port();
            std::fs::write(&prom.log, "").expect("prometheus log file");
            let mut child = prom.spawn();
            match prom.wait_ready(&mut child) {
                Ok(()) => {
                    prom.child = Some(child);
                    return prom;
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = prom.log();
                    assert!(
                        log.contains("address already in use"),
                        "prometheus on 127.0.0.1:{} did not come up: {why}\nconfig:\n{}\nlog:\n{log}",
                        prom.port,
                        std::fs::read_to_string(&prom.config).unwrap_or_default()
                    );
                }
            }
        }
        panic!(
            "prometheus could not bind a free port in {PORT_ATTEMPTS} attempts; log:\n{}",
            prom.log()
        );
    }

    fn spawn(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .expect("prometheus log file");
        Command::new(PROMETHEUS_BIN)
            .arg(format!("--config.file={}", self.config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--log.level=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("running {PROMETHEUS_BIN}: {e}"))
    }

    fn wait_ready(&self, child: &mut Child) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("prometheus exited with {status}"));
            }
            let last = match get(&format!("{}/-/ready", self.url())) {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => format!("/-/ready answered {status}: {body}"),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!("not ready within {READY_TIMEOUT:?} ({last})"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What Prometheus logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The instant query `promql` through `GET /api/v1/query`: the `data.result`
    /// array (one `{metric, value}` per series). Panics when the query fails.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url()),
            [("query", promql)],
        )
        .expect("a query URL");
        let (status, body) =
            get(url.as_str()).unwrap_or_else(|e| panic!("GET {url}: {e}\nlog:\n{}", self.log()));
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("prometheus answered non-JSON ({e}, {status}): {body}"));
        assert_eq!(v["status"], "success", "query {promql:?} failed: {body}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The scrape targets (`GET /api/v1/targets`: `data.activeTargets`).
    pub fn targets(&self) -> Vec<Value> {
        let url = format!("{}/api/v1/targets", self.url());
        let (_, body) = get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Wait until every target has been scraped successfully at least once
    /// (`up == 1` for each). Panics with the targets and the log otherwise.
    pub fn wait_for_scrape(&self, timeout: Duration) {
        self.wait_for("every target up", timeout, || {
            let targets = self.targets();
            !targets.is_empty() && targets.iter().all(|t| t["health"] == "up")
        });
    }

    /// Run `promql` until `check` accepts its result; returns that result. Panics
    /// after `timeout` with the last result, the targets and the log.
    pub fn query_until(
        &self,
        promql: &str,
        timeout: Duration,
        mut check: impl FnMut(&[Value]) -> bool,
    ) -> Vec<Value> {
        let mut last = Vec::new();
        let found = self.poll(timeout, || {
            last = self.query(promql);
            check(&last)
        });
        assert!(
            found,
            "query {promql:?} did not give what was expected within {timeout:?}; last result: {}\ntargets: {}\nlog:\n{}",
            Value::Array(last.clone()),
            Value::Array(self.targets()),
            self.log()
        );
        last
    }

    fn wait_for(&self, what: &str, timeout: Duration, check: impl FnMut() -> bool) {
        assert!(
            self.poll(timeout, check),
            "timed out after {timeout:?} waiting for {what}; targets: {}\nlog:\n{}",
            Value::Array(self.targets()),
            self.log()
        );
    }

    fn poll(&self, timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if check() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!(
                "[capstan-testkit] prometheus on 127.0.0.1:{} logged (last lines):\n{tail}",
                self.port
            );
        }
    }
}

/// The configuration: one job scraping `targets` every second.
fn scrape_config(targets: &[SocketAddr]) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: {JOB}\n    metrics_path: /metrics\n    static_configs:\n      - targets: [{}]\n",
        list.join(", ")
    )
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:0: {e}"))
}

/// `GET url` on a thread of its own (blocking reqwest may not run inside a tokio
/// runtime): the status and body.
fn get(url: &str) -> Result<(u16, String), String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| e.to_string())?;
            let resp = client.get(url).send().map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            Ok((status, resp.text().unwrap_or_default()))
        })
        .join()
        .unwrap_or_else(|_| Err("the request thread panicked".into()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scrape_config_lists_every_target_under_one_job() {
        let cfg = scrape_config(&[
            "127.0.0.1:8080".parse().unwrap(),
            "127.0.0.1:8081".parse().unwrap(),
        ]);
        assert!(cfg.contains("job_name: capstan"), "{cfg}");
        assert!(
            cfg.contains("targets: ['127.0.0.1:8080', '127.0.0.1:8081']"),
            "{cfg}"
        );
        assert!(cfg.contains("scrape_interval: 1s"), "{cfg}");
    }
}
