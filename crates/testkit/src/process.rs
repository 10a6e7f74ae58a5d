//! Running child processes bounded in time.
//!
//! A test must never hang on a child process: [`run`] kills the child once its
//! deadline passes and returns what it printed, with a note on stderr.

use std::io::{self, Read, Write};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The default bound for one child process (git, kubectl, helm) in tests.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Run `cmd` to completion with `stdin` (or `/dev/null`), capturing stdout and stderr.
///
/// The child is killed when it runs longer than `timeout`; its status is then not
/// successful and stderr ends with a line saying so. Panics when the program cannot be
/// started at all, naming it.
pub fn run(cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let program = cmd.get_program().to_owned();
    try_run(cmd, stdin, timeout).unwrap_or_else(|e| panic!("cannot run {program:?}: {e}"))
}

/// Like [`run`], but an error instead of a panic when the program cannot be started.
pub fn try_run(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> io::Result<Output> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;

    let writer = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => {
            let data = data.to_vec();
            Some(thread::spawn(move || {
                // A child that exits without reading all its input is not an error here.
                let _ = pipe.write_all(&data);
            }))
        }
        _ => None,
    };
    let stdout = read_in_thread(child.stdout.take());
    let stderr = read_in_thread(child.stderr.take());

    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                timed_out = true;
                break child.wait()?;
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                let _ = child.kill();
                return Err(e);
            }
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = stdout.join().unwrap_or_default();
    let mut stderr = stderr.join().unwrap_or_default();
    if timed_out {
        let note = format!(
            "\n[capstan-testkit] {:?} killed after {timeout:?}\n",
            cmd.get_program()
        );
        stderr.extend_from_slice(note.as_bytes());
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn read_in_thread<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Panic with the command, status, stdout and stderr unless `out` succeeded.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a process printed on stdout, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What a process printed on stderr, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Its stdout, after asserting that it succeeded (else both streams are shown).
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed with {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_stdin() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "cat; echo err >&2"]);
        let out = run(cmd, Some(b"hello"), Duration::from_secs(10));
        assert!(out.status.success());
        assert_eq!(out.stdout, b"hello");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn kills_after_timeout() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let start = Instant::now();
        let out = run(cmd, None, Duration::from_millis(200));
        assert!(!out.status.success());
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(String::from_utf8_lossy(&out.stderr).contains("killed after"));
    }
}
