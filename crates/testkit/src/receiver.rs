//! An HTTP receiver on loopback that records every request it gets — a stand-in for
//! a webhook endpoint, Slack, Teams or a Git forge's API in notification tests.
//!
//! It runs on its own thread and tokio runtime, speaks just enough HTTP/1.1 (one
//! request per connection, `Content-Length` bodies, answered with `Connection:
//! close`) and behaves as its [`Mode`] says: answer every request, fail the first
//! ones with `500`, or hang — read the request, record it, and never answer.
//!
//! ```no_run
//! use capstan_testkit::receiver::{Mode, Receiver};
//! let r = Receiver::start(Mode::FailFirst(2));
//! // ... point a notification at r.url("/hook") ...
//! let got = r.wait_for(1, std::time::Duration::from_secs(10));
//! assert_eq!(got[0].method, "POST");
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `200 OK` to every request.
    Ok,
    /// `500` to the first `n` requests, `200 OK` after.
    FailFirst(usize),
    /// Never answer: the connection stays open until the receiver is dropped.
    Hang,
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    /// `POST`, `GET`, …
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    /// Headers in arrival order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The status it was answered with (`None` when the receiver hung).
    pub answered: Option<u16>,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// A header's value (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body of {} {} is not JSON ({e}): {}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
}

/// A running receiver on 127.0.0.1; stopped when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    /// Listen on a free loopback port. Panics when it cannot.
    pub fn start(mode: Mode) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("the receiver's address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let shared = Arc::new(Shared::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("http-receiver".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime for the receiver");
                runtime.block_on(serve(listener, mode, state, rx));
            })
            .expect("the receiver's thread starts");
        Receiver {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` followed by `path` (which starts with `/`, or is empty).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared
            .received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Wait until at least `n` requests arrived (panics after `timeout` with what did).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the receiver at {} got {} request(s) in {timeout:?}, expected {n}: {:?}",
                    self.addr,
                    got.len(),
                    got.iter()
                        .map(|r| format!("{} {}", r.method, r.path))
                        .collect::<Vec<_>>()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    mode: Mode,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tasks.spawn(connection(stream, mode, shared.clone()));
                }
            }
        }
    }
    // hanging connections are closed here
    tasks.abort_all();
}

async fn connection(mut stream: tokio::net::TcpStream, mode: Mode, shared: Arc<Shared>) {
    let Some((method, path, headers, body)) = read_request(&mut stream).await else {
        return;
    };
    let answered = {
        let mut received = shared.received.lock().unwrap_or_else(|p| p.into_inner());
        let answered = match mode {
            Mode::Ok => Some(200),
            Mode::FailFirst(n) if received.len() < n => Some(500),
            Mode::FailFirst(_) => Some(200),
            Mode::Hang => None,
        };
        received.push(Received {
            method,
            path,
            headers,
            body,
            answered,
            at: Instant::now(),
        });
        answered
    };
    match answered {
        Some(code) => {
            let (reason, body) = if code == 200 {
                ("OK", "{\"ok\":true}")
            } else {
                (
                    "Internal Server Error",
                    "{\"error\":\"failing on purpose\"}",
                )
            };
            let response = format!(
                "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        None => {
            // keep the connection open, answer nothing
            std::future::pending::<()>().await;
        }
    }
}

type Request = (String, String, Vec<(String, String)>, Vec<u8>);

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 1 << 20 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Some((method, path, headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(url: &str) -> Result<u16, reqwest::Error> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()?;
        Ok(client
            .post(url)
            .header("x-test", "yes")
            .body("{\"a\":1}")
            .send()?
            .status()
            .as_u16())
    }

    #[test]
    fn it_records_requests_and_fails_the_first_ones_when_asked() {
        let r = Receiver::start(Mode::FailFirst(2));
        let codes: Vec<u16> = (0..3).map(|_| post(&r.url("/hook")).unwrap()).collect();
        assert_eq!(codes, [500, 500, 200]);
        let got = r.received();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].method, "POST");
        assert_eq!(got[0].path, "/hook");
        assert_eq!(got[0].header("X-Test"), Some("yes"));
        assert_eq!(got[2].json()["a"], 1);
        assert_eq!(got[2].answered, Some(200));
    }

    #[test]
    fn a_hanging_receiver_records_and_never_answers() {
        let r = Receiver::start(Mode::Hang);
        assert!(post(&r.url("/slow")).unwrap_err().is_timeout());
        let got = r.wait_for(1, Duration::from_secs(5));
        assert_eq!(got[0].answered, None);
        assert_eq!(got[0].path, "/slow");
    }
}
