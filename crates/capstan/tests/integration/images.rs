//! End-to-end image automation: Debian's `docker-registry` with images the tests push,
//! a git server that accepts pushes, the embedded API server and real `capstan
//! controller` processes — all on loopback, started by the test.
//!
//! A new tag in the registry → the ImagePolicy chooses it → one commit in the
//! environment repository → the controller syncs it → the Deployment runs the image.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use capstan_testkit::{GitServer, RegistryAuth, RegistryServer, TestCluster, TestRepo};
use serde_json::Value;

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Env {
    cluster: TestCluster,
    registry: RegistryServer,
    server: GitServer,
    repo: TestRepo,
    _root: tempfile::TempDir,
    state: tempfile::TempDir,
}

fn deployment(name: &str, image: &str, marker: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: {name}\n        image: {image} # {{\"$imagepolicy\": \"{marker}\"}}\n"
    )
}

impl Env {
    fn new(apps: &[&str]) -> Env {
        let registry = RegistryServer::start(RegistryAuth::Anonymous);
        let root = tempfile::tempdir().unwrap();
        let repo = TestRepo::create(root.path(), "env.git");
        for app in apps {
            registry.push_image(app, "1.0.0");
            repo.write(
                format!("apps/{app}/deploy.yaml"),
                deployment(
                    app,
                    &format!("{}:1.0.0", registry.image(app)),
                    &format!("apps:{app}"),
                ),
            );
        }
        repo.commit("apps at 1.0.0");
        let server = GitServer::start(root.path(), None).unwrap();
        let cluster = TestCluster::start();
        // the CRDs first, so the test's objects can be applied before a controller runs
        let mut install = Command::new(env!("CARGO_BIN_EXE_capstan"));
        install
            .args(["install", "--kubeconfig"])
            .arg(cluster.kubeconfig_path());
        let out = capstan_testkit::process::run(install, None, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n");
        Env {
            cluster,
            registry,
            server,
            repo,
            _root: root,
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn controller(&self, name: &str) -> Controller {
        let state = self.state.path().join(name);
        std::fs::create_dir_all(&state).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
        cmd.arg("controller")
            // side by side with other tests: a free port for the server
            .env("CAPSTAN_LISTEN", "127.0.0.1:0")
            .arg("--kubeconfig")
            .arg(self.cluster.kubeconfig_path())
            .arg("--state-dir")
            .arg(&state)
            .args([
                "--identity",
                name,
                "--image-scan-interval",
                "2s",
                "--image-update-settle",
                "200ms",
            ])
            .env("CAPSTAN_LOG", "capstan_controller=info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.state.path().join(format!("{name}.log"))).unwrap(),
            ));
        Controller(cmd.spawn().expect("capstan controller starts"))
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.state.path()).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                out.push_str(&format!(
                    "--- {}\n{}",
                    e.path().display(),
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                ));
            }
        }
        out
    }

    fn eventually(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}\n{}",
            self.logs()
        );
    }

    /// An Application per app, an ImageRepository and semver ImagePolicy per image, and
    /// one ImageUpdate writing setter markers under `apps/`.
    fn automate(&self, apps: &[&str], update_extra: &str) {
        let mut yaml = String::new();
        for app in apps {
            yaml.push_str(&format!(
                "---\napiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: {app}\n  namespace: apps\nspec:\n  source:\n    repoURL: {url}\n    targetRevision: main\n    path: apps/{app}\n  destination:\n    namespace: web\n  interval: 1h\n  syncPolicy:\n    automated:\n      prune: true\n---\napiVersion: capstan.dev/v1alpha1\nkind: ImageRepository\nmetadata:\n  name: {app}\n  namespace: apps\nspec:\n  image: {image}\n  insecure: true\n---\napiVersion: capstan.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: {app}\n  namespace: apps\nspec:\n  imageRepositoryRef: {{name: {app}}}\n  policy:\n    semver: {{range: \">=1.0.0\"}}\n",
                url = self.server.url("env.git"),
                image = self.registry.image(app),
            ));
        }
        yaml.push_str(&format!(
            "---\napiVersion: capstan.dev/v1alpha1\nkind: ImageUpdate\nmetadata:\n  name: env\n  namespace: apps\nspec:\n  git:\n    repoURL: {}\n    branch: main\n    commit:\n      author: {{name: Capstan Bot, email: bot@capstan.invalid}}\n      messageTemplate: 'Update {{{{ images | join(\", \") }}}}'\n  update:\n    path: apps\n  interval: 3s\n{update_extra}",
            self.server.url("env.git")
        ));
        self.cluster.apply(&yaml);
    }

    fn get(&self, kind: &str, name: &str) -> Value {
        serde_json::from_str(
            &self
                .cluster
                .kubectl_ok(&["get", kind, name, "-n", "apps", "-o", "json"]),
        )
        .unwrap()
    }

    fn running_image(&self, app: &str) -> String {
        let out = self.cluster.kubectl(&[
            "get",
            "deployment",
            app,
            "-n",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn log(&self) -> Vec<String> {
        self.repo.git(&["fetch", "-q", "origin"]);
        self.repo
            .git(&["log", "--format=%s", "origin/main"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn capstan(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
        cmd.args(args)
            .arg("--kubeconfig")
            .arg(self.cluster.kubeconfig_path())
            .env("CAPSTAN_CACHE_DIR", self.state.path().join("cli-cache"))
            .env_remove("CAPSTAN_GIT_PASSWORD");
        capstan_testkit::process::run(cmd, None, Duration::from_secs(120))
    }
}

fn cond<'a>(o: &'a Value, ty: &str) -> Option<&'a Value> {
    o.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

#[test]
fn a_new_tag_ends_in_one_commit_and_the_deployment_runs_it() {
    let e = Env::new(&["web"]);
    let _c = e.controller("a");
    e.automate(&["web"], "");
    let image = e.registry.image("web");
    e.eventually("web 1.0.0 deployed", Duration::from_secs(60), || {
        e.running_image("web") == format!("{image}:1.0.0")
    });
    e.eventually("the policy chose 1.0.0", Duration::from_secs(30), || {
        e.get("imagepolicies", "web")["status"]["latestRef"]["tag"] == "1.0.0"
    });
    assert_eq!(e.log(), ["apps at 1.0.0"], "nothing to write at first");

    let digest = e.registry.push_image("web", "1.1.0");
    e.eventually("web 1.1.0 deployed", Duration::from_secs(60), || {
        e.running_image("web") == format!("{image}:1.1.0")
    });
    let log = e.log();
    assert_eq!(
        log,
        [format!("Update {image}:1.1.0"), "apps at 1.0.0".to_string()]
    );
    e.repo.git(&["pull", "-q", "--ff-only", "origin", "main"]);
    assert_eq!(
        std::fs::read_to_string(e.repo.work_path().join("apps/web/deploy.yaml")).unwrap(),
        deployment("web", &format!("{image}:1.1.0"), "apps:web"),
        "only the image changed, the marker stayed"
    );
    let who = e.repo.git(&["log", "-1", "--format=%an <%ae>"]);
    assert_eq!(who.trim(), "Capstan Bot <bot@capstan.invalid>");

    // the statuses say what happened
    let repo = e.get("imagerepositories", "web");
    assert_eq!(repo["status"]["lastScanResult"]["tagCount"], 2);
    assert_eq!(cond(&repo, "Ready").unwrap()["status"], "True");
    let policy = e.get("imagepolicies", "web");
    assert_eq!(policy["status"]["latestRef"]["tag"], "1.1.0");
    assert_eq!(policy["status"]["observedPreviousRef"]["tag"], "1.0.0");
    let update = e.get("imageupdates", "env");
    let head = e.repo.rev_parse("origin/main");
    assert_eq!(update["status"]["lastPushCommit"], head.as_str());
    assert_eq!(
        update["status"]["written"]["web"]["image"],
        format!("{image}:1.1.0")
    );
    let _ = digest;

    // the audit log and an Event name the policy, old → new, and the commit
    let audit: Value = serde_json::from_str(&e.cluster.kubectl_ok(&[
        "get",
        "auditrecords",
        "-n",
        "apps",
        "-o",
        "json",
    ]))
    .unwrap();
    let record = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["spec"]["action"] == "image-update")
        .expect("an image-update record");
    assert_eq!(record["spec"]["toRevision"], head.as_str());
    assert_eq!(record["spec"]["application"], "apps/env");
    let details = record["spec"]["details"].as_str().unwrap();
    assert!(
        details.contains(&format!(
            "web: spec.template.spec.containers[name=web].image {image}:1.0.0 -> {image}:1.1.0"
        )),
        "{details}"
    );
    let events = e.cluster.kubectl_ok(&[
        "get",
        "events",
        "-n",
        "apps",
        "--field-selector",
        "involvedObject.kind=ImageUpdate",
        "-o",
        "json",
    ]);
    assert!(events.contains("ImageUpdated"), "{events}");

    // the sync that followed is in the Application's history
    let app = e.get("applications", "web");
    assert_eq!(app["status"]["sync"]["revision"], head.as_str());
    assert_eq!(app["status"]["history"][0]["trigger"], "image-update");
}

#[test]
fn new_tags_of_many_images_share_one_commit() {
    let apps = ["api", "cart", "web"];
    let e = Env::new(&apps);
    let _c = e.controller("a");
    e.automate(&apps, "");
    e.eventually("every policy chose 1.0.0", Duration::from_secs(60), || {
        apps.iter()
            .all(|a| e.get("imagepolicies", a)["status"]["latestRef"]["tag"] == "1.0.0")
    });
    for app in apps {
        e.registry.push_image(app, "2.0.0");
    }
    e.eventually("every app runs 2.0.0", Duration::from_secs(60), || {
        apps.iter().all(|a| e.running_image(a).ends_with(":2.0.0"))
    });
    let log = e.log();
    assert_eq!(log.len(), 2, "one commit for all three: {log:?}");
    for app in apps {
        assert!(
            log[0].contains(&format!("{}:2.0.0", e.registry.image(app))),
            "{log:?}"
        );
    }
}

#[test]
fn two_controllers_writing_one_branch_lose_nothing_and_duplicate_nothing() {
    let apps = ["api", "web"];
    let e = Env::new(&apps);
    // two controllers without leader election: both scan, both write
    let _a = e.controller("a");
    let _b = e.controller("b");
    e.automate(&apps, "");
    e.eventually("both policies chose 1.0.0", Duration::from_secs(60), || {
        apps.iter()
            .all(|a| e.get("imagepolicies", a)["status"]["latestRef"]["tag"] == "1.0.0")
    });
    for round in ["1.1.0", "1.2.0", "1.3.0"] {
        for app in apps {
            e.registry.push_image(app, round);
        }
        e.eventually(
            &format!("both apps at {round} in Git"),
            Duration::from_secs(60),
            || {
                e.repo.git(&["fetch", "-q", "origin"]);
                apps.iter().all(|a| {
                    e.repo
                        .git(&["show", &format!("origin/main:apps/{a}/deploy.yaml")])
                        .contains(&format!("{}:{round}", e.registry.image(a)))
                })
            },
        );
    }
    // give the slower controller time to try too
    std::thread::sleep(Duration::from_secs(4));
    let log = e.log();
    // every image was written once: each version of each app appears in one commit only
    for round in ["1.1.0", "1.2.0", "1.3.0"] {
        for app in apps {
            let image = format!("{}:{round}", e.registry.image(app));
            assert_eq!(
                log.iter().filter(|s| s.contains(&image)).count(),
                1,
                "{image} in {log:?}"
            );
        }
    }
}

#[test]
fn a_tag_that_a_revert_moved_away_from_is_not_written_back_but_a_newer_one_is() {
    let e = Env::new(&["web"]);
    let _c = e.controller("a");
    e.automate(&["web"], "");
    let image = e.registry.image("web");
    e.registry.push_image("web", "1.1.0");
    e.eventually("1.1.0 deployed", Duration::from_secs(60), || {
        e.running_image("web") == format!("{image}:1.1.0")
    });
    e.eventually("the update recorded 1.1.0", Duration::from_secs(30), || {
        e.get("imageupdates", "env")["status"]["written"]["web"]["image"]
            == format!("{image}:1.1.0")
    });

    let out = e.capstan(&["revert", "web", "-n", "apps"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(e.running_image("web"), format!("{image}:1.0.0"));
    let after_revert = e.log();
    assert!(
        after_revert[0].starts_with("Revert web to "),
        "{after_revert:?}"
    );

    // scans go on, the policy still chooses 1.1.0, and it is held back
    e.eventually("1.1.0 held back", Duration::from_secs(30), || {
        let u = e.get("imageupdates", "env");
        u["status"]["heldBack"].as_array().is_some_and(|h| {
            h.iter()
                .any(|x| x["policy"] == "web" && x["image"] == format!("{image}:1.1.0"))
        })
    });
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(e.log(), after_revert, "1.1.0 is not written back");
    assert_eq!(e.running_image("web"), format!("{image}:1.0.0"));

    // a newer tag is written
    e.registry.push_image("web", "1.2.0");
    e.eventually("1.2.0 deployed", Duration::from_secs(60), || {
        e.running_image("web") == format!("{image}:1.2.0")
    });
    assert_eq!(e.log().len(), after_revert.len() + 1);
}

#[test]
fn a_registry_that_is_down_is_a_condition_and_nothing_is_written() {
    let mut e = Env::new(&["web"]);
    let _c = e.controller("a");
    e.automate(&["web"], "");
    e.eventually("the first scan", Duration::from_secs(60), || {
        cond(&e.get("imagerepositories", "web"), "Ready").is_some_and(|c| c["status"] == "True")
    });
    e.registry.stop();
    e.eventually("the scan fails", Duration::from_secs(30), || {
        cond(&e.get("imagerepositories", "web"), "Ready")
            .is_some_and(|c| c["status"] == "False" && c["reason"] == "ScanFailed")
    });
    let message = cond(&e.get("imagerepositories", "web"), "Ready").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains(&e.registry.host()), "{message}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(e.log(), ["apps at 1.0.0"]);
    // the policy keeps its choice from the last scan
    assert_eq!(
        e.get("imagepolicies", "web")["status"]["latestRef"]["tag"],
        "1.0.0"
    );
    e.registry.restart();
    e.registry.push_image("web", "1.0.1");
    e.eventually(
        "scans resume and 1.0.1 is written",
        Duration::from_secs(60),
        || e.log().len() == 2,
    );
}

#[test]
fn an_invalid_policy_or_update_is_named_in_its_status() {
    let e = Env::new(&["web"]);
    let _c = e.controller("a");
    e.automate(&["web"], "");
    e.cluster.apply("apiVersion: capstan.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: web\n  namespace: apps\nspec:\n  imageRepositoryRef: {name: web}\n  policy:\n    semver: {range: \"1x\"}\n");
    e.eventually("the policy is invalid", Duration::from_secs(30), || {
        cond(&e.get("imagepolicies", "web"), "Ready").is_some_and(|c| {
            c["reason"] == "InvalidPolicy" && c["message"].as_str().unwrap_or("").contains("1x")
        })
    });
    // an unknown strategy is refused by the CRD's schema, naming the field
    let out = e.cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: capstan.dev/v1alpha1\nkind: ImageUpdate\nmetadata:\n  name: bad\n  namespace: apps\nspec:\n  git: {repoURL: http://127.0.0.1:1/x.git}\n  update: {strategy: foo}\n",
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.update.strategy"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = Path::new(".");
}

#[test]
fn registry_credentials_digest_pinning_exclusions_the_images_strategy_and_a_signed_commit() {
    use capstan_testkit::signing::SshSigningKey;
    let registry = RegistryServer::start(RegistryAuth::basic("puller", "pull-s3cret"));
    registry.push_image("shop", "1.0.0");
    registry.push_image("shop", "sha256-0123.sig");
    let image = registry.image("shop");
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "env.git");
    // no setter markers: the Images strategy finds the Kustomize entry by its repository
    let kustomization = format!(
        "resources:\n  - deploy.yaml\nimages:\n  - name: {image}\n    newTag: 1.0.0 # pinned by CI\n"
    );
    repo.write("apps/shop/kustomization.yaml", &kustomization);
    repo.write(
        "apps/shop/deploy.yaml",
        format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: shop\nspec:\n  selector:\n    matchLabels: {{app: shop}}\n  template:\n    metadata:\n      labels: {{app: shop}}\n    spec:\n      containers:\n      - name: shop\n        image: {image}:0.0.1\n"),
    );
    repo.commit("shop");
    let server = GitServer::start(root.path(), None).unwrap();
    let cluster = TestCluster::start();
    let keys = tempfile::tempdir().unwrap();
    let key = SshSigningKey::generate(keys.path(), "bot@capstan.invalid");
    let e = Env {
        cluster,
        registry,
        server,
        repo,
        _root: root,
        state: tempfile::tempdir().unwrap(),
    };
    let mut install = Command::new(env!("CARGO_BIN_EXE_capstan"));
    install
        .args(["install", "--kubeconfig"])
        .arg(e.cluster.kubeconfig_path());
    assert!(
        capstan_testkit::process::run(install, None, Duration::from_secs(60))
            .status
            .success()
    );
    let auth = base64_encode("puller:pull-s3cret");
    let docker_config = format!(
        "{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}}}}}}",
        e.registry.host()
    );
    let signing = std::fs::read_to_string(key.key()).unwrap();
    let indented: String = signing.lines().map(|l| format!("    {l}\n")).collect();
    e.cluster.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: pull\n  namespace: apps\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{docker_config}'\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: signing\n  namespace: apps\nstringData:\n  ssh-privatekey: |\n{indented}---\napiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: shop\n  namespace: apps\nspec:\n  source:\n    repoURL: {url}\n    targetRevision: main\n    path: apps/shop\n  destination:\n    namespace: web\n  interval: 1h\n  syncPolicy:\n    automated: {{}}\n---\napiVersion: capstan.dev/v1alpha1\nkind: ImageRepository\nmetadata:\n  name: shop\n  namespace: apps\nspec:\n  image: {image}\n  insecure: true\n  secretRef: {{name: pull}}\n---\napiVersion: capstan.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: shop\n  namespace: apps\nspec:\n  imageRepositoryRef: {{name: shop}}\n  policy:\n    alphabetical: {{order: asc}}\n  digestReflectionPolicy: Always\n---\napiVersion: capstan.dev/v1alpha1\nkind: ImageUpdate\nmetadata:\n  name: env\n  namespace: apps\nspec:\n  git:\n    repoURL: {url}\n    branch: main\n    commit:\n      author: {{name: Capstan Bot, email: bot@capstan.invalid}}\n      signingKey: {{secretRef: {{name: signing}}}}\n  update:\n    path: apps\n    strategy: Images\n  interval: 3s\n",
        url = e.server.url("env.git"),
    ));
    let _c = e.controller("a");
    // the .sig tag is left out by the default exclusion list, so alphabetical picks 1.0.0
    e.eventually(
        "the first scan with credentials",
        Duration::from_secs(60),
        || e.get("imagerepositories", "shop")["status"]["lastScanResult"]["tagCount"] == 1,
    );
    let digest = e.registry.push_image("shop", "1.1.0");
    e.eventually("shop runs 1.1.0 by digest", Duration::from_secs(60), || {
        e.running_image("shop") == format!("{image}:1.1.0@{digest}")
    });
    assert_eq!(
        e.get("imagepolicies", "shop")["status"]["latestRef"]["digest"],
        digest.as_str()
    );
    e.repo.git(&["pull", "-q", "--ff-only", "origin", "main"]);
    assert_eq!(
        std::fs::read_to_string(e.repo.work_path().join("apps/shop/kustomization.yaml")).unwrap(),
        format!(
            "resources:\n  - deploy.yaml\nimages:\n  - name: {image}\n    newTag: 1.1.0 # pinned by CI\n    digest: {digest}\n"
        )
    );
    let head = e.repo.rev_parse("HEAD");
    let mut verify = key.verify_command();
    verify
        .current_dir(e.repo.work_path())
        .args(["verify-commit", &head]);
    let out = capstan_testkit::process::run(verify, None, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "the write-back is signed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_malformed_file_under_the_update_path_is_named_and_nothing_is_pushed() {
    let e = Env::new(&["web"]);
    e.repo.write(
        "apps/broken.yaml",
        "kind: ConfigMap\nmetadata: {name: x\n# {\"$imagepolicy\": \"apps:web\"}\n",
    );
    e.repo.commit("a broken file");
    let _c = e.controller("a");
    e.automate(&["web"], "");
    e.registry.push_image("web", "1.1.0");
    e.eventually(
        "the update fails naming the file",
        Duration::from_secs(60),
        || {
            cond(&e.get("imageupdates", "env"), "Ready").is_some_and(|c| {
                c["reason"] == "EditFailed"
                    && c["message"]
                        .as_str()
                        .unwrap_or("")
                        .contains("apps/broken.yaml: not valid YAML")
            })
        },
    );
    assert_eq!(
        e.log(),
        ["a broken file", "apps at 1.0.0"],
        "nothing pushed"
    );
}

#[test]
fn images_select_reads_an_images_tags_from_its_registry() {
    let registry = RegistryServer::start(RegistryAuth::basic("u", "p4ss"));
    for t in ["1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1"] {
        registry.push_image("app", t);
    }
    let image = registry.image("app");
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
    cmd.args([
        "images",
        "select",
        "--semver",
        "1.x",
        "--image",
        &image,
        "--insecure",
        "--registry-username",
        "u",
    ])
    .env("CAPSTAN_REGISTRY_PASSWORD", "p4ss")
    .env("CAPSTAN_CACHE_DIR", cache.path());
    let out = capstan_testkit::process::run(cmd, None, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1.10.0\n");
    // without credentials: a clear error naming the image, exit 2
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capstan"));
    cmd.args([
        "images",
        "select",
        "--semver",
        "1.x",
        "--image",
        &image,
        "--insecure",
    ])
    .env_remove("CAPSTAN_REGISTRY_PASSWORD")
    .env("CAPSTAN_CACHE_DIR", cache.path());
    let out = capstan_testkit::process::run(cmd, None, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&image),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn image_updates_of_one_repository_and_branch_share_one_commit() {
    let apps = ["api", "web"];
    let e = Env::new(&apps);
    e.automate(&apps, "");
    e.cluster
        .kubectl_ok(&["delete", "imageupdate", "env", "-n", "apps"]);
    let mut yaml = String::new();
    for app in apps {
        yaml.push_str(&format!(
            "---\napiVersion: capstan.dev/v1alpha1\nkind: ImageUpdate\nmetadata:\n  name: {app}-update\n  namespace: apps\nspec:\n  git:\n    repoURL: {}\n    branch: main\n    commit:\n      author: {{name: Capstan Bot, email: bot@capstan.invalid}}\n  policies: [{app}]\n  update:\n    path: apps/{app}\n  interval: 1h\n",
            e.server.url("env.git")
        ));
    }
    e.cluster.apply(&yaml);
    let _c = e.controller("a");
    e.eventually("both policies chose 1.0.0", Duration::from_secs(60), || {
        apps.iter()
            .all(|a| e.get("imagepolicies", a)["status"]["latestRef"]["tag"] == "1.0.0")
    });
    for app in apps {
        e.registry.push_image(app, "1.5.0");
    }
    e.eventually("both apps run 1.5.0", Duration::from_secs(60), || {
        apps.iter().all(|a| e.running_image(a).ends_with(":1.5.0"))
    });
    let log = e.log();
    assert_eq!(log.len(), 2, "one commit for both ImageUpdates: {log:?}");
    let head = e.repo.rev_parse("origin/main");
    for app in apps {
        let u = e.get("imageupdates", &format!("{app}-update"));
        assert_eq!(u["status"]["lastPushCommit"], head.as_str(), "{app}");
    }
}

#[test]
fn a_rollback_is_not_undone_by_image_automation() {
    let e = Env::new(&["web"]);
    let _c = e.controller("a");
    e.automate(&["web"], "");
    let image = e.registry.image("web");
    e.registry.push_image("web", "1.1.0");
    e.eventually("1.1.0 deployed", Duration::from_secs(60), || {
        e.running_image("web") == format!("{image}:1.1.0")
    });
    let commits = e.log().len();
    let out = e.capstan(&["rollback", "web", "-n", "apps"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(e.running_image("web"), format!("{image}:1.0.0"));
    // the policy still chooses 1.1.0 and Git still says it: nothing is written, and the
    // Application (automated sync off after a rollback) stays where it was rolled back to
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(e.log().len(), commits);
    assert_eq!(e.running_image("web"), format!("{image}:1.0.0"));
}

#[test]
fn a_write_back_is_announced_once_to_the_applications_of_its_repository() {
    use capstan_testkit::receiver::{Mode, Receiver};
    let e = Env::new(&["web"]);
    let hook = Receiver::start(Mode::Ok);
    e.cluster.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: hooks\n  namespace: apps\nstringData:\n  url: {}\n---\napiVersion: capstan.dev/v1alpha1\nkind: Notification\nmetadata:\n  name: images\n  namespace: apps\nspec:\n  triggers: [on-image-updated]\n  destinations:\n  - type: webhook\n    urlSecretRef: {{name: hooks, key: url}}\n",
        hook.url("/hook")
    ));
    let _c = e.controller("a");
    e.automate(&["web"], "");
    let image = e.registry.image("web");
    e.eventually("web 1.0.0 deployed", Duration::from_secs(60), || {
        e.running_image("web") == format!("{image}:1.0.0")
    });
    assert!(hook.received().is_empty(), "nothing was pushed yet");

    e.registry.push_image("web", "1.1.0");
    let got = hook.wait_for(1, Duration::from_secs(90));
    let body = got[0].json();
    e.repo.git(&["fetch", "-q", "origin"]);
    let head = e.repo.rev_parse("origin/main");
    assert_eq!(
        e.get("imageupdates", "env")["status"]["lastPushCommit"],
        head.as_str()
    );
    assert_eq!(body["trigger"], "on-image-updated");
    assert_eq!(body["application"]["name"], "web");
    assert_eq!(body["revision"], head.as_str());
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{image}:1.1.0")),
        "{body}"
    );
    e.eventually("web 1.1.0 deployed", Duration::from_secs(60), || {
        e.running_image("web") == format!("{image}:1.1.0")
    });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(hook.received().len(), 1, "once");
}
