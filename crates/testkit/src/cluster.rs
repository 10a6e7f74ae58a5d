//! The embedded Kubernetes API server for tests.
//!
//! [`TestCluster::start`] runs [`capstan_apiserver::ApiServer`] in memory on its own
//! tokio runtime (two workers), so synchronous tests can drive it with the real
//! `kubectl` and, through [`TestCluster::block_on`], with kube-rs. Workload simulation
//! is on with a 200 ms delay. The kubeconfig is written into a temporary directory
//! that also holds kubectl's `HOME` and cache. Everything stops when the value is
//! dropped.
//!
//! ```no_run
//! use capstan_testkit::TestCluster;
//! let cluster = TestCluster::start();
//! let out = cluster.kubectl(&["get", "ns"]);
//! assert!(String::from_utf8_lossy(&out.stdout).contains("default"));
//! let client = cluster.block_on(cluster.client());
//! # drop(client);
//! ```

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use capstan_apiserver::{ApiServer, Cluster, ServerOptions, SimulationOptions};

use crate::process;

/// How long one `kubectl` run may take before it is killed.
pub const KUBECTL_TIMEOUT: Duration = Duration::from_secs(120);

/// A running embedded API server; see the [module documentation](self).
pub struct TestCluster {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
    server: Option<ApiServer>,
}

/// Run `f` on a fresh thread: lets `start` and `drop` create, block on and shut down
/// the runtime even when called from inside another runtime (an async test).
fn on_fresh_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

impl TestCluster {
    /// The options [`start`](Self::start) uses: in memory, simulation after 200 ms,
    /// watch bookmarks every 500 ms.
    pub fn default_options() -> ServerOptions {
        ServerOptions {
            simulation: Some(SimulationOptions {
                delay: Duration::from_millis(200),
            }),
            bookmark_interval: Duration::from_millis(500),
            ..Default::default()
        }
    }

    /// Start a server with [`default_options`](Self::default_options). Panics when
    /// it cannot start.
    pub fn start() -> TestCluster {
        Self::start_with(Self::default_options())
    }

    /// Start a server with `opts`; `opts.kubeconfig` is replaced by a file in the
    /// cluster's temporary directory.
    pub fn start_with(mut opts: ServerOptions) -> TestCluster {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::Builder::new()
            .prefix("capstan-testcluster-")
            .tempdir()
            .expect("tempdir for the test cluster");
        let kubeconfig = dir.path().join("kubeconfig");
        opts.kubeconfig = Some(kubeconfig.clone());
        let (runtime, server) = on_fresh_thread(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("test-cluster")
                .enable_all()
                .build()
                .expect("tokio runtime for the test cluster");
            let server = runtime
                .block_on(ApiServer::start(opts))
                .unwrap_or_else(|e| panic!("the embedded API server does not start: {e:?}"));
            (runtime, server)
        });
        TestCluster {
            dir,
            kubeconfig,
            runtime: Some(runtime),
            server: Some(server),
        }
    }

    /// The running server.
    pub fn server(&self) -> &ApiServer {
        self.server.as_ref().expect("the test cluster is running")
    }

    /// The cluster behind the server, for direct inspection.
    pub fn cluster(&self) -> &Arc<Cluster> {
        self.server().cluster()
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        self.server().url()
    }

    /// The kubeconfig file (server CA and bearer token).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The kubeconfig as YAML.
    pub fn kubeconfig_yaml(&self) -> &str {
        self.server().kubeconfig()
    }

    /// The temporary directory holding the kubeconfig and kubectl's `HOME`; removed
    /// on drop. Tests may put their own files here.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A kube-rs client for this server. Must be awaited inside a tokio runtime:
    /// from a synchronous test use `cluster.block_on(cluster.client())`.
    pub async fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config().await).expect("kube client for the test cluster")
    }

    /// The kube-rs configuration of [`client`](Self::client), to build a client with
    /// layers of its own (the controller's request counter).
    pub async fn config(&self) -> kube::Config {
        let kc = kube::config::Kubeconfig::from_yaml(self.kubeconfig_yaml())
            .expect("the test cluster's kubeconfig parses");
        kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("the test cluster's kubeconfig loads")
    }

    /// Run `fut` to completion on the cluster's runtime (for kube-rs calls from
    /// synchronous tests). Panics when called from inside an async context.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("the test cluster is running")
            .block_on(fut)
    }

    /// A handle to the cluster's runtime, to spawn tasks on it.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the test cluster is running")
            .handle()
    }

    /// A `kubectl` command for this cluster: `--kubeconfig`, `--cache-dir` and `HOME`
    /// inside [`dir`](Self::dir), `KUBECONFIG` unset. Run it with [`process::run`].
    pub fn kubectl_command(&self) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"));
        cmd.env("HOME", self.dir.path()).env_remove("KUBECONFIG");
        cmd
    }

    /// Run `kubectl args…` against this cluster (bounded by [`KUBECTL_TIMEOUT`]).
    /// Panics when kubectl is not installed: the tests never skip without it.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.run_kubectl(args, None)
    }

    /// Run `kubectl args…` with `stdin` as its standard input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.run_kubectl(args, Some(stdin.as_bytes()))
    }

    /// Run `kubectl args…`, which must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        process::assert_success(&out, &format!("kubectl {}", args.join(" ")));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply --server-side -f -` of `yaml`, which must succeed; returns stdout.
    pub fn apply(&self, yaml: &str) -> String {
        let args = ["apply", "--server-side", "-f", "-"];
        let out = self.kubectl_stdin(&args, yaml);
        process::assert_success(&out, &format!("kubectl {}", args.join(" ")));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn run_kubectl(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = self.kubectl_command();
        cmd.args(args);
        process::try_run(cmd, stdin, KUBECTL_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "cannot run kubectl: {e}. kubectl (v1.32) must be on PATH; \
                 the tests do not skip without it"
            )
        })
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let (Some(runtime), Some(server)) = (self.runtime.take(), self.server.take()) {
            on_fresh_thread(move || {
                runtime.block_on(server.shutdown());
                runtime.shutdown_timeout(Duration::from_secs(2));
            });
        }
    }
}
