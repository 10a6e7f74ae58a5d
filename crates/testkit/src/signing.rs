//! Keys to sign commits with, and what `git verify-commit` needs to check them: an
//! SSH key with an allowed-signers file, or an OpenPGP key (made by the real `gpg`)
//! with a keyring holding its public half.
//!
//! ```no_run
//! use capstan_testkit::signing::OpenPgpKey;
//! let dir = tempfile::tempdir().unwrap();
//! let key = OpenPgpKey::generate(dir.path(), None);
//! let mut verify = key.verify_command();
//! verify.args(["verify-commit", "HEAD"]);
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process;
use crate::repo::{AUTHOR_EMAIL, AUTHOR_NAME, git_command};

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// An ed25519 SSH signing key and the allowed-signers file naming it.
pub struct SshSigningKey {
    key: PathBuf,
    allowed_signers: PathBuf,
}

impl SshSigningKey {
    /// Generate `dir/signing_ed25519` (no passphrase) and `dir/allowed_signers` trusting
    /// it for `email`.
    pub fn generate(dir: &Path, email: &str) -> SshSigningKey {
        let key = dir.join("signing_ed25519");
        crate::ssh::generate_key(&key);
        let public = std::fs::read_to_string(key.with_extension("pub"))
            .or_else(|_| std::fs::read_to_string(format!("{}.pub", key.display())))
            .unwrap_or_else(|e| panic!("reading the public key of {}: {e}", key.display()));
        let public: Vec<&str> = public.split_whitespace().take(2).collect();
        let allowed_signers = dir.join("allowed_signers");
        std::fs::write(&allowed_signers, format!("{email} {}\n", public.join(" ")))
            .expect("writing allowed_signers");
        SshSigningKey {
            key,
            allowed_signers,
        }
    }

    /// The private key file.
    pub fn key(&self) -> &Path {
        &self.key
    }

    /// `git` set up to verify SSH signatures against the allowed-signers file.
    pub fn verify_command(&self) -> Command {
        let mut cmd = git_command();
        cmd.arg("-c").arg(format!(
            "gpg.ssh.allowedSignersFile={}",
            self.allowed_signers.display()
        ));
        cmd
    }
}

/// An OpenPGP key pair made by `gpg`: the armored secret key in a file (what a
/// signing Secret holds), and a keyring with the public key for verification.
pub struct OpenPgpKey {
    armored: PathBuf,
    fingerprint: String,
    verify_home: PathBuf,
}

impl OpenPgpKey {
    /// Generate an ed25519 signing key for the test identity (with `passphrase`, if
    /// given) under `dir`; panics when `gpg` is missing ("install gnupg").
    pub fn generate(dir: &Path, passphrase: Option<&str>) -> OpenPgpKey {
        let make_home = dir.join("gnupg-make");
        let verify_home = dir.join("gnupg-verify");
        for home in [&make_home, &verify_home] {
            std::fs::create_dir_all(home).expect("creating a GNUPGHOME");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700))
                .expect("chmod 700 GNUPGHOME");
        }
        let pass = passphrase.unwrap_or("");
        let uid = format!("{AUTHOR_NAME} <{AUTHOR_EMAIL}>");
        let gpg = |home: &Path, args: &[&str], stdin: Option<&[u8]>| {
            let mut cmd = Command::new("gpg");
            cmd.env("GNUPGHOME", home)
                .args([
                    "--batch",
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase",
                    pass,
                ])
                .args(args);
            let out = process::try_run(cmd, stdin, TOOL_TIMEOUT).unwrap_or_else(|e| {
                panic!("cannot run gpg ({e}); the signing tests need it (apt-get install gnupg)")
            });
            process::assert_success(&out, &format!("gpg {}", args.join(" ")));
            out
        };
        gpg(
            &make_home,
            &["--quick-gen-key", &uid, "ed25519", "sign", "never"],
            None,
        );
        let list = gpg(&make_home, &["--with-colons", "--list-secret-keys"], None);
        let text = String::from_utf8_lossy(&list.stdout);
        let fingerprint = text
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|r| r.split(':').find(|f| f.len() >= 40))
            .expect("gpg listed no fingerprint")
            .to_string();
        let secret = gpg(
            &make_home,
            &["--armor", "--export-secret-keys", &fingerprint],
            None,
        );
        let armored = dir.join("signing.asc");
        std::fs::write(&armored, &secret.stdout).expect("writing the armored key");
        let public = gpg(&make_home, &["--armor", "--export", &fingerprint], None);
        gpg(&verify_home, &["--import"], Some(&public.stdout));
        gpg(
            &verify_home,
            &["--import-ownertrust"],
            Some(format!("{fingerprint}:6:\n").as_bytes()),
        );
        // gpg-agent of the key-making home is not needed any more
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &make_home)
            .args(["--kill", "gpg-agent"])
            .status();
        OpenPgpKey {
            armored,
            fingerprint,
            verify_home,
        }
    }

    /// The armored secret key file.
    pub fn armored(&self) -> &Path {
        &self.armored
    }

    /// The key's fingerprint.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// `git` set up to verify signatures with the public key's keyring.
    pub fn verify_command(&self) -> Command {
        let mut cmd = git_command();
        cmd.env("GNUPGHOME", &self.verify_home);
        cmd
    }
}

impl Drop for OpenPgpKey {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.verify_home)
            .args(["--kill", "gpg-agent"])
            .status();
    }
}
