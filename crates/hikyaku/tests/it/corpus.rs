//! Replays the fuzz corpora (`fuzz/corpus/<target>/*`) through the same
//! invariant checks as the fuzz targets, so every `cargo test` covers them
//! without libFuzzer. A crash the fuzzer finds is fixed, then its input is
//! added to the corpus and stays a test.

use std::path::{Path, PathBuf};

// The fuzz crate is outside the workspace; its checks are shared by path.
#[path = "../../../../fuzz/src/checks.rs"]
pub mod checks;

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "{}: the seed corpus is missing",
        dir.display()
    );
    files
}

fn replay(target: &str, check: impl Fn(&[u8])) {
    for file in corpus_files(target) {
        let input = std::fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input)));
        if let Err(panic) = outcome {
            eprintln!("invariant broken by {}", file.display());
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn corpus_smtp_session() {
    replay("smtp_session", |input| {
        checks::check_smtp_session(input);
    });
}

#[test]
fn corpus_pasted_code() {
    replay("pasted_code", checks::check_pasted_code);
}

#[test]
fn corpus_microsoft_endpoint() {
    replay("microsoft_endpoint", checks::check_endpoint);
}

#[test]
fn corpus_config() {
    replay("config", checks::check_config);
}

#[test]
fn corpus_rewrite_from() {
    replay("rewrite_from", checks::check_rewrite);
}

/// The seeds do what their names say: the smuggling transcripts carry a
/// second transaction, and none of it is accepted.
#[test]
fn corpus_smuggling_seeds_accept_nothing() {
    for file in corpus_files("smtp_session") {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let input = std::fs::read(&file).unwrap();
        let accepted = checks::check_smtp_session(&input);
        if name.starts_with("smuggle-") {
            assert!(accepted.is_empty(), "{name}: {accepted:?}");
        }
        if name == "auth-login-two-messages.txt" {
            // One per peer kind: the stranger logs in, the LAN peer too.
            assert_eq!(accepted.len(), 4, "{name}");
        }
    }
}
