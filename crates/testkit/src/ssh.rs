//! A real SSH server on loopback: OpenSSH's `sshd`, run as the current user.
//!
//! [`SshServer::start`] generates an ed25519 host key and an ed25519 client key pair
//! (no passphrase) with `ssh-keygen` in a temporary directory, writes an `sshd_config`
//! that accepts only that client key (public key authentication only, no PAM), and runs
//! `/usr/sbin/sshd -D -e` on `127.0.0.1:<free port>` until the server is dropped.
//!
//! Sessions run commands as the current user with the test process's `PATH`, so the
//! git CLI can run `git-upload-pack` through it: [`url_for`](SshServer::url_for) gives
//! an `ssh://` URL for any bare repository on this machine (a
//! [`TestRepo`](crate::TestRepo)'s, for instance), and
//! [`client_key`](SshServer::client_key) the private key that is let in. `GIT_PROTOCOL`
//! is accepted, so clients get protocol v2.
//!
//! When run as root (CI containers), `sshd` needs its privilege separation directory
//! (`/run/sshd` on Debian, normally made by systemd); it is created when missing.
//!
//! Ports whose `[127.0.0.1]:PORT` already has an entry in the user's `known_hosts` are
//! not used: each server has a fresh host key, and an SSH client that recorded an
//! earlier server on the same port would refuse this one.
//!
//! ```no_run
//! use capstan_testkit::{ssh::SshServer, TestRepo};
//! let root = tempfile::tempdir().unwrap();
//! let repo = TestRepo::create(root.path(), "app.git");
//! let server = SshServer::start();
//! println!("{} with key {}", server.url_for(repo.bare_path()), server.client_key().display());
//! ```

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::process;

/// Where Debian (and most distributions) install the OpenSSH server.
pub const SSHD: &str = "/usr/sbin/sshd";

/// How long `sshd` may take to accept connections after it is started.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one helper run (`ssh-keygen`, `sshd -t`, `id`) may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports are tried before giving up (another process may take a port between
/// the probe and `sshd` binding it).
const PORT_ATTEMPTS: usize = 8;

/// A running `sshd` on loopback; see the [module documentation](self).
///
/// The server process is killed when this is dropped (sessions already open finish on
/// their own); the temporary directory with the keys and config is then removed.
pub struct SshServer {
    port: u16,
    user: String,
    client_key: PathBuf,
    host_public_key: String,
    log: PathBuf,
    child: Child,
    // Declared last: removed after the child is killed.
    dir: tempfile::TempDir,
}

impl SshServer {
    /// Start `sshd` on `127.0.0.1:<free port>`, letting in the current user with the
    /// generated [client key](Self::client_key) only.
    ///
    /// Returns once the port answers with an SSH banner. Panics with a clear message
    /// when `sshd` or `ssh-keygen` is missing (install `openssh-server` and
    /// `openssh-client`), when the configuration is refused, or when the server does
    /// not come up within 10 seconds.
    pub fn start() -> SshServer {
        let sshd = find_sshd();
        let dir = tempfile::Builder::new()
            .prefix("capstan-sshd-")
            .tempdir()
            .expect("tempdir for sshd");
        let base = dir.path().to_path_buf();
        check_config_path(&base);

        let host_key = base.join("host_ed25519");
        let client_key = base.join("client_ed25519");
        generate_key(&host_key);
        generate_key(&client_key);
        let host_public_key = read_public_key(&host_key);
        let authorized_keys = base.join("authorized_keys");
        std::fs::write(
            &authorized_keys,
            format!("{}\n", read_public_key(&client_key)),
        )
        .unwrap_or_else(|e| panic!("writing {}: {e}", authorized_keys.display()));
        let user = current_user();

        let config = base.join("sshd_config");
        let log = base.join("sshd.log");
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            std::fs::write(&config, sshd_config(&base, port, &user))
                .unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
            check_config(&sshd, &config);
            let log_file =
                File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
            let mut child = Command::new(&sshd)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", sshd.display()));
            match wait_ready(&mut child, port) {
                Ok(()) => {
                    return SshServer {
                        port,
                        user,
                        client_key,
                        host_public_key,
                        log,
                        child,
                        dir,
                    };
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = std::fs::read_to_string(&log).unwrap_or_default();
                    let lost_port = last_log.contains("Address already in use")
                        || last_log.contains("Cannot bind any address");
                    assert!(
                        lost_port,
                        "sshd on 127.0.0.1:{port} did not come up: {why}\nsshd_config:\n{}\nsshd stderr:\n{last_log}",
                        std::fs::read_to_string(&config).unwrap_or_default()
                    );
                }
            }
        }
        panic!(
            "sshd could not bind a free port on 127.0.0.1 in {PORT_ATTEMPTS} attempts; last stderr:\n{last_log}"
        );
    }

    /// The port on `127.0.0.1` the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The user sessions log in as: the current user (`id -un`), the only one allowed.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The private key the server lets in (ed25519, no passphrase, mode 0600).
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// The server's public host key, `ssh-ed25519 AAAA…` (without comment).
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }

    /// A `known_hosts` line for this server: `[127.0.0.1]:PORT ssh-ed25519 AAAA…`.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_public_key)
    }

    /// The directory holding the keys, `sshd_config` and `sshd.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `ssh://USER@127.0.0.1:PORT/<absolute path>` for the bare repository at
    /// `bare_repo`. Panics when the path is relative, or not plain enough to go into a
    /// URL unescaped (spaces, `%`, `#`, `?`, non-UTF-8).
    pub fn url_for(&self, bare_repo: &Path) -> String {
        assert!(
            bare_repo.is_absolute(),
            "url_for needs an absolute path, got {}",
            bare_repo.display()
        );
        let path = bare_repo
            .to_str()
            .unwrap_or_else(|| panic!("{} is not UTF-8", bare_repo.display()));
        assert!(
            !path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "%#?\"'\\".contains(c)),
            "{path} cannot go into an ssh:// URL unescaped"
        );
        format!("ssh://{}@127.0.0.1:{}{path}", self.user, self.port)
    }

    /// What `sshd` printed on stderr so far (at `LogLevel ERROR`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let log = self.log();
            if !log.trim().is_empty() {
                eprintln!(
                    "[capstan-testkit] sshd on 127.0.0.1:{} printed:\n{log}",
                    self.port
                );
            }
        }
    }
}

/// Generate an ed25519 key pair without passphrase with `ssh-keygen`: the private key
/// at `path` (mode 0600) and the public key at `path.pub`. Panics when `ssh-keygen` is
/// missing or fails, or when `path` exists.
///
/// Use it for a key the server does not know, to test refused authentication.
pub fn generate_key(path: &Path) {
    assert!(!path.exists(), "{} already exists", path.display());
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", "ed25519", "-N", "", "-C", "capstan-test", "-f"])
        .arg(path);
    let out = process::try_run(cmd, None, TOOL_TIMEOUT).unwrap_or_else(|e| {
        panic!(
            "cannot run ssh-keygen ({e}); the SSH tests need openssh-client \
             (apt-get install openssh-client)"
        )
    });
    process::assert_success(&out, &format!("ssh-keygen -f {}", path.display()));
}

/// The public key next to the private key `key` (`key.pub`), as `TYPE BASE64`.
fn read_public_key(key: &Path) -> String {
    let mut name = key.as_os_str().to_owned();
    name.push(".pub");
    let text = std::fs::read_to_string(&name)
        .unwrap_or_else(|e| panic!("reading {}: {e}", Path::new(&name).display()));
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn find_sshd() -> PathBuf {
    let path = Path::new(SSHD);
    assert!(
        path.is_file(),
        "{SSHD} is missing; the SSH tests need a real OpenSSH server and are not skipped \
         (apt-get install openssh-server; scripts/test installs it)"
    );
    path.to_path_buf()
}

fn current_user() -> String {
    let mut cmd = Command::new("id");
    cmd.arg("-un");
    let out = process::run(cmd, None, TOOL_TIMEOUT);
    process::assert_success(&out, "id -un");
    let user = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!user.is_empty(), "id -un printed nothing");
    user
}

/// Paths go into `sshd_config` in double quotes, and `AuthorizedKeysFile` expands
/// `%` tokens: refuse what would not survive that.
fn check_config_path(dir: &Path) {
    let s = dir
        .to_str()
        .unwrap_or_else(|| panic!("temporary directory {} is not UTF-8", dir.display()));
    assert!(
        !s.chars().any(|c| c == '"' || c == '%' || c.is_control()),
        "temporary directory {s} cannot be written into an sshd_config (set TMPDIR)"
    );
}

fn sshd_config(dir: &Path, port: u16, user: &str) -> String {
    let p = |name: &str| dir.join(name).display().to_string();
    let mut c = format!(
        "ListenAddress 127.0.0.1:{port}\n\
         HostKey \"{host_key}\"\n\
         PidFile \"{pid}\"\n\
         AuthorizedKeysFile \"{authorized}\"\n\
         AllowUsers {user}\n\
         AuthenticationMethods publickey\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         HostbasedAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         UsePAM no\n\
         StrictModes no\n\
         UseDNS no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         PermitTTY no\n\
         X11Forwarding no\n\
         AllowTcpForwarding no\n\
         AllowAgentForwarding no\n\
         PermitUserEnvironment no\n\
         AcceptEnv GIT_PROTOCOL\n\
         LoginGraceTime 30\n\
         LogLevel ERROR\n",
        host_key = p("host_ed25519"),
        pid = p("sshd.pid"),
        authorized = p("authorized_keys"),
    );
    // Sessions get the PATH of the tests, so `git-upload-pack` is the git the tests
    // use (sshd's default PATH would do for /usr/bin and /usr/local/bin only).
    if let Some(path) = std::env::var_os("PATH").and_then(|p| p.into_string().ok())
        && !path.is_empty()
        && !path.chars().any(|c| c == '"' || c.is_control())
    {
        c.push_str(&format!("SetEnv \"PATH={path}\"\n"));
    }
    c
}

/// Validate the configuration with `sshd -t`. As root, sshd refuses to run without its
/// privilege separation directory; it is created (root-owned, 0755) when missing.
fn check_config(sshd: &Path, config: &Path) {
    const MISSING_PRIVSEP: &str = "Missing privilege separation directory: ";
    for _ in 0..2 {
        let mut cmd = Command::new(sshd);
        cmd.arg("-t").arg("-f").arg(config);
        let out = process::run(cmd, None, TOOL_TIMEOUT);
        if out.status.success() {
            return;
        }
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let Some(privsep) = stderr
            .lines()
            .find_map(|l| l.split_once(MISSING_PRIVSEP))
            .map(|(_, dir)| PathBuf::from(dir.trim()))
        else {
            panic!(
                "sshd -t refused {}: {}\n{stderr}\nsshd_config:\n{}",
                config.display(),
                out.status,
                std::fs::read_to_string(config).unwrap_or_default()
            );
        };
        create_privsep_dir(&privsep);
    }
    panic!(
        "sshd -t still refuses {} after creating its privilege separation directory",
        config.display()
    );
}

fn create_privsep_dir(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap_or_else(|e| {
        panic!(
            "sshd needs its privilege separation directory {} and it cannot be created: {e}",
            dir.display()
        )
    });
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod 0755 {}: {e}", dir.display()));
}

/// A port on 127.0.0.1 that was free a moment ago (bound with port 0 and released) and
/// that the user's `known_hosts` does not mention.
fn free_port() -> u16 {
    for _ in 0..50 {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("binding 127.0.0.1:0: {e}"));
        if !known_host(port) {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 without a known_hosts entry in 50 tries")
}

/// Whether the user's `known_hosts` holds a key for `[127.0.0.1]:port` (hashed or not).
fn known_host(port: u16) -> bool {
    let mut cmd = Command::new("ssh-keygen");
    cmd.arg("-F").arg(format!("[127.0.0.1]:{port}"));
    process::try_run(cmd, None, TOOL_TIMEOUT).is_ok_and(|out| out.status.success())
}

/// Wait until `port` answers with an SSH banner while `child` runs.
fn wait_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("sshd exited with {status}"));
        }
        match banner(addr) {
            Ok(line) if line.starts_with("SSH-2.0-") => {
                // A banner from a process that is not ours would be a port taken in
                // between; our sshd then exits with a bind error.
                return match child.try_wait() {
                    Ok(Some(status)) => Err(format!("sshd exited with {status}")),
                    _ => Ok(()),
                };
            }
            Ok(line) => last = format!("unexpected banner {line:?}"),
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "127.0.0.1:{port} gave no SSH banner within {READY_TIMEOUT:?} ({last})"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Connect, send a client identification (so sshd logs nothing about the probe) and
/// read the server's identification line.
fn banner(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"SSH-2.0-capstan-testkit-probe\r\n")?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 255 {
        match stream.read(&mut byte)? {
            0 => break,
            _ if byte[0] == b'\n' => break,
            _ => line.push(byte[0]),
        }
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lists_the_keys_and_the_port() {
        let c = sshd_config(Path::new("/tmp/x"), 2222, "alice");
        assert!(c.contains("ListenAddress 127.0.0.1:2222\n"), "{c}");
        assert!(c.contains("HostKey \"/tmp/x/host_ed25519\"\n"), "{c}");
        assert!(
            c.contains("AuthorizedKeysFile \"/tmp/x/authorized_keys\"\n"),
            "{c}"
        );
        assert!(c.contains("AllowUsers alice\n"), "{c}");
        assert!(c.contains("UsePAM no\n"), "{c}");
    }
}
