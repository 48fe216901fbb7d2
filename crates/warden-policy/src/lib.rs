//! The pure decision core: the [`Principal`] that authentication produces, authorization rules,
//! limits, address rules, and the content-security stages: argument schemas and guards, the
//! tool-definition scan, the output sanitizer, injection detector and redactor. No network I/O;
//! the one filesystem read is [`guards::path_resolved`], named as such.
#![forbid(unsafe_code)]

pub mod canonical;
pub mod guards;
pub mod inject;
pub mod limits;
pub mod net;
pub mod principal;
pub mod redact;
pub mod rules;
pub mod sanitize;
pub mod scan;
pub mod schema;
pub mod uri;

pub use principal::{AuthMethod, Presented, Principal};

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod robustness_tests {
    //! Random inputs built from the pieces the parsers special-case: no stage may panic, and
    //! sanitizing is idempotent. (A cheap stand-in for the cargo-fuzz targets, run by every test
    //! run.)
    use crate::{guards, inject, redact, sanitize, scan};

    const PIECES: &[&str] = &[
        "<",
        "<!--",
        "-->",
        "<|",
        "|>",
        "[INST]",
        "[",
        "]",
        "\x1b",
        "\x1b[",
        "\x1b]",
        "\x07",
        "\u{200B}",
        "\u{E0041}",
        "\u{FE0F}",
        "\u{FE01}",
        "é",
        "日本",
        "😀",
        "..",
        "/",
        "%2f",
        "\\",
        "\0",
        "\n",
        "ignore",
        " previous ",
        "instructions",
        "SELECT ",
        "FROM t",
        ";",
        "'",
        "\"",
        "--",
        "$(",
        "`",
        "http://",
        "@",
        "eyJ",
        "AKIA",
        "0",
        "9",
        " ",
        "-",
        "=",
        "password=",
        "~/.ssh",
        "DROP",
        "(",
        ")",
    ];

    #[test]
    fn random_inputs_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let red = redact::Redactor::default();
        for _ in 0..3000 {
            let n = (next() % 24) as usize;
            let s: String = (0..n).map(|_| PIECES[(next() % PIECES.len() as u64) as usize]).collect();
            let (once, _) = sanitize::sanitize(&s);
            let (twice, r2) = sanitize::sanitize(&once);
            assert_eq!(once, twice, "idempotent on {s:?}");
            assert!(!r2.any() || once != s, "{s:?}");
            let _ = inject::scan(&s);
            let _ = red.redact(&s, &mut Vec::new());
            let _ = redact::scrub_error(&s);
            let _ = guards::path(&s, &["/data".into()]);
            let _ = guards::sql(&s, &guards::SqlPolicy::default());
            let _ = guards::argv(&s);
            let _ = guards::url(&s, &guards::UrlPolicy::default());
            let _ = scan::scan_tool(&serde_json::json!({"name": s, "description": s}));
        }
    }
}
