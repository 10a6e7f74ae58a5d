//! Every kept input of `regressions/<target>/` still passes its target: no panic, and
//! within the driver's time limit.

use capstan_fuzz::driver::LIMIT;
use capstan_fuzz::replay::{TARGETS, replay};

#[test]
fn kept_inputs_still_pass() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut replayed = 0;
    for dir in std::fs::read_dir(&root).expect("crates/fuzz/regressions") {
        let dir = dir.expect("a directory entry").path();
        let target = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            TARGETS.contains(&target.as_str()),
            "regressions/{target}: no such target"
        );
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("a target's directory")
            .map(|e| e.expect("an entry").path())
            .collect();
        files.sort();
        for file in files {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&file).expect("a kept input");
            let took = replay(&target, &name, &bytes);
            assert!(
                took <= LIMIT,
                "regressions/{target}/{name} took {took:?}, more than {LIMIT:?}"
            );
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no kept inputs under {}", root.display());
}
