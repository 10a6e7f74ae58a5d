//! The server's TLS identity and the kubeconfig clients use to reach it.
//!
//! A CA and a bearer token are generated on first start (and kept in the data
//! directory, so a restarted server keeps accepting the same kubeconfig); a serving
//! certificate for `127.0.0.1`, `::1`, `localhost` and the listen address is signed by
//! that CA at every start.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Failure to set up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("generating certificates")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// rustls rejected the configuration.
    #[error("configuring TLS")]
    Rustls(#[from] rustls::Error),
}

/// CA, serving certificate and bearer token.
pub struct Identity {
    /// PEM of the CA certificate (what clients trust).
    pub ca_pem: String,
    /// The bearer token clients must present.
    pub token: String,
    /// rustls configuration serving the signed certificate.
    pub server_config: Arc<ServerConfig>,
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> TlsError + 'a {
    move |source| TlsError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "capstan-apiserver-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Load (or create, in `dir` if given) the CA and token, and sign a serving certificate.
pub fn identity(dir: Option<&Path>, listen: SocketAddr) -> Result<Identity, TlsError> {
    let (ca_key, ca_pem, token) = match dir {
        Some(dir) => load_or_create(dir)?,
        None => {
            let key = KeyPair::generate()?;
            let cert = ca_params().self_signed(&key)?;
            (key, cert.pem(), random_token())
        }
    };
    let issuer = Issuer::new(ca_params(), ca_key);

    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "capstan-apiserver");
    let mut sans = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::DnsName("capstan-apiserver".try_into()?),
        SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
        SanType::IpAddress("::1".parse().expect("valid IPv6 literal")),
    ];
    if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
        sans.push(SanType::IpAddress(listen.ip()));
    }
    params.subject_alt_names = sans;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Identity {
        ca_pem,
        token,
        server_config: Arc::new(config),
    })
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn load_or_create(dir: &Path) -> Result<(KeyPair, String, String), TlsError> {
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).map_err(io_err("creating", &pki))?;
    let key_path = pki.join("ca.key");
    let cert_path = pki.join("ca.crt");
    let token_path = pki.join("token");
    if key_path.exists() && cert_path.exists() && token_path.exists() {
        let key_pem = std::fs::read_to_string(&key_path).map_err(io_err("reading", &key_path))?;
        let ca_pem = std::fs::read_to_string(&cert_path).map_err(io_err("reading", &cert_path))?;
        let token = std::fs::read_to_string(&token_path).map_err(io_err("reading", &token_path))?;
        return Ok((
            KeyPair::from_pem(&key_pem)?,
            ca_pem,
            token.trim().to_string(),
        ));
    }
    let key = KeyPair::generate()?;
    let ca_pem = ca_params().self_signed(&key)?.pem();
    let token = random_token();
    write_private(&key_path, &key.serialize_pem())?;
    std::fs::write(&cert_path, &ca_pem).map_err(io_err("writing", &cert_path))?;
    write_private(&token_path, &token)?;
    Ok((key, ca_pem, token))
}

fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("writing", path))?;
    f.write_all(contents.as_bytes())
        .map_err(io_err("writing", path))
}

/// A kubeconfig for `server` with the CA and token, context `capstan`.
pub fn kubeconfig(server: &str, ca_pem: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: capstan
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: capstan
  user:
    token: {token}
contexts:
- name: capstan
  context:
    cluster: capstan
    user: capstan
    namespace: default
current-context: capstan
",
        ca = STANDARD.encode(ca_pem)
    )
}

/// Write a kubeconfig readable by its owner only.
pub fn write_kubeconfig(path: &Path, contents: &str) -> Result<(), TlsError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
    }
    write_private(path, contents)
}
