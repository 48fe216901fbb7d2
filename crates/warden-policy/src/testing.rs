//! Test helpers shared by the detectors' equivalence tests.

/// The shared BIPIA corpora (`../shared/corpora`, beside the repository), when present, in 64 kB
/// pieces as the benchmark measures them: a sample of each file in unoptimised builds.
pub fn for_each_shared_corpus_piece(mut f: impl FnMut(&str)) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/bipia-train");
    for set in ["email", "code", "table"] {
        let Ok(text) = std::fs::read_to_string(dir.join(format!("{set}_train.jsonl"))) else { continue };
        let mut end = text.len().min(if cfg!(debug_assertions) { 1 << 19 } else { 1 << 24 });
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut rest = &text[..end];
        while !rest.is_empty() {
            let mut m = rest.len().min(65536);
            while !rest.is_char_boundary(m) {
                m -= 1;
            }
            f(&rest[..m]);
            rest = &rest[m..];
        }
    }
}

/// The next value of a xorshift generator (the generated cases are the same on every run).
pub fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}
