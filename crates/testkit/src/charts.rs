//! Helm charts for tests: built with the real `helm package`, served from a chart
//! repository on loopback, or pushed to the testkit's OCI registry with `helm push`.
//!
//! - [`TestChart`] — a small chart (`Chart.yaml`, `values.yaml`, a ConfigMap template
//!   naming its version and `.Values.greeting`), with files added or replaced.
//! - [`ChartRepo`] — a chart repository: charts packaged into a directory, indexed by
//!   `helm repo index` (relative URLs), served over HTTP/1.1 on `127.0.0.1:<free port>`
//!   under `/charts/`, optionally behind basic auth, every request recorded. Crafted
//!   archives (a `../` entry, a link) are published with an index entry of their own,
//!   and an index digest can be rewritten, for the failure cases.
//! - [`push`] — `helm push --plain-http` of a packaged chart into a [`RegistryServer`]
//!   (with its credentials when it has some); [`tarball`] builds crafted `.tgz` files.
//!
//! Helm runs with its home directories in a temporary directory, so nothing of the
//! user's Helm configuration is read or written.
//!
//! ```no_run
//! use capstan_testkit::charts::{ChartRepo, TestChart};
//! let repo = ChartRepo::start(None);
//! repo.add(&TestChart::new("app", "1.2.0"));
//! println!("helm repo add test {}", repo.url());
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::git::BasicAuth;
use crate::registry::RegistryServer;
use crate::{process, tools};

/// How long one helm command may take.
const HELM_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a connection may sit idle.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The path the repository is served under.
pub const PREFIX: &str = "/charts";

/// A chart's source files; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct TestChart {
    /// The chart's name.
    pub name: String,
    /// Its version.
    pub version: String,
    files: Vec<(String, String)>,
}

impl TestChart {
    /// `name` at `version`: `Chart.yaml` (apiVersion v2), `values.yaml` with
    /// `greeting: hello`, and `templates/configmap.yaml`, a ConfigMap named after the
    /// release whose data holds the chart's version and the greeting.
    pub fn new(name: &str, version: &str) -> TestChart {
        let chart_yaml =
            format!("apiVersion: v2\nname: {name}\nversion: {version}\ntype: application\n");
        let configmap = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  version: {{ .Chart.Version | quote }}\n  greeting: {{ .Values.greeting | quote }}\n";
        TestChart {
            name: name.to_string(),
            version: version.to_string(),
            files: vec![
                ("Chart.yaml".into(), chart_yaml),
                ("values.yaml".into(), "greeting: hello\n".into()),
                ("templates/configmap.yaml".into(), configmap.into()),
            ],
        }
    }

    /// The chart with `path` (relative to the chart, e.g. `templates/monitor.yaml`)
    /// holding `text`, replacing a file of that path.
    pub fn file(mut self, path: &str, text: &str) -> TestChart {
        self.files.retain(|(p, _)| p != path);
        self.files.push((path.to_string(), text.to_string()));
        self
    }

    /// Write the chart's files into `dir/<name>` and return that directory.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let root = dir.join(&self.name);
        for (path, text) in &self.files {
            let full = root.join(path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent)
                    .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
            }
            std::fs::write(&full, text)
                .unwrap_or_else(|e| panic!("writing {}: {e}", full.display()));
        }
        root
    }

    /// `helm package` the chart into `out`; the archive (`out/<name>-<version>.tgz`).
    pub fn package(&self, out: &Path) -> PathBuf {
        let src = tempfile::tempdir().expect("a tempdir for the chart's source");
        let dir = self.write(src.path());
        let mut cmd = helm_command();
        cmd.arg("package").arg(&dir).arg("--destination").arg(out);
        let output = process::run(cmd, None, HELM_TIMEOUT);
        process::assert_success(&output, &format!("helm package {}", dir.display()));
        let archive = out.join(format!("{}-{}.tgz", self.name, self.version));
        assert!(
            archive.is_file(),
            "helm package made no {}",
            archive.display()
        );
        archive
    }
}

/// A `helm` command whose home directories are temporary (kept alive by the
/// process-wide directory below) and which never reads the user's configuration.
fn helm_command() -> Command {
    static HOME: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let home = HOME.get_or_init(|| tempfile::tempdir().expect("a tempdir for helm's home"));
    let mut cmd = Command::new(tools::helm());
    cmd.env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .env("HELM_REGISTRY_CONFIG", home.path().join("registry.json"));
    cmd
}

/// `helm push` `archive` (a packaged chart) to `oci://<registry>/<namespace>`, over
/// plain HTTP, with the registry's credentials when it has some. Returns the
/// repository URL charts are fetched from, `oci://127.0.0.1:PORT/<namespace>`.
pub fn push(registry: &RegistryServer, archive: &Path, namespace: &str) -> String {
    let url = format!("oci://{}/{}", registry.host(), namespace.trim_matches('/'));
    let mut cmd = helm_command();
    cmd.arg("push").arg(archive).arg(&url).arg("--plain-http");
    if let Some((user, password)) = registry.credentials() {
        cmd.arg("--username")
            .arg(user)
            .arg("--password")
            .arg(password);
    }
    let output = process::run(cmd, None, HELM_TIMEOUT);
    process::assert_success(&output, &format!("helm push {} {url}", archive.display()));
    url
}

/// A gzip-compressed tar of `entries` (files and symlinks, see [`TarEntry`]). Headers
/// are written as given, so paths with `..` or a leading `/` get in, as in a crafted
/// archive.
pub fn tarball(entries: &[TarEntry]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for entry in entries {
        let mut header = tar::Header::new_old();
        let (path, kind, data, link): (&str, tar::EntryType, &[u8], &str) = match entry {
            TarEntry::File(path, data) => (path, tar::EntryType::Regular, data.as_bytes(), ""),
            TarEntry::Symlink(path, target) => (path, tar::EntryType::Symlink, b"", target),
        };
        let name = &mut header.as_old_mut().name;
        assert!(path.len() < name.len(), "tar path too long: {path}");
        name[..path.len()].copy_from_slice(path.as_bytes());
        let linkname = &mut header.as_old_mut().linkname;
        assert!(link.len() < linkname.len(), "link target too long: {link}");
        linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, data).expect("writing a tar entry");
    }
    let gz = builder.into_inner().expect("finishing the tar");
    gz.finish().expect("finishing the gzip stream")
}

/// One entry of a crafted [`tarball`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarEntry {
    /// A regular file: path as written, content.
    File(String, String),
    /// A symbolic link: path as written, target.
    Symlink(String, String),
}

impl TarEntry {
    /// A regular file.
    pub fn file(path: &str, content: &str) -> TarEntry {
        TarEntry::File(path.into(), content.into())
    }

    /// A symbolic link.
    pub fn symlink(path: &str, target: &str) -> TarEntry {
        TarEntry::Symlink(path.into(), target.into())
    }
}

/// One request a [`ChartRepo`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedRequest {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// The path, e.g. `/charts/index.yaml`.
    pub path: String,
    /// The status sent.
    pub status: u16,
    /// The user whose credentials were right, when auth is on.
    pub user: Option<String>,
}

/// A chart repository on loopback; see the [module documentation](self). Stopped
/// when dropped.
pub struct ChartRepo {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    /// Index entries of crafted archives, kept across re-indexing.
    extra: Mutex<Vec<(String, Value)>>,
    _dir: tempfile::TempDir,
}

struct Shared {
    root: PathBuf,
    auth: Option<BasicAuth>,
    stop: AtomicBool,
    log: Mutex<Vec<ServedRequest>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ChartRepo {
    /// An empty repository (an `index.yaml` with no entries) on `127.0.0.1:<free port>`,
    /// requiring `auth` when given.
    pub fn start(auth: Option<BasicAuth>) -> ChartRepo {
        let dir = tempfile::Builder::new()
            .prefix("capstan-charts-")
            .tempdir()
            .expect("a tempdir for the chart repository");
        let root = dir.path().to_path_buf();
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("the listener's address");
        let shared = Arc::new(Shared {
            root,
            auth,
            stop: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
        });
        let accept = {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("chart-repo-{}", addr.port()))
                .spawn(move || accept_loop(&listener, &shared))
                .expect("a chart repository thread")
        };
        let repo = ChartRepo {
            addr,
            shared,
            accept: Some(accept),
            extra: Mutex::new(Vec::new()),
            _dir: dir,
        };
        repo.reindex();
        repo
    }

    /// `http://127.0.0.1:PORT/charts`, the repository URL.
    pub fn url(&self) -> String {
        format!("http://{}{PREFIX}", self.addr)
    }

    /// The address the repository listens on (for an [`HttpsFront`](crate::HttpsFront)).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory served (the archives and `index.yaml`).
    pub fn dir(&self) -> &Path {
        &self.shared.root
    }

    /// Package `chart` into the repository and index it again; the archive's path.
    pub fn add(&self, chart: &TestChart) -> PathBuf {
        let archive = chart.package(&self.shared.root);
        self.reindex();
        archive
    }

    /// Publish a crafted archive as `name` `version`: written under `raw/` (out of
    /// `helm repo index`'s sight) and listed in the index with its sha256.
    pub fn add_archive(&self, name: &str, version: &str, bytes: &[u8]) {
        let rel = format!("raw/{name}/{version}/{name}-{version}.tgz");
        let path = self.shared.root.join(&rel);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("creating raw/");
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        let entry = json!({
            "apiVersion": "v2",
            "name": name,
            "version": version,
            "digest": crate::registry::sha256_digest(bytes).trim_start_matches("sha256:"),
            "urls": [rel],
        });
        lock(&self.extra).push((name.to_string(), entry));
        self.reindex();
    }

    /// Run `helm repo index` over the directory and add the crafted entries.
    fn reindex(&self) {
        let mut cmd = helm_command();
        cmd.arg("repo").arg("index").arg(&self.shared.root);
        let output = process::run(cmd, None, HELM_TIMEOUT);
        process::assert_success(&output, "helm repo index");
        let mut index = self.index();
        if index.get("entries").is_none_or(Value::is_null) {
            index["entries"] = json!({});
        }
        for (name, entry) in lock(&self.extra).iter() {
            let list = &mut index["entries"][name.as_str()];
            if !list.is_array() {
                *list = json!([]);
            }
            if let Some(list) = list.as_array_mut() {
                list.push(entry.clone());
            }
        }
        self.write_index(&index);
    }

    /// The index as JSON.
    pub fn index(&self) -> Value {
        let path = self.shared.root.join("index.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing index.yaml: {e}"))
    }

    /// Write `index` as the repository's `index.yaml` (JSON is YAML).
    pub fn write_index(&self, index: &Value) {
        let path = self.shared.root.join("index.yaml");
        std::fs::write(&path, serde_json::to_string_pretty(index).expect("JSON"))
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Change the `digest` the index gives for `name` `version`. Panics when the index
    /// has no such version.
    pub fn set_digest(&self, name: &str, version: &str, digest: &str) {
        let mut index = self.index();
        let entry = index["entries"][name]
            .as_array_mut()
            .and_then(|l| l.iter_mut().find(|e| e["version"] == version))
            .unwrap_or_else(|| panic!("the index has no {name} {version}"));
        entry["digest"] = json!(digest);
        self.write_index(&index);
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<ServedRequest> {
        lock(&self.shared.log).clone()
    }

    /// Forget the requests answered so far.
    pub fn reset_requests(&self) {
        lock(&self.shared.log).clear();
    }
}

impl Drop for ChartRepo {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let shared = shared.clone();
        let _ = thread::Builder::new()
            .name("chart-repo-conn".into())
            .spawn(move || {
                let _ = serve(&shared, stream);
            });
    }
}

/// Answer one request and close the connection.
fn serve(shared: &Shared, stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    (&mut reader).take(8 << 10).read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("/"),
    );
    let path = target.split('?').next().unwrap_or("/").to_string();
    let mut authorization = None;
    for _ in 0..100 {
        let mut header = String::new();
        if (&mut reader).take(8 << 10).read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_string());
        }
    }
    let user = shared
        .auth
        .as_ref()
        .filter(|a| authorized(authorization.as_deref(), a));
    let (status, body) = if shared.auth.is_some() && user.is_none() {
        (401, b"authentication required\n".to_vec())
    } else if method != "GET" && method != "HEAD" {
        (405, b"method not allowed\n".to_vec())
    } else {
        match file_of(&shared.root, &path).and_then(|f| std::fs::read(f).ok()) {
            Some(body) => (200, body),
            None => (404, b"not found\n".to_vec()),
        }
    };
    lock(&shared.log).push(ServedRequest {
        method: method.clone(),
        path,
        status,
        user: user.map(|u| u.user.clone()),
    });
    let mut out = stream;
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status == 401 {
        head.push_str("WWW-Authenticate: Basic realm=\"capstan-test\"\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if method != "HEAD" {
        out.write_all(&body)?;
    }
    out.flush()
}

/// The file a request path names under `root`: below [`PREFIX`], no `..`.
fn file_of(root: &Path, path: &str) -> Option<PathBuf> {
    let rest = path.strip_prefix(PREFIX)?.strip_prefix('/')?;
    let mut file = root.to_path_buf();
    for part in rest.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => file.push(p),
        }
    }
    file.is_file().then_some(file)
}

fn authorized(header: Option<&str>, auth: &BasicAuth) -> bool {
    let Some(encoded) = header.and_then(|h| h.strip_prefix("Basic ")) else {
        return false;
    };
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .is_some_and(|d| d == format!("{}:{}", auth.user, auth.password))
}
