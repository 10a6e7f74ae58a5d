//! Writing images into files: Flux's setter fixtures byte for byte (read from
//! `../shared/conformance/flux-setters/`, never copied here), and the Kustomize, Helm
//! and plain-manifest editors on files that keep every other byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use capstan_engine::images::ImageRef;
use capstan_engine::images::edit::{self, EditPlan, HelmTarget, ImageSetting};
use serde_json::Value;

/// `../shared/conformance/flux-setters`, or `None` (said plainly) outside CI when the
/// data is not there.
fn conformance() -> Option<PathBuf> {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/flux-setters");
    if dir.join("cases.json").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but the conformance data is missing at {}",
        dir.display()
    );
    eprintln!(
        "conformance data not found at {}: Flux's setter fixtures (original → expected, byte for byte) were not checked",
        dir.display()
    );
    None
}

/// Copy a fixture directory (symlinks as symlinks, files writable) into a fresh
/// temporary repository.
fn copy_tree(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        let dest = to.join(entry.file_name());
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &dest).unwrap();
        } else if meta.is_dir() {
            copy_tree(&entry.path(), &dest);
        } else if let Some(target) = lost_symlink(&entry.path()) {
            std::os::unix::fs::symlink(target, &dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// `setters/original/test.yaml` is a dangling symlink to `testing.yaml` in Flux's tree
/// (the fixtures README); a copy that lost the link holds the target's name as text.
/// The link is made again, so the case checks what Flux's does: the reader skips it.
fn lost_symlink(path: &Path) -> Option<String> {
    if !path.ends_with("setters/original/test.yaml") {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let target = text.trim();
    (!path.with_file_name(target).exists()).then(|| target.to_string())
}

fn policies(cases: &Value) -> BTreeMap<String, ImageRef> {
    cases
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), ImageRef::parse(v.as_str().unwrap()).unwrap()))
        .collect()
}

fn case<'a>(cases: &'a Value, name: &str) -> &'a Value {
    cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

#[test]
fn flux_setter_fixtures_are_updated_byte_for_byte() {
    let Some(data) = conformance() else { return };
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("cases.json")).unwrap()).unwrap();
    let c = case(&cases, "TestUpdateWithSetters");
    let repo = tempfile::tempdir().unwrap();
    let tree = repo.path().join("setters");
    copy_tree(&data.join(c["input_dir"].as_str().unwrap()), &tree);
    let plan = EditPlan {
        policies: policies(&c["policies"]),
        ..Default::default()
    };
    let outcome = edit::apply(repo.path(), Path::new("setters"), &plan).unwrap();

    // exactly the files with a changed value were written, and they equal expected/
    let mut written: Vec<String> = outcome
        .files
        .iter()
        .map(|f| f.trim_start_matches("setters/").to_string())
        .collect();
    written.sort();
    let mut expected_files: Vec<String> = c["expected_files_written"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    expected_files.sort();
    assert_eq!(written, expected_files);
    let expected_dir = data.join(c["expected_dir"].as_str().unwrap());
    for f in &expected_files {
        let got = std::fs::read(tree.join(f)).unwrap();
        let want = std::fs::read(expected_dir.join(f)).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{f} differs from Flux's expected output"
        );
    }
    // the others are untouched (the dangling symlink is still a dangling symlink)
    let original = data.join(c["input_dir"].as_str().unwrap());
    for f in ["otherns.yaml", "unmarked.yaml"] {
        assert_eq!(
            std::fs::read(tree.join(f)).unwrap(),
            std::fs::read(original.join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(
        std::fs::symlink_metadata(tree.join("test.yaml"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // the changes, in Flux's order, per file and object
    for (file, want) in c["expected_changes"].as_object().unwrap() {
        let got: Vec<_> = outcome
            .changes
            .iter()
            .filter(|ch| ch.file == format!("setters/{file}"))
            .collect();
        let want_changes = want["changes"].as_array().unwrap();
        assert_eq!(got.len(), want_changes.len(), "{file}: {got:#?}");
        for (g, w) in got.iter().zip(want_changes) {
            assert_eq!(g.old, w["old"].as_str().unwrap(), "{file}");
            assert_eq!(g.new, w["new"].as_str().unwrap(), "{file}");
            assert_eq!(g.by, w["setter"].as_str().unwrap(), "{file}");
            let o = &want["object"];
            assert_eq!(
                g.object.api_version,
                o["apiVersion"].as_str().unwrap(),
                "{file}"
            );
            assert_eq!(g.object.kind, o["kind"].as_str().unwrap(), "{file}");
            assert_eq!(
                g.object.namespace,
                o["namespace"].as_str().unwrap(),
                "{file}"
            );
            assert_eq!(g.object.name, o["name"].as_str().unwrap(), "{file}");
        }
    }
    // a policy that only a marker for another namespace names is not used
    assert!(outcome.unused.is_empty(), "{:?}", outcome.unused);
}

#[test]
fn flux_setter_markers_are_found_only_in_the_files_that_carry_them() {
    let Some(data) = conformance() else { return };
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("cases.json")).unwrap()).unwrap();
    let c = case(&cases, "TestScreeningLocalReader");
    let repo = tempfile::tempdir().unwrap();
    copy_tree(
        &data.join(c["input_dir"].as_str().unwrap()),
        &repo.path().join("setters"),
    );
    let markers = edit::setters::scan(repo.path(), Path::new("setters")).unwrap();
    let mut files: Vec<String> = markers
        .iter()
        .map(|m| m.file.trim_start_matches("setters/").to_string())
        .collect();
    files.sort();
    files.dedup();
    let mut want: Vec<String> = c["expected_files_with_marker"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    want.sort();
    assert_eq!(files, want);
}

#[test]
fn flux_applier_cases_update_the_work_dir_in_place() {
    let Some(data) = conformance() else { return };
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("cases.json")).unwrap()).unwrap();
    for c in cases["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        if !name.starts_with("Test_applyPolicies/valid") {
            continue;
        }
        // SETTER_SITE becomes the marker of the policy the case names, in input and expected
        let target = c["marker_substitution"]
            .as_str()
            .unwrap()
            .split("test-ns:")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_string();
        let marker = format!("{{\"$imagepolicy\": \"test-ns:{target}\"}}");
        let repo = tempfile::tempdir().unwrap();
        let work = repo.path().join("work");
        let expected = repo.path().join("expected");
        copy_tree(&data.join(c["input_dir"].as_str().unwrap()), &work);
        copy_tree(&data.join(c["expected_dir"].as_str().unwrap()), &expected);
        for dir in [&work, &expected] {
            for f in walk(dir) {
                let text = std::fs::read_to_string(&f).unwrap();
                std::fs::write(&f, text.replace("SETTER_SITE", &marker)).unwrap();
            }
        }
        let path = c["update_strategy"]["path"].as_str().unwrap_or(".");
        let plan = EditPlan {
            policies: policies(&c["policies"]),
            ..Default::default()
        };
        edit::apply(&work, Path::new(path), &plan).unwrap_or_else(|e| panic!("{name}: {e}"));
        for f in walk(&expected) {
            let rel = f.strip_prefix(&expected).unwrap();
            assert_eq!(
                std::fs::read_to_string(work.join(rel)).unwrap(),
                std::fs::read_to_string(&f).unwrap(),
                "{name}: {}",
                rel.display()
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn repo_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

fn plan(images: &[&str]) -> EditPlan {
    EditPlan {
        images: images
            .iter()
            .map(|i| ImageSetting::parse(i).unwrap())
            .collect(),
        add_kustomize_entries: true,
        ..Default::default()
    }
}

const KUSTOMIZATION: &str = "\
# prod overlay
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../base   # shared
images:
  - name: web
    newName: ghcr.io/org/web # the build output
    newTag: \"1.4.1\"
  - name: worker
    newTag: 2.0.0
    digest: sha256:0000000000000000000000000000000000000000000000000000000000000000

patches: []
";

#[test]
fn a_kustomize_entry_changes_its_tag_and_nothing_else() {
    let repo = repo_with(&[("prod/kustomization.yaml", KUSTOMIZATION)]);
    let out = edit::apply(
        repo.path(),
        Path::new("prod"),
        &plan(&["ghcr.io/org/web:1.4.2"]),
    )
    .unwrap();
    let text = std::fs::read_to_string(repo.path().join("prod/kustomization.yaml")).unwrap();
    assert_eq!(
        text,
        KUSTOMIZATION.replace("newTag: \"1.4.1\"", "newTag: \"1.4.2\"")
    );
    assert_eq!(out.changes.len(), 1);
    let ch = &out.changes[0];
    assert_eq!(
        (ch.field.as_str(), ch.old.as_str(), ch.new.as_str()),
        ("images[name=web].newTag", "1.4.1", "1.4.2")
    );
    assert_eq!(ch.file, "prod/kustomization.yaml");
    assert_eq!(ch.object.kind, "Kustomization");
}

#[test]
fn a_new_tag_drops_a_digest_that_would_keep_pinning_the_old_image() {
    let repo = repo_with(&[("prod/kustomization.yaml", KUSTOMIZATION)]);
    edit::apply(repo.path(), Path::new("prod"), &plan(&["worker:2.1.0"])).unwrap();
    let text = std::fs::read_to_string(repo.path().join("prod/kustomization.yaml")).unwrap();
    assert!(
        text.contains("  - name: worker\n    newTag: 2.1.0\n\npatches"),
        "{text}"
    );
}

#[test]
fn a_missing_kustomize_entry_is_added_as_kustomize_edit_set_image_would() {
    let repo = repo_with(&[("prod/kustomization.yaml", KUSTOMIZATION)]);
    let out = edit::apply(
        repo.path(),
        Path::new("prod"),
        &plan(&["api=ghcr.io/org/api:0.9"]),
    )
    .unwrap();
    let text = std::fs::read_to_string(repo.path().join("prod/kustomization.yaml")).unwrap();
    assert!(
        text.starts_with(&KUSTOMIZATION[..KUSTOMIZATION.find("\npatches").unwrap()]),
        "{text}"
    );
    let doc: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(
        doc["images"][2],
        serde_json::json!({"name": "api", "newName": "ghcr.io/org/api", "newTag": "0.9"})
    );
    assert_eq!(out.changes.len(), 2);
    // and a Kustomization without `images:` gets the list
    let repo = repo_with(&[("k/kustomization.yaml", "resources:\n- app.yaml\n")]);
    edit::apply(repo.path(), Path::new("k"), &plan(&["nginx=nginx:1.27"])).unwrap();
    let text = std::fs::read_to_string(repo.path().join("k/kustomization.yaml")).unwrap();
    assert!(text.starts_with("resources:\n- app.yaml\n"), "{text}");
    let doc: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(
        doc["images"],
        serde_json::json!([{"name": "nginx", "newTag": "1.27"}])
    );
}

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  template:
    spec:
      initContainers:
      - name: migrate
        image: ghcr.io/org/web:1.4.1   # same image, runs the migrations
      containers:
      - name: web
        image: 'ghcr.io/org/web:1.4.1'
      - name: proxy
        image: docker.io/library/nginx:1.25
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports: [{port: 80}]
";

#[test]
fn container_and_init_container_images_of_the_repository_change() {
    let repo = repo_with(&[("app/deploy.yaml", DEPLOYMENT)]);
    let out = edit::apply(
        repo.path(),
        Path::new("app"),
        &plan(&["ghcr.io/org/web:1.5.0", "nginx:1.27"]),
    )
    .unwrap();
    let text = std::fs::read_to_string(repo.path().join("app/deploy.yaml")).unwrap();
    let want = DEPLOYMENT
        .replace(
            "image: ghcr.io/org/web:1.4.1   #",
            "image: ghcr.io/org/web:1.5.0   #",
        )
        .replace(
            "image: 'ghcr.io/org/web:1.4.1'",
            "image: 'ghcr.io/org/web:1.5.0'",
        )
        .replace(
            "docker.io/library/nginx:1.25",
            "docker.io/library/nginx:1.27",
        );
    assert_eq!(text, want);
    let fields: Vec<&str> = out.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.template.spec.initContainers[name=migrate].image",
            "spec.template.spec.containers[name=web].image",
            "spec.template.spec.containers[name=proxy].image"
        ]
    );
    assert_eq!(out.changes[0].object.to_string(), "Deployment shop/web");
}

#[test]
fn plain_manifests_in_a_kustomization_directory_are_left_to_its_images() {
    let repo = repo_with(&[
        ("app/kustomization.yaml", "resources:\n- deploy.yaml\n"),
        ("app/deploy.yaml", DEPLOYMENT),
    ]);
    edit::apply(
        repo.path(),
        Path::new("app"),
        &plan(&["ghcr.io/org/web:1.5.0"]),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(repo.path().join("app/deploy.yaml")).unwrap(),
        DEPLOYMENT
    );
    let k = std::fs::read_to_string(repo.path().join("app/kustomization.yaml")).unwrap();
    let doc: Value = serde_saphyr::from_str(&k).unwrap();
    assert_eq!(
        doc["images"],
        serde_json::json!([{"name": "ghcr.io/org/web", "newTag": "1.5.0"}])
    );
}

const VALUES: &str = "\
# Default values for shop.
replicaCount: 2
image:
  registry: ghcr.io
  repository: org/web   # built by CI
  tag: \"1.4.1\"
  pullPolicy: IfNotPresent
sidecar:
  image: docker.io/library/nginx:1.25
";

#[test]
fn helm_values_are_found_by_the_repository_tag_convention() {
    let repo = repo_with(&[
        ("chart/Chart.yaml", "name: shop\nversion: 1.0.0\n"),
        ("chart/values.yaml", VALUES),
        ("chart/templates/deploy.yaml", "{{ .Values.image.tag }}\n"),
    ]);
    let out = edit::apply(
        repo.path(),
        Path::new("chart"),
        &plan(&["ghcr.io/org/web:1.5.0", "nginx:1.27"]),
    )
    .unwrap();
    let text = std::fs::read_to_string(repo.path().join("chart/values.yaml")).unwrap();
    assert_eq!(
        text,
        VALUES
            .replace("tag: \"1.4.1\"", "tag: \"1.5.0\"")
            .replace("nginx:1.25", "nginx:1.27")
    );
    let fields: Vec<&str> = out.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["image.tag", "sidecar.image"]);
}

#[test]
fn a_named_helm_key_is_written_and_a_missing_one_is_an_error_that_writes_nothing() {
    let repo = repo_with(&[
        ("chart/values-prod.yaml", VALUES),
        ("chart/other.yaml", DEPLOYMENT),
    ]);
    let mut p = plan(&["ghcr.io/org/web:1.6.0", "nginx:1.27"]);
    p.helm = vec![HelmTarget {
        image: "ghcr.io/org/web".into(),
        file: "values-prod.yaml".into(),
        key: "image.tag".into(),
    }];
    edit::apply(repo.path(), Path::new("chart"), &p).unwrap();
    let text = std::fs::read_to_string(repo.path().join("chart/values-prod.yaml")).unwrap();
    assert!(text.contains("  tag: \"1.6.0\"\n"), "{text}");

    let before_values =
        std::fs::read_to_string(repo.path().join("chart/values-prod.yaml")).unwrap();
    let before_other = std::fs::read_to_string(repo.path().join("chart/other.yaml")).unwrap();
    let mut p = plan(&["ghcr.io/org/web:1.7.0", "nginx:1.28"]);
    p.helm = vec![HelmTarget {
        image: "ghcr.io/org/web".into(),
        file: "values-prod.yaml".into(),
        key: "app.image.tag".into(),
    }];
    let err = edit::apply(repo.path(), Path::new("chart"), &p).unwrap_err();
    assert_eq!(
        err.to_string(),
        "chart/values-prod.yaml: the key app.image.tag does not exist (an image is only written to a key that is there)"
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("chart/values-prod.yaml")).unwrap(),
        before_values
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("chart/other.yaml")).unwrap(),
        before_other,
        "nothing written"
    );
}

#[test]
fn a_malformed_manifest_is_named_and_nothing_is_written() {
    let repo = repo_with(&[
        ("app/a.yaml", DEPLOYMENT),
        (
            "app/b.yaml",
            "kind: ConfigMap\nmetadata: {name: web\ndata:\n",
        ),
    ]);
    let err = edit::apply(
        repo.path(),
        Path::new("app"),
        &plan(&["ghcr.io/org/web:9.9.9"]),
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("app/b.yaml: not valid YAML"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("app/a.yaml")).unwrap(),
        DEPLOYMENT
    );
}

#[test]
fn an_image_nothing_uses_is_reported() {
    let repo = repo_with(&[("app/a.yaml", DEPLOYMENT)]);
    let out = edit::apply(
        repo.path(),
        Path::new("app"),
        &plan(&["ghcr.io/org/other:1.0"]),
    )
    .unwrap();
    assert_eq!(out.unused, ["ghcr.io/org/other"]);
    assert!(out.files.is_empty());
}

#[test]
fn a_symlink_out_of_the_repository_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("x.yaml"), DEPLOYMENT).unwrap();
    let repo = repo_with(&[("app/a.yaml", DEPLOYMENT)]);
    std::os::unix::fs::symlink(
        outside.path().join("x.yaml"),
        repo.path().join("app/x.yaml"),
    )
    .unwrap();
    let err = edit::apply(
        repo.path(),
        Path::new("app"),
        &plan(&["ghcr.io/org/web:9.9.9"]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("outside the repository"), "{err}");
    assert_eq!(
        std::fs::read_to_string(outside.path().join("x.yaml")).unwrap(),
        DEPLOYMENT
    );
}
