//! OpenPGP signing: a keyring of its own per key, made with the real `gpg`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{WriteError, write_private_file};
use crate::source::git::GitCache;

/// A keyring of its own for an OpenPGP signing key (imported once), and the key's
/// fingerprint. A passphrase is handed to gpg through a file only its owner can read.
pub(super) fn keyring(
    cache: &GitCache,
    key: &Path,
    passphrase: Option<&str>,
    url: &str,
) -> Result<(PathBuf, String), WriteError> {
    use sha2::Digest;
    let signing_err = |message: String| WriteError::Signing {
        url: url.to_string(),
        key: key.display().to_string(),
        message,
    };
    let armored = std::fs::read(key).map_err(|e| signing_err(format!("reading the key: {e}")))?;
    let digest = hex::encode(&sha2::Sha256::digest(&armored)[..8]);
    let home = cache.root().join("gnupg").join(digest);
    let marker = home.join("capstan-fingerprint");
    if let Ok(fpr) = std::fs::read_to_string(&marker) {
        return Ok((home, fpr.trim().to_string()));
    }
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&home)
            .map_err(|e| signing_err(format!("creating its keyring: {e}")))?;
    }
    let mut conf = String::from("batch\nno-tty\npinentry-mode loopback\n");
    if let Some(p) = passphrase {
        let file = home.join("passphrase");
        write_private_file(&file, p).map_err(|e| signing_err(format!("{e}")))?;
        conf.push_str(&format!("passphrase-file {}\n", file.display()));
    }
    std::fs::write(home.join("gpg.conf"), conf)
        .map_err(|e| signing_err(format!("writing gpg.conf: {e}")))?;
    std::fs::write(home.join("gpg-agent.conf"), "allow-loopback-pinentry\n")
        .map_err(|e| signing_err(format!("writing gpg-agent.conf: {e}")))?;
    let gpg = |args: &[&str]| {
        Command::new("gpg")
            .env("GNUPGHOME", &home)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    signing_err("gpg is not installed (it signs OpenPGP commits)".into())
                }
                _ => signing_err(e.to_string()),
            })
    };
    let import = gpg(&[
        "--import",
        &super::runner::absolute(key).display().to_string(),
    ])?;
    if !import.status.success() {
        return Err(signing_err(format!(
            "importing the key: {}",
            String::from_utf8_lossy(&import.stderr).trim()
        )));
    }
    let list = gpg(&["--with-colons", "--list-secret-keys"])?;
    let text = String::from_utf8_lossy(&list.stdout);
    let fingerprint = text
        .lines()
        .skip_while(|l| !l.starts_with("sec:"))
        .find_map(|l| l.strip_prefix("fpr:"))
        .and_then(|rest| rest.split(':').find(|f| f.len() >= 40))
        .map(str::to_string)
        .ok_or_else(|| signing_err("the file holds no OpenPGP secret key".into()))?;
    std::fs::write(&marker, &fingerprint)
        .map_err(|e| signing_err(format!("writing its keyring: {e}")))?;
    Ok((home, fingerprint))
}
