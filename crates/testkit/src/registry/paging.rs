//! A paging front for the [`RegistryServer`](super::RegistryServer): an HTTP/1.1 server
//! on loopback in front of the real registry that answers tag lists page by page, the
//! way Docker Hub and GHCR do, since distribution 2.8 sends every tag at once.
//!
//! Every request is forwarded to the registry as it came (method, target, headers —
//! `Authorization` included — and body) and the registry's answer goes back byte for
//! byte, `WWW-Authenticate` challenges included, so basic and token auth work through
//! the front as they do without it. The one exception is `GET /v2/<name>/tags/list`:
//! the front asks the registry for the whole list with the client's headers, and if
//! that succeeds answers one page of it itself — tags sorted, those after `last`, at
//! most `n` (and at most the front's page size) — with
//! `Link: </v2/<name>/tags/list?n=N&last=T>; rel="next"` while more remain. A failed
//! answer (a `401` challenge, a `404`) goes back as the registry sent it.
//!
//! One request per connection (answers say `Connection: close`); request heads, bodies
//! and registry answers are bounded, sockets time out, and every request is recorded
//! ([`requests`](PagingFront::requests)) so a test can count the pages a client read.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{decode_query, encode_query, lock};

/// How long a socket of the front waits to read or write.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest request or status line, and header line.
const MAX_LINE: u64 = 16 << 10;
/// The most header lines of a request or answer.
const MAX_HEADERS: usize = 200;
/// The largest request body forwarded (a test image's blobs are a few KiB).
const MAX_REQUEST_BODY: usize = 64 << 20;
/// The largest full tag list read from the registry.
const MAX_TAG_LIST: usize = 64 << 20;
/// The most connections served at once; more are answered `503`.
const MAX_CONNECTIONS: usize = 64;
/// Request headers that are about one connection and are not forwarded.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// One request the front answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontRequest {
    /// The method (`GET`, `HEAD`, …).
    pub method: String,
    /// The request target as received (`/v2/team/app/tags/list?n=100&last=t099`).
    pub target: String,
    /// The status sent back: the registry's, or the front's own (`502` when the
    /// registry could not be reached).
    pub status: u16,
    /// The scheme of the request's `Authorization` (`Basic`, `Bearer`), if it had one.
    pub auth_scheme: Option<String>,
    /// For a tag-list page the front answered itself: how many tags it held.
    pub page: Option<usize>,
}

/// A paging front over a running registry, stopped when dropped; see the
/// [module documentation](self).
pub struct PagingFront {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    backend: SocketAddr,
    page_size: usize,
    stop: AtomicBool,
    open: AtomicUsize,
    requests: Mutex<Vec<FrontRequest>>,
}

impl PagingFront {
    /// Serve on `127.0.0.1:<free port>` in front of the registry at `backend`, with
    /// pages of at most `page_size` tags (`0` counts as `1`). Panics when no port can
    /// be bound.
    pub fn start(backend: SocketAddr, page_size: usize) -> PagingFront {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .unwrap_or_else(|e| panic!("binding the paging front to 127.0.0.1:0: {e}"));
        let addr = listener.local_addr().expect("the paging front's address");
        let shared = Arc::new(Shared {
            backend,
            page_size: page_size.max(1),
            stop: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let accept = {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("registry-paging-{}", addr.port()))
                .spawn(move || accept_loop(&listener, &shared))
                .expect("a paging front thread")
        };
        PagingFront {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `127.0.0.1:PORT`, the registry host of images reached through the front.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT/<repo>`, an image reference through the front.
    pub fn image(&self, repo: &str) -> String {
        format!("{}/{}", self.addr, repo.trim_matches('/'))
    }

    /// The most tags of one page.
    pub fn page_size(&self) -> usize {
        self.shared.page_size
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<FrontRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The tag-list pages the front answered (with a `200`) for `repo` so far.
    pub fn pages_served(&self, repo: &str) -> usize {
        let prefix = format!("/v2/{}/tags/list", repo.trim_matches('/'));
        self.requests()
            .iter()
            .filter(|r| r.page.is_some() && r.target.split('?').next() == Some(prefix.as_str()))
            .count()
    }
}

impl Drop for PagingFront {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag; connection threads end with their
        // sockets' timeouts at the latest.
        if let Ok(s) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)) {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else {
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        if shared.open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            let mut stream = stream;
            let _ = respond(&mut stream, 503, "Service Unavailable", &[], b"busy\n");
            continue;
        }
        let conn_shared = shared.clone();
        let spawned = thread::Builder::new()
            .name("registry-paging-conn".into())
            .spawn(move || {
                serve(&conn_shared, stream);
                conn_shared.open.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            shared.open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A request line and headers.
struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The headers to forward: all but the hop-by-hop ones.
    fn forwarded(&self) -> impl Iterator<Item = &(String, String)> {
        self.headers
            .iter()
            .filter(|(k, _)| !HOP_BY_HOP.iter().any(|h| k.eq_ignore_ascii_case(h)))
    }
}

/// Serve the one request of a connection and record it.
fn serve(shared: &Shared, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut client = stream;
    let head = match read_head(&mut reader) {
        Ok(Some(head)) => head,
        Ok(None) => return,
        Err(e) => {
            let _ = respond(
                &mut client,
                400,
                "Bad Request",
                &[],
                format!("{e}\n").as_bytes(),
            );
            return;
        }
    };
    let mut record = Record {
        shared,
        request: FrontRequest {
            method: head.method.clone(),
            target: head.target.clone(),
            status: 0,
            auth_scheme: head
                .header("authorization")
                .and_then(|a| a.split_whitespace().next())
                .map(str::to_string),
            page: None,
        },
        saved: false,
    };
    let path = head.target.split('?').next().unwrap_or("");
    let result = if head.method == "GET" && tag_list_repo(path).is_some() {
        serve_page(shared, &head, &mut client, &mut record)
    } else {
        forward(shared, &head, &mut reader, &mut client, &mut record)
    };
    if result.is_err() && !record.saved {
        record.save(502, None);
        let _ = respond(
            &mut client,
            502,
            "Bad Gateway",
            &[],
            b"registry unreachable\n",
        );
    }
    let _ = client.flush();
    let _ = client.shutdown(Shutdown::Write);
}

/// A request on its way to the log.
struct Record<'a> {
    shared: &'a Shared,
    request: FrontRequest,
    saved: bool,
}

impl Record<'_> {
    /// Log the request with its answer's `status` — before the answer is sent, so a
    /// client that has its answer finds the request recorded.
    fn save(&mut self, status: u16, page: Option<usize>) {
        if !self.saved {
            self.saved = true;
            self.request.status = status;
            self.request.page = page;
            lock(&self.shared.requests).push(self.request.clone());
        }
    }
}

/// Forward the request and copy the registry's answer back as it comes.
fn forward(
    shared: &Shared,
    head: &Head,
    reader: &mut BufReader<TcpStream>,
    client: &mut TcpStream,
    record: &mut Record<'_>,
) -> io::Result<()> {
    if head
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        record.save(411, None);
        return respond(
            client,
            411,
            "Length Required",
            &[],
            b"the paging front forwards bodies with a Content-Length only\n",
        );
    }
    let length = match head
        .header("content-length")
        .map(|v| v.trim().parse::<usize>())
    {
        None => 0,
        Some(Ok(n)) if n <= MAX_REQUEST_BODY => n,
        Some(_) => {
            record.save(413, None);
            return respond(
                client,
                413,
                "Content Too Large",
                &[],
                b"bad or large body\n",
            );
        }
    };
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;

    let mut upstream = connect(shared.backend)?;
    let mut request = format!("{} {} HTTP/1.1\r\n", head.method, head.target);
    for (k, v) in head.forwarded() {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    upstream.write_all(request.as_bytes())?;
    upstream.write_all(&body)?;
    upstream.flush()?;

    let mut answer = BufReader::new(upstream);
    let mut status_line = Vec::new();
    (&mut answer)
        .take(MAX_LINE)
        .read_until(b'\n', &mut status_line)?;
    let status = status_code(&String::from_utf8_lossy(&status_line))
        .ok_or_else(|| io::Error::other("the registry sent no status line"))?;
    record.save(status, None);
    client.write_all(&status_line)?;
    // The registry closes after its answer (`Connection: close`), however it frames it.
    io::copy(&mut answer, client)?;
    Ok(())
}

/// Answer `GET /v2/<name>/tags/list?n=…&last=…` with one page of the registry's list.
fn serve_page(
    shared: &Shared,
    head: &Head,
    client: &mut TcpStream,
    record: &mut Record<'_>,
) -> io::Result<()> {
    let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
    let mut n = None;
    let mut last = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match decode_query(name).as_str() {
            "n" => n = decode_query(value).parse::<usize>().ok(),
            "last" => last = Some(decode_query(value)),
            _ => {}
        }
    }
    let n = n
        .filter(|n| *n > 0)
        .map_or(shared.page_size, |n| n.min(shared.page_size));

    let full = fetch_full_list(shared, head, path)?;
    if full.status != 200 {
        record.save(full.status, None);
        let headers: Vec<(&str, &str)> = full
            .headers
            .iter()
            .filter(|(k, _)| {
                !HOP_BY_HOP.iter().any(|h| k.eq_ignore_ascii_case(h))
                    && !k.eq_ignore_ascii_case("content-length")
            })
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        return respond(client, full.status, &full.reason, &headers, &full.body);
    }
    let Some((name, mut tags)) = parse_tags(&full.body) else {
        record.save(502, None);
        return respond(
            client,
            502,
            "Bad Gateway",
            &[],
            b"the registry's tag list is not {\"name\", \"tags\"}\n",
        );
    };
    tags.sort();
    tags.dedup();
    let after: Vec<&String> = tags
        .iter()
        .filter(|t| last.as_ref().is_none_or(|l| t.as_str() > l.as_str()))
        .collect();
    let page: Vec<&String> = after.iter().take(n).copied().collect();
    let body = serde_json::json!({ "name": name, "tags": page }).to_string();
    let mut headers = vec![(
        "Content-Type",
        "application/json; charset=utf-8".to_string(),
    )];
    if after.len() > page.len()
        && let Some(last_tag) = page.last()
    {
        headers.push((
            "Link",
            format!(
                "<{path}?n={n}&last={}>; rel=\"next\"",
                encode_query(last_tag)
            ),
        ));
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    record.save(200, Some(page.len()));
    respond(client, 200, "OK", &headers, body.as_bytes())
}

/// An answer of the registry, read whole.
struct Answer {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// `GET path` (no query) from the registry with the client's headers, as HTTP/1.0 so
/// the answer is never chunked and ends where the connection does.
fn fetch_full_list(shared: &Shared, head: &Head, path: &str) -> io::Result<Answer> {
    let mut upstream = connect(shared.backend)?;
    let mut request = format!("GET {path} HTTP/1.0\r\n");
    for (k, v) in head.forwarded() {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    upstream.write_all(request.as_bytes())?;
    upstream.flush()?;
    let mut reader = BufReader::new(upstream);
    let status_line = read_line(&mut reader)?.ok_or_else(|| invalid("no answer"))?;
    let status = status_code(&status_line).ok_or_else(|| invalid("no status line"))?;
    let reason = status_line
        .splitn(3, ' ')
        .nth(2)
        .unwrap_or("")
        .trim()
        .to_string();
    let headers = read_headers(&mut reader)?;
    let mut body = Vec::new();
    let read = (&mut reader)
        .take(MAX_TAG_LIST as u64 + 1)
        .read_to_end(&mut body)?;
    if read > MAX_TAG_LIST {
        return Err(invalid("the registry's tag list is too large"));
    }
    Ok(Answer {
        status,
        reason,
        headers,
        body,
    })
}

/// The name and tags of a tag-list body (`"tags": null` counts as none).
fn parse_tags(body: &[u8]) -> Option<(String, Vec<String>)> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let name = value.get("name")?.as_str()?.to_string();
    let tags = match value.get("tags")? {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|t| t.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    Some((name, tags))
}

/// The repository of a `/v2/<name>/tags/list` path.
fn tag_list_repo(path: &str) -> Option<&str> {
    path.strip_prefix("/v2/")?
        .strip_suffix("/tags/list")
        .filter(|name| !name.is_empty())
}

fn connect(backend: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&backend, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// The status code of an HTTP status line.
fn status_code(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts
        .next()?
        .parse()
        .ok()
        .filter(|s| (100..600).contains(s))
}

/// An answer with `headers`, `body` and its length, closing the connection.
fn respond(
    w: &mut impl Write,
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// One line without its line ending (at most `MAX_LINE` bytes); `None` at the end.
fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    if r.by_ref().take(MAX_LINE).read_until(b'\n', &mut buf)? == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(invalid("line too long or cut off"));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| invalid("line is not UTF-8"))
}

fn read_headers(r: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?.ok_or_else(|| invalid("end of headers missing"))?;
        if line.is_empty() {
            return Ok(headers);
        }
        if headers.len() >= MAX_HEADERS {
            return Err(invalid("too many headers"));
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| invalid("a header line without ':'"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
}

fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let Some(line) = read_line(r)? else {
        return Ok(None);
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("bad request line"));
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") || !target.starts_with('/') {
        return Err(invalid("bad request line"));
    }
    Ok(Some(Head {
        method: method.to_string(),
        target: target.to_string(),
        headers: read_headers(r)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_list_paths_name_their_repository() {
        assert_eq!(tag_list_repo("/v2/team/app/tags/list"), Some("team/app"));
        assert_eq!(tag_list_repo("/v2/app/tags/list"), Some("app"));
        assert_eq!(tag_list_repo("/v2//tags/list"), None);
        assert_eq!(tag_list_repo("/v2/app/manifests/v1"), None);
        assert_eq!(tag_list_repo("/v2/_catalog"), None);
    }

    #[test]
    fn status_lines_give_their_code() {
        assert_eq!(status_code("HTTP/1.1 401 Unauthorized\r\n"), Some(401));
        assert_eq!(status_code("HTTP/1.0 200 OK"), Some(200));
        assert_eq!(status_code("garbage 200"), None);
        assert_eq!(status_code(""), None);
    }

    #[test]
    fn tag_list_bodies_parse_with_null_as_empty() {
        let (name, tags) = parse_tags(br#"{"name":"a","tags":["2","1"]}"#).unwrap();
        assert_eq!(
            (name.as_str(), tags),
            ("a", vec!["2".to_string(), "1".to_string()])
        );
        assert_eq!(
            parse_tags(br#"{"name":"a","tags":null}"#).unwrap().1.len(),
            0
        );
        assert!(parse_tags(br#"{"name":"a","tags":[1]}"#).is_none());
        assert!(parse_tags(b"<html>").is_none());
    }
}
