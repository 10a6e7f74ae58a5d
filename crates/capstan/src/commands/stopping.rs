//! How the long-running commands (`up`, `controller`, `apiserver`) stop, and how
//! `capstan up` keeps a second process off its directory.
//!
//! - The first SIGTERM or SIGINT asks the command to stop in order (new work stops,
//!   the HTTP server finishes its requests, the controller's tasks end, the embedded
//!   API server last).
//! - A second one exits at once (status 130).
//! - Whatever happens meanwhile — an API server that is gone, a fetch that hangs —
//!   the process exits [`BOUND`] after the first signal (status 1, saying so): a
//!   thread of its own watches the time, so a busy runtime cannot delay it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

/// How long stopping may take before the process exits anyway.
pub const BOUND: Duration = Duration::from_secs(10);

/// The process's stop request, listening from the moment it is made: a signal that
/// arrives while the command is still starting is not lost, and the command stops as
/// soon as it looks.
pub struct Stopping {
    requested: tokio::sync::watch::Receiver<bool>,
}

impl Stopping {
    /// Listen for SIGTERM and SIGINT from now on (call it first thing).
    pub fn listen() -> Stopping {
        use tokio::signal::unix::{SignalKind, signal};
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (term, int) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        let (mut term, mut int) = match (term, int) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("warning: no signal handlers ({e}): this process stops only when killed");
                return Stopping { requested: rx };
            }
        };
        tokio::spawn(async move {
            let which = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            eprintln!(
                "{which}: stopping (a second signal exits at once; exiting anyway in {}s)",
                BOUND.as_secs()
            );
            let _ = tx.send(true);
            std::thread::spawn(|| {
                std::thread::sleep(BOUND);
                eprintln!(
                    "error: did not stop within {}s of the signal; exiting",
                    BOUND.as_secs()
                );
                std::process::exit(1);
            });
            let again = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            eprintln!("{again} again: exiting now");
            std::process::exit(130);
        });
        Stopping { requested: rx }
    }

    /// Completes once a stop has been asked for (at once if it already was).
    pub async fn requested(&self) {
        let mut rx = self.requested.clone();
        if rx.wait_for(|asked| *asked).await.is_err() {
            // no handlers: never
            std::future::pending::<()>().await;
        }
    }
}

/// Take `DIR/lock` for as long as the process lives: a second `capstan up` on `dir`
/// is refused at once, naming the process that has it. The lock is the kernel's
/// (`flock`), released when the process ends however it ends, so a killed process
/// leaves no stale lock behind.
pub fn lock_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("lock");
    let mut file: File = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            bail!(
                "{} is in use by another capstan up{}: stop it first, or give this one its own --dir",
                dir.display(),
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                }
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .with_context(|| format!("writing {}", path.display()))?;
    // held until the process exits, not until this command returns
    std::mem::forget(file);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_directory_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        lock_dir(dir.path()).unwrap();
        // flock locks belong to the open file: a second open in this process conflicts too
        let e = lock_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("in use by another capstan up"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
    }
}
