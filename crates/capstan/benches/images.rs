//! Benchmarks of the Git write-back.
//!
//! 1. **Image automation at 100 Applications**: one environment repository, 100
//!    Applications each with its own image, ImageRepository and ImagePolicy, one
//!    ImageUpdate. New tags for all 100 images are pushed to the registry; then every
//!    ImageRepository is asked to scan at once (the `capstan.dev/refresh` annotation,
//!    what a registry webhook does). Measured: from that moment to the one pushed
//!    commit, and to every Application synced at it. Argo CD Image Updater's users
//!    report ~15 minutes for ~90 Applications (argocd-image-updater #1572).
//! 2. **`capstan set-image` on a repository of 2,000 manifests**: one image used in one
//!    file, and one used in every file; in a directory (edit only) and as a commit
//!    pushed to a bare repository (fetch, edit, commit, push).
//!
//! Real parts: Debian's `docker-registry` with the images pushed by the bench, the
//! embedded API server and `capstan controller` as separate release processes, a bare
//! Git repository on disk (`file://`).
//!
//! Run: `cargo bench -p capstan --bench images` (env: BENCH_IMAGE_APPS, default 100;
//! BENCH_MANIFESTS, default 2000; BENCH_ROUNDS, default 5).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capstan_testkit::{RegistryAuth, RegistryServer};

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn capstan() -> Command {
    Command::new(env!("CARGO_BIN_EXE_capstan"))
}

fn run_ok(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com");
    run_ok(cmd, &format!("git {}", args.join(" ")))
}

/// A bare repository at `bare` holding `files` (path, text), committed on `main`.
fn bare_repo(bare: &Path, files: impl Iterator<Item = (String, String)>) {
    let work = bare.with_extension("seed");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    for (path, text) in files {
        let p = work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "seed"]);
    let out = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&work)
        .arg(bare)
        .output()
        .unwrap();
    assert!(out.status.success());
}

fn head(bare: &Path) -> String {
    git(bare, &["rev-parse", "main"]).trim().to_string()
}

fn deployment(name: &str, image: &str, marker: Option<&str>, sidecar: Option<&str>) -> String {
    let marker = marker
        .map(|m| format!(" # {{\"$imagepolicy\": \"{m}\"}}"))
        .unwrap_or_default();
    let sidecar = sidecar
        .map(|s| format!("      - name: proxy\n        image: {s}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  labels:\n    app: {name}   # the app\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: {name}\n        image: {image}{marker}\n        ports:\n        - containerPort: 8080\n{sidecar}"
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

// ---------------------------------------------------------------------------------

fn start_apiserver(kubeconfig: &Path) -> Process {
    let mut child = capstan()
        .args(["apiserver", "--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    std::thread::spawn(move || for _ in reader.lines() {});
    Process(child)
}

fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .env("HOME", home)
        .args(args);
    run_ok(cmd, &format!("kubectl {}", args.join(" ")))
}

fn automation(n: usize) {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let kubeconfig = work.path().join("kubeconfig");
    eprintln!("[automation {n}] registry, {n} images at 1.0.0");
    let registry = RegistryServer::start(RegistryAuth::Anonymous);
    let names: Vec<String> = (0..n).map(|i| format!("app-{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for chunk in refs.chunks(25) {
        for name in chunk {
            registry.push_image(name, "1.0.0");
        }
    }
    let bare = work.path().join("env.git");
    bare_repo(
        &bare,
        names.iter().map(|a| {
            (
                format!("apps/{a}/deploy.yaml"),
                deployment(
                    a,
                    &format!("{}:1.0.0", registry.image(a)),
                    Some(&format!("fleet:{a}")),
                    None,
                ),
            )
        }),
    );
    let url = format!("file://{}", bare.display());
    let _apiserver = start_apiserver(&kubeconfig);
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: fleet\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench\n",
    );
    for a in &names {
        yaml.push_str(&format!(
            "---\napiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: {a}\n  namespace: fleet\nspec:\n  source:\n    repoURL: {url}\n    targetRevision: main\n    path: apps/{a}\n  destination:\n    namespace: bench\n  interval: 1h\n  syncPolicy:\n    automated:\n      prune: true\n---\napiVersion: capstan.dev/v1alpha1\nkind: ImageRepository\nmetadata:\n  name: {a}\n  namespace: fleet\nspec:\n  image: {image}\n  insecure: true\n  interval: 1h\n---\napiVersion: capstan.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: {a}\n  namespace: fleet\nspec:\n  imageRepositoryRef: {{name: {a}}}\n  policy:\n    semver: {{range: \">=1.0.0\"}}\n",
            image = registry.image(a)
        ));
    }
    yaml.push_str(&format!(
        "---\napiVersion: capstan.dev/v1alpha1\nkind: ImageUpdate\nmetadata:\n  name: fleet\n  namespace: fleet\nspec:\n  git:\n    repoURL: {url}\n    branch: main\n  update:\n    path: apps\n  interval: 1h\n"
    ));
    let file = work.path().join("fleet.yaml");
    std::fs::write(&file, yaml).unwrap();
    let mut install = capstan();
    install.args(["install", "--kubeconfig"]).arg(&kubeconfig);
    run_ok(install, "capstan install");
    kubectl(
        &kubeconfig,
        &home,
        &["apply", "--server-side", "-f", file.to_str().unwrap()],
    );
    let state = work.path().join("state");
    let log = std::fs::File::create(work.path().join("controller.log")).unwrap();
    let _controller = Process(
        capstan()
            .args(["controller", "--kubeconfig"])
            .env("CAPSTAN_LISTEN", "127.0.0.1:0")
            .arg(&kubeconfig)
            .arg("--state-dir")
            .arg(&state)
            .args(["--image-scan-interval", "1h"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let first = head(&bare);
    let wait = |what: &str, limit: Duration, mut check: Box<dyn FnMut() -> bool + '_>| {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting for {what}\n{}",
            std::fs::read_to_string(work.path().join("controller.log")).unwrap_or_default()
        );
    };
    let all_at = |rev: &str| {
        let out = kubectl(
            &kubeconfig,
            &home,
            &[
                "get",
                "applications",
                "-n",
                "fleet",
                "-o",
                "jsonpath={range .items[*]}{.status.sync.status}/{.status.sync.revision}{\"\\n\"}{end}",
            ],
        );
        out.lines()
            .filter(|l| *l == format!("Synced/{rev}"))
            .count()
    };
    eprintln!("[automation {n}] waiting for the first sync and the first choice of every policy");
    wait(
        "every Application synced at the first commit",
        Duration::from_secs(300),
        Box::new(|| all_at(&first) == n),
    );
    wait(
        "every policy at 1.0.0",
        Duration::from_secs(300),
        Box::new(|| {
            kubectl(
                &kubeconfig,
                &home,
                &[
                    "get",
                    "imagepolicies",
                    "-n",
                    "fleet",
                    "-o",
                    "jsonpath={range .items[*]}{.status.latestRef.tag}{\"\\n\"}{end}",
                ],
            )
            .lines()
            .filter(|l| *l == "1.0.0")
            .count()
                == n
        }),
    );
    eprintln!("[automation {n}] pushing 1.1.0 of every image");
    for a in &refs {
        registry.push_image(a, "1.1.0");
    }
    eprintln!("[automation {n}] asking every ImageRepository to scan");
    let t0 = Instant::now();
    kubectl(
        &kubeconfig,
        &home,
        &[
            "annotate",
            "imagerepositories",
            "-n",
            "fleet",
            "--all",
            "--overwrite",
            "capstan.dev/refresh=bench",
        ],
    );
    let annotated = t0.elapsed();
    wait(
        "the pushed commit",
        Duration::from_secs(600),
        Box::new(|| head(&bare) != first),
    );
    let to_commit = t0.elapsed();
    let commit = head(&bare);
    wait(
        "every Application synced at it",
        Duration::from_secs(600),
        Box::new(|| all_at(&commit) == n),
    );
    let to_synced = t0.elapsed();
    let commits = git(&bare, &["rev-list", "--count", &format!("{first}..main")]);
    let changed = git(&bare, &["diff", "--stat", &first, "main"]);
    let files_changed = changed.lines().count().saturating_sub(1);
    println!("\n## image automation, {n} Applications");
    println!(
        "| Applications | annotate (kubectl) | scans → pushed commit | scans → all synced | commits | files changed |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {n} | {} | {:.2} s | {:.2} s | {} | {files_changed} |",
        ms(annotated),
        to_commit.as_secs_f64(),
        to_synced.as_secs_f64(),
        commits.trim()
    );
    assert_eq!(commits.trim(), "1", "one commit for all");
    assert_eq!(files_changed, n);
}

// ---------------------------------------------------------------------------------

fn set_image(n: usize, rounds: usize) {
    let work = tempfile::tempdir().unwrap();
    eprintln!("[set-image {n}] writing {n} manifests");
    let files: Vec<(String, String)> = (0..n)
        .map(|i| {
            let name = format!("app-{i:04}");
            (
                format!("apps/{name}/deploy.yaml"),
                deployment(
                    &name,
                    &format!("registry.example.com/team/{name}:1.0.0"),
                    None,
                    Some("registry.example.com/shared/proxy:1.0.0"),
                ),
            )
        })
        .collect();
    let dir = work.path().join("dir");
    for (p, t) in &files {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, t).unwrap();
    }
    let bare = work.path().join("env.git");
    bare_repo(&bare, files.clone().into_iter());
    let url = format!("file://{}", bare.display());
    let cache = work.path().join("cache");
    let last = format!("registry.example.com/team/app-{:04}", n - 1);

    let time = |args: Vec<String>| -> Duration {
        let t = Instant::now();
        let mut cmd = capstan();
        cmd.args(&args).env("CAPSTAN_CACHE_DIR", &cache);
        run_ok(cmd, &format!("capstan {}", args.join(" ")));
        t.elapsed()
    };
    let mut rows = Vec::new();
    for (what, image, files_edited) in [
        ("one image in 1 file", last.clone(), 1usize),
        (
            "one image in every file",
            "registry.example.com/shared/proxy".to_string(),
            n,
        ),
    ] {
        let mut local = Vec::new();
        let mut repo_cold = Duration::ZERO;
        let mut repo_warm = Vec::new();
        for r in 0..rounds {
            let tag = format!("2.0.{r}");
            local.push(time(vec![
                "set-image".into(),
                dir.display().to_string(),
                format!("{image}:{tag}"),
            ]));
        }
        for r in 0..rounds {
            let tag = format!("3.0.{r}");
            let d = time(vec![
                "set-image".into(),
                format!("{image}:{tag}"),
                "--repo".into(),
                url.clone(),
                "--branch".into(),
                "main".into(),
            ]);
            if r == 0 && what.starts_with("one image in 1") {
                repo_cold = d;
            } else {
                repo_warm.push(d);
            }
        }
        rows.push((
            what,
            files_edited,
            median(local),
            repo_cold,
            median(repo_warm),
        ));
    }
    let _ = std::io::stdout().flush();
    println!("\n## capstan set-image, {n} manifest files ({rounds} rounds, medians)");
    println!(
        "| image used in | fields edited | directory (edit only) | repository, first run (clone) | repository, later runs (fetch, edit, commit, push) |"
    );
    println!("|---|---|---|---|---|");
    for (what, fields, local, cold, warm) in rows {
        let cold = if cold.is_zero() {
            "—".to_string()
        } else {
            ms(cold)
        };
        println!(
            "| {what} | {fields} | {} | {cold} | {} |",
            ms(local),
            ms(warm)
        );
    }
}

fn main() {
    let n_apps: usize = std::env::var("BENCH_IMAGE_APPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let n_files: usize = std::env::var("BENCH_MANIFESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "set-image" {
        set_image(n_files, rounds.max(2));
    }
    if only.is_empty() || only == "automation" {
        automation(n_apps);
    }
}
