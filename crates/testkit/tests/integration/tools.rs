//! Helper binaries: helm is found or installed by scripts/install-helm.

use std::process::Command;
use std::time::Duration;

#[test]
fn helm_v3_is_available() {
    let helm = capstan_testkit::tools::helm();
    let mut cmd = Command::new(&helm);
    cmd.args(["version", "--short"]);
    let out = capstan_testkit::process::run(cmd, None, Duration::from_secs(30));
    capstan_testkit::process::assert_success(&out, "helm version");
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(version.starts_with("v3."), "{version}");
}
