//! Replays the fuzz seeds, the corpora the fuzzers grew (`fuzz/corpus/`, minimised) and every
//! input the fuzzers ever found a bug with (`fuzz/regressions/`) through the same harnesses the
//! fuzz targets run, so `cargo test` keeps them fixed on the code as it is now.

use std::path::Path;

fn replay(target: &str, harness: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for folder in ["seeds", "corpus", "regressions"] {
        let dir = root.join(folder).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() && path.file_name().is_some_and(|n| n != ".gitkeep") {
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| harness(&data));
                assert!(
                    outcome.is_ok(),
                    "{} fails the {target} harness",
                    path.display()
                );
                count += 1;
            }
        }
    }
    count
}

#[test]
fn json_redact_seeds_corpus_and_regressions_pass() {
    // The committed corpus has 902 inputs (2026-12-03); fewer means it was not read.
    assert!(replay("json_redact", recipient_gateway::fuzzing::json_redact) >= 900);
}

#[test]
fn config_load_seeds_corpus_and_regressions_pass() {
    assert!(replay("config_load", recipient_gateway::fuzzing::config_load) >= 2400);
}

#[test]
fn request_target_seeds_corpus_and_regressions_pass() {
    assert!(replay("request_target", recipient_gateway::fuzzing::request_target) >= 3400);
}
