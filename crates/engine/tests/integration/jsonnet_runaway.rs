//! Jsonnet evaluations that never end: a test binary of its own, since the threads it
//! leaves running (jrsonnet cannot be interrupted) count against a process-wide limit
//! until the process exits.

use std::time::{Duration, Instant};

use capstan_engine::render::jsonnet::MAX_ABANDONED;
use capstan_engine::render::{self, JsonnetOptions, RenderError, RenderOptions, Scopes};
use capstan_engine::source::local;

#[tokio::test]
async fn runaway_evaluations_past_their_timeout_are_bounded_and_then_refused_at_once() {
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join("spin")).unwrap();
    std::fs::create_dir_all(repo.path().join("fine")).unwrap();
    std::fs::create_dir_all(repo.path().join("plain")).unwrap();
    // Two billion steps, no recursion: only the time limit stops the render.
    std::fs::write(
        repo.path().join("spin/loop.jsonnet"),
        "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' }, data: { n: std.toString(std.foldl(function(a, x) a + x, std.range(1, 2000000000), 0)) } }\n",
    )
    .unwrap();
    std::fs::write(
        repo.path().join("fine/cm.jsonnet"),
        "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'fine' } }\n",
    )
    .unwrap();
    std::fs::write(
        repo.path().join("plain/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\n",
    )
    .unwrap();
    let checkout = |path: &str| {
        let mut c = local::open(repo.path()).unwrap();
        c.path = path.into();
        c
    };
    let opts = RenderOptions {
        jsonnet: JsonnetOptions {
            timeout: Duration::from_millis(50),
            ..Default::default()
        },
        ..Default::default()
    };

    for _ in 0..MAX_ABANDONED {
        let err = render::render(&checkout("spin"), &opts, "ns", &Scopes::builtin())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                RenderError::Timeout {
                    tool: "jsonnet",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    let started = Instant::now();
    let err = render::render(&checkout("fine"), &opts, "ns", &Scopes::builtin())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "refused at once"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "fine: {MAX_ABANDONED} Jsonnet evaluations that ran past their time limit are still running; no other starts until they end"
        )
    );

    let objs = render::render(&checkout("plain"), &opts, "ns", &Scopes::builtin())
        .await
        .unwrap();
    assert_eq!(objs.len(), 1, "a source without Jsonnet still renders");
}
