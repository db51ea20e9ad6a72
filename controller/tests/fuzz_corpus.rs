//! Replays every fuzz target's corpus (`fuzz/corpus/<target>/`, minimised and committed, crash reproducers
//! included) through the same entry points the fuzzer drives, on the stable toolchain: the test command runs the
//! corpus once, not the fuzzer (issue #9).

use std::path::{Path, PathBuf};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 3] = [
    ("record", drover::fuzzing::record),
    ("consul_listing", drover::fuzzing::consul_listing),
    ("nomad_events", drover::fuzzing::nomad_events),
];

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_input_should_be_handled_without_a_panic() {
    let mut failures = Vec::new();
    for (target, run) in TARGETS {
        let files = corpus(target);
        assert!(!files.is_empty(), "the {target} corpus is empty: the replay would prove nothing");
        for file in files {
            let bytes = std::fs::read(&file).expect("read corpus file");
            if std::panic::catch_unwind(|| run(&bytes)).is_err() {
                failures.push(format!("{target}: {}", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "inputs that panicked: {failures:#?}");
}
