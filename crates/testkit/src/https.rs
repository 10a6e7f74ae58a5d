//! An HTTPS front for a loopback server (the [`GitServer`](crate::GitServer)): TLS is
//! terminated here with a certificate signed by a CA of its own, and the bytes go on
//! to the plain-HTTP server behind it — so clients are tested over real HTTPS, the
//! way they reach a Git host.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A TLS-terminating proxy on 127.0.0.1, stopped when dropped.
pub struct HttpsFront {
    addr: SocketAddr,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpsFront {
    /// Serve HTTPS on a free loopback port, forwarding every connection to `backend`.
    pub fn start(backend: SocketAddr) -> io::Result<HttpsFront> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let identity = capstan_apiserver::tls::identity(None, addr).map_err(io::Error::other)?;
        // HTTP/1.1 only: the server behind speaks nothing else
        let mut config = (*identity.server_config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let dir = tempfile::tempdir()?;
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, &identity.ca_pem)?;

        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("https-front-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("a tokio listener");
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                tokio::spawn(forward(acceptor.clone(), stream, backend));
                            }
                        }
                    }
                });
            })?;
        Ok(HttpsFront {
            addr,
            ca_file,
            _dir: dir,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `https://127.0.0.1:PORT/repo`.
    pub fn url(&self, repo: &str) -> String {
        format!("https://{}/{}", self.addr, repo.trim_start_matches('/'))
    }

    /// A PEM file holding the CA that signed the front's certificate (what a client
    /// must trust, e.g. through `SSL_CERT_FILE`).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }
}

async fn forward(acceptor: TlsAcceptor, stream: TcpStream, backend: SocketAddr) {
    let Ok(mut tls) = acceptor.accept(stream).await else {
        return; // a client that does not trust the certificate hangs up here
    };
    let Ok(mut plain) = TcpStream::connect(backend).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
}

impl Drop for HttpsFront {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
