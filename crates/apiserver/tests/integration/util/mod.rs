//! Shared helpers of the integration tests: an embedded API server on loopback, the
//! real `kubectl` pointed at it, and a kube-rs client for it.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use capstan_apiserver::{ApiServer, ServerOptions, SimulationOptions};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};

/// A server running on its own runtime, so synchronous tests can drive `kubectl`.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
    server: Option<ApiServer>,
}

/// Options most tests use: in memory, fast simulation, frequent bookmarks.
pub fn test_options() -> ServerOptions {
    ServerOptions {
        simulation: Some(SimulationOptions {
            delay: Duration::from_millis(200),
        }),
        bookmark_interval: Duration::from_millis(500),
        ..Default::default()
    }
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(test_options())
    }

    pub fn start_with(mut opts: ServerOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        opts.kubeconfig = Some(kubeconfig.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = runtime
            .block_on(ApiServer::start(opts))
            .expect("server starts");
        TestServer {
            dir,
            kubeconfig,
            runtime: Some(runtime),
            server: Some(server),
        }
    }

    pub fn url(&self) -> String {
        self.server.as_ref().expect("running").url().to_string()
    }

    pub fn server(&self) -> &ApiServer {
        self.server.as_ref().expect("running")
    }

    /// Run `kubectl` against this server.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    /// Run `kubectl` with `stdin`.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = kubectl_command(&self.kubeconfig, self.dir.path());
        cmd.args(args);
        run(cmd, stdin)
    }

    /// `kubectl` that must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert_success(&out, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply --server-side -f -` of `yaml`, which must succeed.
    pub fn apply(&self, yaml: &str) -> String {
        let args = ["apply", "--server-side", "-f", "-"];
        let out = self.kubectl_stdin(&args, Some(yaml));
        assert_success(&out, &args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A kube-rs client for this server (for use from an async context).
    pub async fn client(&self) -> kube::Client {
        client_for(&std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig")).await
    }

    /// Run a future on the server's runtime (for kube-rs calls from sync tests).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.as_ref().expect("runtime").block_on(f)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let (Some(rt), Some(server)) = (self.runtime.take(), self.server.take()) {
            rt.block_on(server.shutdown());
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// The `kubectl` binary; a missing one fails the test loudly.
pub fn kubectl_command(kubeconfig: &Path, cache: &Path) -> Command {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache.join("kube-cache"));
    cmd.env("HOME", cache);
    cmd.env_remove("KUBECONFIG");
    cmd
}

pub fn run(mut cmd: Command, stdin: Option<&str>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot run {:?}: {e} (kubectl v1.32 must be on PATH; the tests do not skip without it)", cmd.get_program())
    });
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    child.wait_with_output().expect("wait for child")
}

pub fn assert_success(out: &Output, what: &[&str]) {
    assert!(
        out.status.success(),
        "{what:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A kube-rs client from kubeconfig YAML.
pub async fn client_for(kubeconfig_yaml: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig_yaml).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig loads");
    kube::Client::try_from(config).expect("client")
}

/// Start a server inside the current (async) test runtime.
pub async fn start_async(opts: ServerOptions) -> (ApiServer, kube::Client) {
    let server = ApiServer::start(opts).await.expect("server starts");
    let client = client_for(server.kubeconfig()).await;
    (server, client)
}

/// Poll `check` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The code, reason and message of an API error; any other error fails the test.
pub fn api_error(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A ConfigMap named `name` with `labels` and `data`.
pub fn cm(name: &str, labels: Value, data: Value) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": data}))
        .expect("configmap")
}

/// Create the namespace `name`.
pub async fn namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    .expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace is created");
}

/// Serve the Widget CRD of `fixtures/widget-crd.yaml`; returns the Widgets of `ns`.
pub async fn widgets(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let crd: Value = serde_saphyr::from_str(&fixture("widget-crd.yaml")).expect("CRD fixture");
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    crds.patch(
        "widgets.example.com",
        &PatchParams::apply("t"),
        &Patch::Apply(&crd),
    )
    .await
    .expect("CRD is applied");
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// Poll `probe` every 50 ms until it yields `Some` or `timeout` passes.
pub async fn poll_until<T, F, Fut>(timeout: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Read a fixture from `tests/fixtures`.
pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}
