//! A real git server on loopback: `git http-backend` behind a small HTTP/1.1 server.
//!
//! [`GitServer::start`] serves every bare repository under a root directory over the
//! smart HTTP protocol (v0 and v2), optionally behind basic auth, on
//! `127.0.0.1:<free port>`. Pushes over HTTP are enabled too. The server counts
//! requests and response body bytes so a test can show that an incremental fetch
//! transfers less than a clone. It stops — listener closed, connections shut down,
//! running `git http-backend` processes killed — when dropped.
//!
//! ```no_run
//! use capstan_testkit::git::{BasicAuth, GitServer};
//! let root = tempfile::tempdir().unwrap();
//! let server = GitServer::start(root.path(), Some(BasicAuth::new("alice", "s3cret"))).unwrap();
//! println!("{}", server.url_with_credentials("app.git"));
//! ```

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// The realm sent in `WWW-Authenticate`.
pub const REALM: &str = "capstan-test";

/// How long a connection may sit idle (or a client may take to send a request).
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `git http-backend` run may take.
const CGI_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest request body accepted.
const MAX_BODY: usize = 256 << 20;
/// The longest request or header line accepted.
const MAX_LINE: u64 = 16 << 10;
/// The most header lines accepted in one request or CGI response.
const MAX_HEADERS: usize = 200;

/// Credentials the server requires (HTTP basic auth).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl BasicAuth {
    /// Credentials `user` / `password`.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> BasicAuth {
        BasicAuth {
            user: user.into(),
            password: password.into(),
        }
    }
}

/// One request the server answered, for assertions in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `POST`, …
    pub method: String,
    /// The decoded path, e.g. `/app.git/info/refs`.
    pub path: String,
    /// The query string without `?` (empty when there is none).
    pub query: String,
    /// The HTTP status sent.
    pub status: u16,
    /// Response body bytes sent (without chunk framing).
    pub body_bytes: u64,
    /// Request body bytes received (as sent, i.e. compressed when gzipped).
    pub request_bytes: u64,
    /// Whether the request body came with `Transfer-Encoding: chunked`.
    pub chunked_request: bool,
    /// The request's `Content-Encoding` (`gzip` for compressed bodies), if any.
    pub content_encoding: Option<String>,
    /// The `Git-Protocol` header (`version=2` for protocol v2), if any.
    pub git_protocol: Option<String>,
    /// The authenticated user, if auth is on and the credentials were right.
    pub user: Option<String>,
}

/// A running git HTTP server; see the [module documentation](self).
pub struct GitServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<Vec<JoinHandle<()>>>>,
}

struct Shared {
    root: PathBuf,
    auth: Option<BasicAuth>,
    stop: AtomicBool,
    requests: AtomicU64,
    bytes: AtomicU64,
    log: Mutex<Vec<RequestRecord>>,
    /// Requests read but not yet in the log (a client can have its answer before
    /// the record is written).
    in_flight: AtomicU64,
    conns: Mutex<HashMap<u64, Conn>>,
}

/// What `Drop` needs to end a connection: its socket and its running CGI process.
struct Conn {
    stream: TcpStream,
    child: Option<Arc<Mutex<Child>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl GitServer {
    /// Serve the bare repositories under `root` on `127.0.0.1:0`, requiring `auth`
    /// when given.
    ///
    /// Repositories are addressed by their path below `root`: `root/app.git` is
    /// [`url("app.git")`](Self::url). All of them are exported (`GIT_HTTP_EXPORT_ALL`);
    /// `http.receivepack` is on, so pushes over HTTP work. `root` must exist; an
    /// error is returned when it does not or the port cannot be bound.
    pub fn start(root: &Path, auth: Option<BasicAuth>) -> io::Result<GitServer> {
        Self::start_at(root, auth, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// [`start`](Self::start) on a given address: a server brought back on the port an
    /// earlier one (now dropped) had, so clients that know its URL reach it again.
    pub fn start_at(
        root: &Path,
        auth: Option<BasicAuth>,
        addr: SocketAddr,
    ) -> io::Result<GitServer> {
        let root = root.canonicalize()?;
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            root,
            auth,
            stop: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            in_flight: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        });
        let accept = {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("git-server-{}", addr.port()))
                .spawn(move || accept_loop(listener, shared))?
        };
        Ok(GitServer {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory whose repositories are served (canonicalized).
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of `repo` (a path below the root, e.g. `app.git`), without credentials.
    pub fn url(&self, repo: &str) -> String {
        format!("http://{}/{}", self.addr, repo.trim_start_matches('/'))
    }

    /// The URL of `repo` with `user:password@` in it (percent-encoded); the same as
    /// [`url`](Self::url) when the server has no auth.
    pub fn url_with_credentials(&self, repo: &str) -> String {
        match &self.shared.auth {
            None => self.url(repo),
            Some(a) => format!(
                "http://{}:{}@{}/{}",
                encode_userinfo(&a.user),
                encode_userinfo(&a.password),
                self.addr,
                repo.trim_start_matches('/')
            ),
        }
    }

    /// The credentials the server requires, if any.
    pub fn auth(&self) -> Option<&BasicAuth> {
        self.shared.auth.as_ref()
    }

    /// How many requests were answered (including `401`s and errors).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Total response body bytes sent (without HTTP framing).
    pub fn bytes_served(&self) -> u64 {
        self.shared.bytes.load(Ordering::SeqCst)
    }

    /// Every request answered so far, oldest first. Waits (a few seconds at most) for
    /// requests being answered now, so a request whose answer the caller has seen is
    /// in the log.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.shared.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        lock(&self.shared.log).clone()
    }

    /// Reset [`requests`](Self::requests), [`bytes_served`](Self::bytes_served) and
    /// the [`request_log`](Self::request_log).
    pub fn reset_stats(&self) {
        let mut log = lock(&self.shared.log);
        log.clear();
        self.shared.requests.store(0, Ordering::SeqCst);
        self.shared.bytes.store(0, Ordering::SeqCst);
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop; it sees `stop` and returns its connection threads.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        let handles = self
            .accept
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        for conn in lock(&self.shared.conns).values() {
            let _ = conn.stream.shutdown(Shutdown::Both);
            if let Some(child) = &conn.child {
                let _ = lock(child).kill();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for h in handles {
            while !h.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) -> Vec<JoinHandle<()>> {
    let mut handles: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(_) => {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        handles.retain(|h| !h.is_finished());
        next_id += 1;
        let id = next_id;
        let Ok(registered) = stream.try_clone() else {
            continue;
        };
        lock(&shared.conns).insert(
            id,
            Conn {
                stream: registered,
                child: None,
            },
        );
        let conn_shared = shared.clone();
        let spawned = thread::Builder::new()
            .name(format!("git-server-conn-{id}"))
            .spawn(move || {
                handle_connection(&conn_shared, id, stream);
                lock(&conn_shared.conns).remove(&id);
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(_) => {
                lock(&shared.conns).remove(&id);
            }
        }
    }
    handles
}

/// A parsed request line and headers.
struct RequestHead {
    method: String,
    target: String,
    http11: bool,
    headers: Vec<(String, String)>,
}

impl RequestHead {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    fn is_chunked(&self) -> bool {
        self.has_token("transfer-encoding", "chunked")
    }

    fn content_length(&self) -> Result<Option<usize>, String> {
        match self.header("content-length") {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("bad Content-Length {v:?}")),
        }
    }

    fn has_body(&self) -> bool {
        self.is_chunked() || matches!(self.content_length(), Ok(Some(n)) if n > 0)
    }
}

fn handle_connection(shared: &Shared, id: u64, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into());
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = BufWriter::new(stream);
    while !shared.stop.load(Ordering::SeqCst) {
        let head = match read_request_head(&mut reader) {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let _ =
                    simple_response(&mut writer, 400, "Bad Request", &[], &e.to_string(), false);
                break;
            }
            Err(_) => break,
        };
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let served = serve(shared, id, &peer, &head, &mut reader, &mut writer);
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        match served {
            Ok(true) => continue,
            Ok(false) | Err(_) => break,
        }
    }
    let _ = writer.flush();
}

/// Answer one request; `Ok(true)` when the connection stays open for the next one.
fn serve(
    shared: &Shared,
    id: u64,
    peer: &str,
    head: &RequestHead,
    reader: &mut BufReader<TcpStream>,
    writer: &mut BufWriter<TcpStream>,
) -> io::Result<bool> {
    let (raw_path, query) = match head.target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (head.target.as_str(), ""),
    };
    let path = percent_decode(raw_path);
    let keep_alive = head.http11 && !head.has_token("connection", "close");
    let mut record = RequestRecord {
        method: head.method.clone(),
        path: path.clone(),
        query: query.to_string(),
        status: 0,
        body_bytes: 0,
        request_bytes: 0,
        chunked_request: head.is_chunked(),
        content_encoding: head.header("content-encoding").map(str::to_string),
        git_protocol: head.header("git-protocol").map(str::to_string),
        user: None,
    };

    if let Some(auth) = &shared.auth {
        if !authorized(head.header("authorization"), auth) {
            // The body (if any) is not read: close unless there is none.
            let keep = keep_alive && !head.has_body();
            let realm = format!("Basic realm=\"{REALM}\"");
            let body = "authentication required\n";
            count(shared, body.len() as u64);
            let result = simple_response(
                writer,
                401,
                "Unauthorized",
                &[("WWW-Authenticate", &realm)],
                body,
                keep,
            );
            record.status = 401;
            record.body_bytes = body.len() as u64;
            lock(&shared.log).push(record);
            return result.map(|()| keep);
        }
        record.user = Some(auth.user.clone());
    }

    if head.has_token("expect", "100-continue") {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        writer.flush()?;
    }
    let body = match read_body(reader, head) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            let msg = format!("{e}\n");
            count(shared, msg.len() as u64);
            let result = simple_response(writer, 400, "Bad Request", &[], &msg, false);
            record.status = 400;
            record.body_bytes = msg.len() as u64;
            lock(&shared.log).push(record);
            return result.map(|()| false);
        }
        Err(e) => return Err(e),
    };
    record.request_bytes = body.len() as u64;

    if !path.starts_with('/') || path.split('/').any(|s| s == "..") || path.contains('\0') {
        let msg = "not found\n";
        count(shared, msg.len() as u64);
        let result = simple_response(writer, 404, "Not Found", &[], msg, keep_alive);
        record.status = 404;
        record.body_bytes = msg.len() as u64;
        lock(&shared.log).push(record);
        return result.map(|()| keep_alive);
    }

    let cgi = CgiRequest {
        head,
        path: &path,
        query,
        body,
        user: record.user.as_deref(),
        peer,
    };
    let result = run_cgi(shared, id, cgi, writer, keep_alive);
    match result {
        Ok((status, bytes)) => {
            record.status = status;
            record.body_bytes = bytes;
            lock(&shared.log).push(record);
            Ok(keep_alive)
        }
        Err((status, bytes, e)) => {
            record.status = status;
            record.body_bytes = bytes;
            lock(&shared.log).push(record);
            Err(e)
        }
    }
}

fn count(shared: &Shared, body_bytes: u64) {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    shared.bytes.fetch_add(body_bytes, Ordering::SeqCst);
}

fn authorized(header: Option<&str>, auth: &BasicAuth) -> bool {
    let Some(value) = header else {
        return false;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return false;
    };
    decoded
        .split_once(':')
        .is_some_and(|(u, p)| u == auth.user && p == auth.password)
}

/// A response with a small fixed body.
fn simple_response(
    w: &mut impl Write,
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &str,
    keep_alive: bool,
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    if !keep_alive {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    w.write_all(out.as_bytes())?;
    w.flush()
}

/// Read one line ending in `\n` (at most `MAX_LINE` bytes), without the line ending.
/// `Ok(None)` at a clean end of input.
fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.by_ref().take(MAX_LINE).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if n as u64 >= MAX_LINE {
            invalid("line too long")
        } else {
            io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-line")
        });
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| invalid("line is not UTF-8"))
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_headers(r: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "end of headers missing")
        })?;
        if line.is_empty() {
            return Ok(headers);
        }
        if headers.len() >= MAX_HEADERS {
            return Err(invalid("too many headers"));
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
}

fn read_request_head(r: &mut impl BufRead) -> io::Result<Option<RequestHead>> {
    // Tolerate empty lines between requests (RFC 9112 §2.2).
    let line = loop {
        match read_line(r)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(format!("bad request line {line:?}")));
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(invalid(format!("unsupported version {version:?}"))),
    };
    let headers = read_headers(r)?;
    Ok(Some(RequestHead {
        method: method.to_string(),
        target: target.to_string(),
        http11,
        headers,
    }))
}

/// The request body, de-chunked (but not decompressed: `git http-backend` inflates
/// gzip itself when told through `HTTP_CONTENT_ENCODING`).
fn read_body(r: &mut impl BufRead, head: &RequestHead) -> io::Result<Vec<u8>> {
    if head.is_chunked() {
        let mut body = Vec::new();
        loop {
            let line = read_line(r)?.ok_or_else(|| invalid("chunked body ends early"))?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                read_headers(r)?;
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(invalid("request body too large"));
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            match read_line(r)? {
                Some(l) if l.is_empty() => {}
                _ => return Err(invalid("chunk not followed by CRLF")),
            }
        }
    }
    let len = head.content_length().map_err(invalid)?.unwrap_or(0);
    if len > MAX_BODY {
        return Err(invalid("request body too large"));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(body)
}

struct CgiRequest<'a> {
    head: &'a RequestHead,
    path: &'a str,
    query: &'a str,
    body: Vec<u8>,
    user: Option<&'a str>,
    peer: &'a str,
}

/// A failed CGI run: the status and body bytes sent so far, and the error.
type CgiError = (u16, u64, io::Error);

/// Run `git http-backend` for one request and stream its response; returns the status
/// and the response body bytes.
fn run_cgi(
    shared: &Shared,
    id: u64,
    req: CgiRequest<'_>,
    writer: &mut BufWriter<TcpStream>,
    keep_alive: bool,
) -> Result<(u16, u64), CgiError> {
    let mut cmd = Command::new("git");
    cmd.arg("http-backend");
    // Nothing of the test process's git environment (GIT_DIR, GIT_CONFIG_*, …) leaks
    // into the backend; user and system config are ignored too.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env("GIT_CONFIG_VALUE_0", "true")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "capstan-testkit")
        .env("REQUEST_METHOD", &req.head.method)
        .env("PATH_INFO", req.path)
        .env("QUERY_STRING", req.query)
        .env("REMOTE_ADDR", req.peer);
    if let Some(user) = req.user {
        cmd.env("REMOTE_USER", user).env("AUTH_TYPE", "Basic");
    }
    if req.head.method != "GET" && req.head.method != "HEAD" || !req.body.is_empty() {
        cmd.env("CONTENT_LENGTH", req.body.len().to_string());
    }
    for (header, var) in [
        ("content-type", "CONTENT_TYPE"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "HTTP_GIT_PROTOCOL"),
        ("accept", "HTTP_ACCEPT"),
        ("user-agent", "HTTP_USER_AGENT"),
    ] {
        if let Some(v) = req.head.header(header) {
            cmd.env(var, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        (
            0,
            0,
            io::Error::new(e.kind(), format!("running git http-backend: {e}")),
        )
    })?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let child = Arc::new(Mutex::new(child));
    if let Some(conn) = lock(&shared.conns).get_mut(&id) {
        conn.child = Some(child.clone());
    }

    // Feed the body from its own thread so a backend that answers before it has read
    // everything cannot deadlock with us.
    let body = req.body;
    let feeder = stdin.map(|mut pipe| {
        thread::spawn(move || {
            let _ = pipe.write_all(&body);
        })
    });
    let errors = stderr.map(|mut pipe| {
        thread::spawn(move || {
            let mut buf = String::new();
            let _ = pipe.read_to_string(&mut buf);
            buf
        })
    });
    // Kill a backend that takes too long.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = {
        let child = child.clone();
        thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(CGI_TIMEOUT) {
                let _ = lock(&child).kill();
            }
        })
    };

    let result = match stdout {
        Some(out) => stream_cgi_response(BufReader::new(out), writer, keep_alive, shared),
        None => Err((0, 0, io::Error::other("no stdout from git http-backend"))),
    };

    let _ = done_tx.send(());
    let _ = watchdog.join();
    if result.is_err() {
        let _ = lock(&child).kill();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = lock(&child);
        match c.try_wait() {
            Ok(Some(_)) | Err(_) => break,
            Ok(None) if Instant::now() >= deadline => {
                let _ = c.kill();
                let _ = c.wait();
                break;
            }
            Ok(None) => {}
        }
        drop(c);
        thread::sleep(Duration::from_millis(2));
    }
    if let Some(conn) = lock(&shared.conns).get_mut(&id) {
        conn.child = None;
    }
    if let Some(f) = feeder {
        let _ = f.join();
    }
    if let Some(e) = errors.and_then(|h| h.join().ok())
        && !e.trim().is_empty()
    {
        eprintln!(
            "[git http-backend {} {}] {}",
            req.head.method,
            req.path,
            e.trim_end()
        );
    }
    result
}

/// Parse the CGI response headers and send the response, chunked when the connection
/// stays open, delimited by closing it otherwise.
fn stream_cgi_response(
    mut out: impl BufRead,
    w: &mut BufWriter<TcpStream>,
    keep_alive: bool,
    shared: &Shared,
) -> Result<(u16, u64), CgiError> {
    let headers = match read_headers(&mut out) {
        Ok(h) => h,
        Err(e) => {
            let msg = format!("git http-backend gave no valid response: {e}\n");
            let sent = simple_response(w, 502, "Bad Gateway", &[], &msg, false);
            let bytes = msg.len() as u64;
            return match sent {
                Ok(()) => Err((502, bytes, e)),
                Err(e) => Err((502, 0, e)),
            };
        }
    };
    let mut status = 200u16;
    let mut reason = "OK".to_string();
    let mut head = String::new();
    for (k, v) in &headers {
        if k.eq_ignore_ascii_case("status") {
            let (code, text) = v.split_once(' ').unwrap_or((v, ""));
            status = code.trim().parse().unwrap_or(500);
            reason = if text.trim().is_empty() {
                "Status".to_string()
            } else {
                text.trim().to_string()
            };
        } else if ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|h| k.eq_ignore_ascii_case(h))
        {
            // Framing is ours.
        } else {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    let mut response = format!("HTTP/1.1 {status} {reason}\r\n{head}");
    if keep_alive {
        response.push_str("Transfer-Encoding: chunked\r\n\r\n");
    } else {
        response.push_str("Connection: close\r\n\r\n");
    }
    let io_err = |bytes: u64| move |e: io::Error| (status, bytes, e);
    // Counters move before the bytes they count are written: a client can act on a
    // response (git's pkt-lines say where it ends) before the HTTP body is closed.
    count(shared, 0);
    w.write_all(response.as_bytes()).map_err(io_err(0))?;

    let mut bytes = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((status, bytes, e)),
        };
        shared.bytes.fetch_add(n as u64, Ordering::SeqCst);
        if keep_alive {
            write!(w, "{n:x}\r\n").map_err(io_err(bytes))?;
            w.write_all(&buf[..n]).map_err(io_err(bytes))?;
            w.write_all(b"\r\n").map_err(io_err(bytes))?;
        } else {
            w.write_all(&buf[..n]).map_err(io_err(bytes))?;
        }
        bytes += n as u64;
        // Let progress (side-band) reach the client as the backend produces it.
        w.flush().map_err(io_err(bytes))?;
    }
    if keep_alive {
        w.write_all(b"0\r\n\r\n").map_err(io_err(bytes))?;
    }
    w.flush().map_err(io_err(bytes))?;
    Ok((status, bytes))
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode_userinfo(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("/a%20b.git/info%2Frefs"),
            "/a b.git/info/refs"
        );
        assert_eq!(percent_decode("/x%2"), "/x%2");
        assert_eq!(percent_decode("/%zz"), "/%zz");
    }

    #[test]
    fn userinfo_encoding() {
        assert_eq!(encode_userinfo("al ice@x:y"), "al%20ice%40x%3Ay");
    }

    #[test]
    fn basic_auth_check() {
        let auth = BasicAuth::new("u", "p:w");
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:p:w")
        );
        assert!(authorized(Some(&good), &auth));
        assert!(!authorized(Some("Basic dTp4"), &auth));
        assert!(!authorized(Some("Bearer x"), &auth));
        assert!(!authorized(None, &auth));
    }

    #[test]
    fn chunked_body() {
        let head = RequestHead {
            method: "POST".into(),
            target: "/".into(),
            http11: true,
            headers: vec![("Transfer-Encoding".into(), "chunked".into())],
        };
        let raw = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let mut r = BufReader::new(&raw[..]);
        assert_eq!(read_body(&mut r, &head).unwrap(), b"hello world");
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NEXT");
    }
}
