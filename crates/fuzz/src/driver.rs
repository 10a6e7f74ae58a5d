//! The driver: runs one target over generated inputs, times every input, and reports.
//!
//! An input passes when the target returns (its `Ok` or a clean `Err`, the driver does
//! not look) within [`LIMIT`]. A panic or a slow input fails the run: proptest shrinks
//! it to a small input, prints it and records it under `proptest-regressions/`. An input
//! that never returns is caught by a watchdog thread, which prints it and aborts the
//! process after [`HANG`] (the test binary cannot recover a thread stuck in a loop).
//!
//! The number of inputs is `CAPSTAN_FUZZ_CASES` (default [`CI_CASES`]); the seed is
//! `CAPSTAN_FUZZ_SEED` (default: fixed per target, so CI runs are reproducible).

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{
    Config, FileFailurePersistence, RngAlgorithm, TestCaseError, TestRng, TestRunner,
};

/// How long one input may take: a second in an optimized build (the documented long
/// run, `--release`), ten in a debug build, whose code runs about ten times slower.
pub const LIMIT: Duration = if cfg!(debug_assertions) {
    Duration::from_secs(10)
} else {
    Duration::from_secs(1)
};

/// How long an input may run before the watchdog aborts the process.
pub const HANG: Duration = Duration::from_secs(60);

/// Inputs per target in CI mode (`cargo test`), when `CAPSTAN_FUZZ_CASES` is unset.
pub const CI_CASES: u32 = 2_000;

/// What one run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target's name.
    pub target: &'static str,
    /// Inputs run.
    pub inputs: u64,
    /// Wall time of the whole run (generation included).
    pub elapsed: Duration,
    /// The slowest input's time.
    pub slowest: Duration,
    /// The slowest input, as `Debug` prints it, cut to 300 characters.
    pub slowest_input: String,
    /// The seed.
    pub seed: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fuzz target={} inputs={} time={:.1}s slowest={:.3}ms panics=0 seed={} slowest_input={}",
            self.target,
            self.inputs,
            self.elapsed.as_secs_f64(),
            self.slowest.as_secs_f64() * 1e3,
            self.seed,
            self.slowest_input,
        )
    }
}

/// `CAPSTAN_FUZZ_CASES`, or [`CI_CASES`].
pub fn cases() -> u32 {
    std::env::var("CAPSTAN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(CI_CASES)
}

fn seed(target: &str) -> u64 {
    std::env::var("CAPSTAN_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            // FNV-1a of the name: a fixed seed per target
            target.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
        })
}

fn cut(s: String) -> String {
    if s.chars().count() <= 300 {
        s
    } else {
        s.chars().take(300).collect::<String>() + "…"
    }
}

/// Run `target` over [`cases`] inputs of `strategy`; panics (failing the test) on the
/// first input that panics or takes longer than [`LIMIT`], after shrinking it.
pub fn run<S>(target: &'static str, strategy: S, check: impl Fn(&S::Value)) -> Report
where
    S: Strategy,
    S::Value: Clone + Debug + Send + 'static,
{
    let cases = cases();
    let seed = seed(target);
    let config = Config {
        cases,
        // every input counts; shrinking a failure may take a while, but is bounded
        max_shrink_iters: 10_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(Box::leak(
            format!("proptest-regressions/{target}.txt").into_boxed_str(),
        )))),
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed));
    let mut runner = TestRunner::new_with_rng(config, rng);

    let current: Current<S::Value> = Arc::new(Mutex::new(None));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let current = Arc::clone(&current);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let guard = current.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((start, input)) = guard.as_ref()
                    && start.elapsed() > HANG
                {
                    eprintln!(
                        "fuzz target={target}: an input has run for {:?} (a hang): {input:?}",
                        start.elapsed()
                    );
                    std::process::abort();
                }
            }
        })
    };

    let stats: Mutex<(u64, Duration, String)> = Mutex::new((0, Duration::ZERO, String::new()));
    let started = Instant::now();
    let result = runner.run(&strategy, |input| {
        *current.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), input.clone()));
        let watched = Watched(&current);
        let t = Instant::now();
        check(&input);
        let took = t.elapsed();
        drop(watched);
        let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
        s.0 += 1;
        if took > s.1 {
            s.1 = took;
            s.2 = cut(format!("{input:?}"));
        }
        if took > LIMIT {
            return Err(TestCaseError::fail(format!(
                "took {took:?}, more than {LIMIT:?}"
            )));
        }
        Ok(())
    });
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    let (inputs, slowest, slowest_input) = stats.into_inner().unwrap_or_else(|p| p.into_inner());
    let report = Report {
        target,
        inputs,
        elapsed: started.elapsed(),
        slowest,
        slowest_input,
        seed,
    };
    if let Err(e) = result {
        panic!("fuzz target={target} seed={seed}: {e}");
    }
    eprintln!("{report}");
    report
}

/// The input being checked and since when, for the watchdog.
type Current<T> = Arc<Mutex<Option<(Instant, T)>>>;

/// Clears the watchdog's input when the check returns or panics.
struct Watched<'a, T>(&'a Mutex<Option<T>>);

impl<T> Drop for Watched<'_, T> {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&seed.wrapping_add(i as u64).to_le_bytes());
    }
    out
}
