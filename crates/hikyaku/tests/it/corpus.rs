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

/// A bounded mutation fuzzer on the stable toolchain, so CI fuzzes every
/// target on every run: inputs are seeds from the corpus, mutated (bit and
/// byte changes, deletions, duplications, splices with other seeds and
/// tokens that matter to the parsers: line endings, dots, NULs, encoded
/// words). It is not coverage-guided — `scripts/fuzz` runs libFuzzer for
/// that — but it runs the very same invariant checks.
///
/// `FUZZ_SECONDS` (per target, default 3) bounds it; `FUZZ_SEED` replays a
/// run. A failing input is written to `target/fuzz-failures/<target>/` and
/// the seed printed, so it can be added to the corpus.
mod mutation {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::time::{Duration, Instant};

    const TOKENS: &[&[u8]] = &[
        b"\r\n",
        b"\n",
        b"\r",
        b"\r\n.\r\n",
        b"\n.\r\n",
        b"\r.\r",
        b".",
        b"\0",
        b"DATA\r\n",
        b"MAIL FROM:<a@b>\r\n",
        b"RCPT TO:<c@d>\r\n",
        b"STARTTLS\r\n",
        b"AUTH PLAIN AGFsaWNlAHB3\r\n",
        b"=?utf-8?B?",
        b"?=",
        b"From: ",
        b"Reply-To: ",
        b"\r\n\t",
        b"%0d%0a",
        b"https://",
        b"?code=",
        b"&state=",
        b"[delivery]\n",
        b"\"",
        b"\xff\xfe",
        b"\xe3\x81\x82",
    ];

    fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
        for _ in 0..rng.random_range(1..=4) {
            let len = input.len();
            match rng.random_range(0..7) {
                0 if len > 0 => {
                    let i = rng.random_range(0..len);
                    input[i] ^= 1 << rng.random_range(0..8);
                }
                1 if len > 0 => {
                    let i = rng.random_range(0..len);
                    input[i] = rng.random();
                }
                2 if len > 0 => {
                    let a = rng.random_range(0..len);
                    let b = (a + rng.random_range(1..=16)).min(len);
                    input.drain(a..b);
                }
                3 if len > 0 => {
                    let a = rng.random_range(0..len);
                    let b = (a + rng.random_range(1..=64)).min(len);
                    let chunk = input[a..b].to_vec();
                    let at = rng.random_range(0..=input.len());
                    input.splice(at..at, chunk);
                }
                4 if !seeds.is_empty() => {
                    let other = &seeds[rng.random_range(0..seeds.len())];
                    if !other.is_empty() {
                        let a = rng.random_range(0..other.len());
                        let b = (a + rng.random_range(1..=256)).min(other.len());
                        let at = rng.random_range(0..=input.len());
                        input.splice(at..at, other[a..b].iter().copied());
                    }
                }
                _ => {
                    let token = TOKENS[rng.random_range(0..TOKENS.len())];
                    let at = rng.random_range(0..=input.len());
                    input.splice(at..at, token.iter().copied());
                }
            }
        }
        // Keep inputs small enough for many runs.
        input.truncate(64 * 1024);
    }

    fn fuzz(target: &str, check: impl Fn(&[u8])) {
        let seconds: u64 = std::env::var("FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3);
        let seed: u64 = std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random);
        let seeds: Vec<Vec<u8>> = corpus_files(target)
            .iter()
            .map(|f| std::fs::read(f).unwrap())
            .collect();
        let mut rng = StdRng::seed_from_u64(seed);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut runs = 0u64;
        while Instant::now() < deadline {
            let mut input = seeds[rng.random_range(0..seeds.len())].clone();
            mutate(&mut rng, &mut input, &seeds);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input)));
            if let Err(panic) = outcome {
                let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../target/fuzz-failures")
                    .join(target);
                let _ = std::fs::create_dir_all(&dir);
                let file = dir.join(format!("seed-{seed}-run-{runs}"));
                let _ = std::fs::write(&file, &input);
                eprintln!(
                    "fuzz {target}: invariant broken (FUZZ_SEED={seed}); input saved to {}",
                    file.display()
                );
                std::panic::resume_unwind(panic);
            }
            runs += 1;
        }
        println!("fuzz {target}: {runs} inputs in {seconds} s, FUZZ_SEED={seed}, no failure");
        assert!(runs > 0);
    }

    #[test]
    fn fuzz_smtp_session() {
        fuzz("smtp_session", |input| {
            checks::check_smtp_session(input);
        });
    }

    #[test]
    fn fuzz_pasted_code() {
        fuzz("pasted_code", checks::check_pasted_code);
    }

    #[test]
    fn fuzz_microsoft_endpoint() {
        fuzz("microsoft_endpoint", checks::check_endpoint);
    }

    #[test]
    fn fuzz_config() {
        fuzz("config", checks::check_config);
    }

    #[test]
    fn fuzz_rewrite_from() {
        fuzz("rewrite_from", checks::check_rewrite);
    }
}
