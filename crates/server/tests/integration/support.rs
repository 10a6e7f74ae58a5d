//! A controller and its server in the test's process, against the embedded API server.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use capstan_controller::ControllerOptions;
use capstan_server::{AppState, ServerOptions};
use capstan_testkit::TestCluster;

/// The embedded API server with a controller and its HTTP server running on it.
pub struct Served {
    pub cluster: TestCluster,
    pub addr: SocketAddr,
    _state: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Served {
    /// Start a controller (interval `interval`) and its server on `127.0.0.1:0`.
    pub fn start(interval: Duration, server: ServerOptions) -> Served {
        let cluster = TestCluster::start();
        let state = tempfile::tempdir().unwrap();
        let opts = ControllerOptions {
            default_interval: interval,
            state_dir: state.path().to_path_buf(),
            ..Default::default()
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let addr = cluster.block_on(async {
            let client = cluster.client().await;
            capstan_controller::install::install_crds(&client)
                .await
                .unwrap();
            capstan_controller::ensure_namespace(&client, capstan_controller::SYSTEM_NAMESPACE)
                .await
                .unwrap();
            let (handle, running) = capstan_controller::start(client, opts, None);
            let bound = capstan_server::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .unwrap();
            let addr = bound.addr;
            let state = AppState::new(handle, server);
            tokio::spawn(async move {
                tokio::select! {
                    _ = running => {}
                    _ = bound.serve(state, async { let _ = stop_rx.await; }) => {}
                }
            });
            addr
        });
        let served = Served {
            cluster,
            addr,
            _state: state,
            stop: Some(stop_tx),
        };
        served.eventually("the server is ready", Duration::from_secs(30), || {
            served.get("/readyz").0 == 200
        });
        served
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET `path`: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let r = capstan_testkit::client::http()
            .get(self.url(path))
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    /// POST `body` to `path` with `headers`: status and body.
    pub fn post(&self, path: &str, headers: &[(String, String)], body: Vec<u8>) -> (u16, String) {
        let client = capstan_testkit::client::http();
        let mut req = client.post(self.url(path)).body(body);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let r = req.send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    /// Poll until `check` holds.
    pub fn eventually(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out after {timeout:?} waiting for {what}");
    }

    /// Set the webhook Secret's keys (replacing the Secret).
    pub fn webhook_secret(&self, keys: &[(&str, &str)]) {
        let data: String = keys
            .iter()
            .map(|(k, v)| format!("  {k}: {}\n", serde_json::to_string(v).unwrap()))
            .collect();
        let _ = self.cluster.kubectl(&[
            "-n",
            "capstan-system",
            "delete",
            "secret",
            "capstan-webhooks",
            "--ignore-not-found",
        ]);
        if !keys.is_empty() {
            self.cluster.apply(&format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: capstan-webhooks\n  namespace: capstan-system\nstringData:\n{data}"
            ));
        }
    }
}
