//! The redactor finds exactly what the whole-text search in [`super::reference`] finds: same
//! output, same classes, on the repository's corpora, on every test case, and on generated text
//! built from fragments of every pattern (windows' edges, Unicode digits and case folds, matches
//! at the start and the end, long texts).

use super::*;

/// Every class set the equivalence is checked with: all, secrets, PII, each class alone.
fn class_sets() -> Vec<Vec<Class>> {
    let mut v = vec![ALL.clone(), Class::SECRETS.to_vec(), Class::PII.to_vec()];
    v.extend(ALL.iter().map(|&c| vec![c]));
    v
}

/// New and reference agree on `text` for every class set.
pub(crate) fn check(text: &str) {
    for classes in class_sets() {
        check_with(&classes, text);
    }
}

fn check_with(classes: &[Class], text: &str) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let new = Redactor::new(classes).redact(text, &mut a);
    let old = reference::redact(classes, text, &mut b);
    assert_eq!(new, old, "output differs for {classes:?} on {text:?}");
    assert_eq!(a, b, "classes differ for {classes:?} on {text:?}");
}

/// Fragments of every pattern: literals, separators, digits (ASCII and not), key words,
/// characters that fold to ASCII under `(?i)`, and near misses.
const PIECES: &[&str] = &[
    "AKIA",
    "ASIA",
    "ABIA",
    "ACCA",
    "AIza",
    "IOSFODNN7EXAMPLE",
    "ghp_",
    "gho_",
    "github_pat_",
    "xoxb-",
    "xox",
    "https://hooks.slack.com/services/",
    "T000/B000/XXXX",
    "sk_live_",
    "rk_test_",
    "sk-",
    "proj-",
    "ant-",
    "eyJ",
    "eyJhbGciOiJIUzI1NiJ9",
    ".",
    "-----BEGIN ",
    "RSA ",
    "PRIVATE KEY",
    "-----",
    "-----END ",
    " BLOCK",
    "\n",
    "postgres",
    "://",
    "admin",
    ":",
    "hunter2pass",
    "@",
    "db.internal",
    "/",
    "password",
    "PassWord",
    "paſſword",
    "\u{212A}ey",
    "api_key",
    "client-secret",
    "token",
    "credentials",
    "=",
    "\"",
    "'",
    " ",
    "  ",
    "\t",
    "s3cr3tP4ss!",
    "${X}",
    "changeme",
    "jane.doe",
    "example.com",
    "co",
    "+1",
    "(415)",
    "415",
    "555",
    "0132",
    "-",
    "4111",
    "1111",
    "4111 1111 1111 1111",
    "DE89",
    "3704",
    "0044",
    "0532",
    "0130",
    "00",
    "GB",
    "AB",
    "12",
    "34",
    "56",
    "C",
    "123-45-6789",
    "٣",
    "٤٥",
    "１２",
    "०",
    "é",
    "😀",
    "\u{200B}",
    "x",
    "abc",
    "0123456789",
    "9",
    "0",
    "_",
    ",",
    ";",
    "&",
    "%",
    "(",
    ")",
];

fn generated(seed: &mut u64, max_pieces: u64) -> String {
    let mut t = String::new();
    let n = *seed % max_pieces;
    for _ in 0..n {
        crate::testing::xorshift(seed);
        t.push_str(PIECES[(*seed % PIECES.len() as u64) as usize]);
    }
    t
}

#[test]
fn same_on_the_repository_corpora_and_test_cases() {
    for text in
        [include_str!("../../../../corpus/benign-hard.txt"), include_str!("../../../../corpus/injection-explicit.txt")]
    {
        check(text);
        for line in text.lines() {
            check(line);
        }
    }
    for t in [
        "key AKIAIOSFODNN7EXAMPLE here",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv",
        "xoxb-123456789012-abcdefghijkl",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "AIzaSyA-1234567890abcdefghijklmnopqrstu",
        "sk-proj-abcdefghijklmnopqrstuvwxyz123456",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA",
        "DB_PASSWORD=s3cr3tP4ss!",
        r#"{"client_secret": "9f8e7d6c5b4a39281706"}"#,
        "postgres://admin:hunter2pass@db.internal:5432/app",
        "Mail jane.doe@example.com or call +1 415-555-0132.",
        "card 4111 1111 1111 1111 ok",
        "order 4111 1111 1111 1112",
        "IBAN DE89 3704 0044 0532 0130 00",
        "ref DE89 3704 0044 0532 0130 01",
        "SSN 123-45-6789",
        "ref 9-4111 1111 1111 1111",
        "00+0000000000/p3-23p3-2332-24-2232-34-232--2\u{2}\u{0}2-34-2232200000/40/4+42-2434/-@4-3-33232244@/-3-322-24-2232-32-24-2232-344-655--2232--34-2232244@/--3-1",
        "ids 000-12-3456",
        "The build took 12.5 seconds on 2 cores.",
        "password: required (see the docs)",
        "token=${GITHUB_TOKEN}",
        "Version 2024-11-05 released; see https://example.com/docs?page=2",
        "| 2000 | 75.43% | 4.46% |",
        "jane@example.com AKIAIOSFODNN7EXAMPLE",
        "NI AB 12 34 56 C and AB123456C, GB82 WEST 1234 5698 7654 32",
        "phone (415) 555-0132, +44 20 7946 0958, +49.30.1234.5678",
        "٤١١١ ١١١١ ١١١١ ١١١١ and ４１１１ １１１１ １１１１ １１１１",
        "paſſword = s3cr3tP4ss!99 and \u{212A}EY: abcdef123456",
    ] {
        check(t);
    }
}

#[test]
fn same_on_the_shared_corpora_when_present() {
    crate::testing::for_each_shared_corpus_piece(|piece| {
        check_with(&ALL, piece);
        check_with(Class::SECRETS, piece);
    });
}

#[test]
fn same_on_generated_fragments() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..6000 {
        let t = generated(&mut seed, 16);
        check_with(&ALL, &t);
        check_with(Class::SECRETS, &t);
        check_with(Class::PII, &t);
    }
    for _ in 0..400 {
        check(&generated(&mut seed, 40));
    }
}

/// Matches at the start and the end of the text, right against a window's computed edge, and
/// in texts longer than 64 kB (a secret straddling byte 65536).
#[test]
fn same_at_edges_and_in_long_texts() {
    let secrets = [
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "xoxb-123456789012-abcdefghijkl",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA",
        "postgres://admin:hunter2pass@db",
        "api_key = 9f8e7d6c5b4a39281706",
        "jane.doe@example.com",
        "+1 415-555-0132",
        "4111 1111 1111 1111",
        "DE89 3704 0044 0532 0130 00",
        "AB 12 34 56 C",
        "123-45-6789",
    ];
    for s in secrets {
        for (pre, post) in [("", ""), ("x", ""), ("", "x"), ("a_", "_b"), ("é", "é"), ("1", "1"), (" ", " ")] {
            check(&format!("{pre}{s}{post}"));
        }
        // Cut at every length, and glued to itself.
        for n in (0..=s.len()).filter(|&n| s.is_char_boundary(n)) {
            check_with(&ALL, &s[..n]);
            check_with(&ALL, &format!("{}{}", &s[n..], &s[..n]));
        }
        for pad in [65535usize, 65530, 65536 - s.len() / 2] {
            let long = format!("{}{s}{}", "a ".repeat(pad / 2), " b".repeat(3000));
            check_with(&ALL, &long);
        }
    }
    // Lengths at and past each pattern's bound: 16/35 key characters, 255 token characters,
    // a 64-character local part, 100/200-character user and password, 30/10 name characters.
    for n in [15, 16, 17, 34, 35, 36, 63, 64, 65, 99, 100, 101, 199, 200, 201, 254, 255, 256, 300] {
        let a = "a".repeat(n);
        let e = "é".repeat(n);
        for t in [
            format!("AKIA{}", "B".repeat(n)),
            format!("AIza{a}"),
            format!("ghp_{a} github_pat_{a}"),
            format!("{a}@{a}.com {e}@x.io"),
            format!("db://{a}:{a}@h db://{e}:{e}@h"),
            format!("{}password{} = {a}", "x".repeat(n % 40), "y".repeat(n % 14)),
            format!("token:{}{a}", " ".repeat(n)),
            format!("secret {}= {a}", "\t".repeat(n)),
            format!("-----BEGIN {a} PRIVATE KEY-----{a}"),
            format!("+1{}", " 12".repeat(n % 9)),
            "4".repeat(n % 25),
        ] {
            check_with(&ALL, &t);
        }
    }
}

/// Key words with the longest name before and after them that the pattern allows, and longer.
#[test]
fn same_for_every_name_length_around_a_key_word() {
    for word in ["client_secret", "private-key", "PASSWORD", "pwd", "credentials", "apikey"] {
        for before in 0..=33 {
            for after in 0..=12 {
                let name = format!("{}{word}{}", &"x.-".repeat(12)[..before], "y".repeat(after));
                check_with(&ALL, &format!("{name} = v4lu3s3cr3t"));
                check_with(&ALL, &format!("'{name}'  :\t\"s3cr3t-v4lu3\""));
            }
        }
    }
}

/// The prefilter's test for a non-ASCII `\d` misses none.
#[test]
fn every_unicode_decimal_digit_is_a_maybe_digit() {
    let d = Regex::new(r"^\d$").expect("digit");
    for ch in (0x80u32..=0x10FFFF).filter_map(char::from_u32) {
        let mut buf = [0; 4];
        if d.is_match(ch.encode_utf8(&mut buf)) {
            assert!(prefilter::maybe_digit(ch), "{ch:?}");
        }
    }
}

/// Under `(?i)`, only `ſ` and the Kelvin sign fold to the ASCII letters of the key-value
/// pattern (the prefilter searches the whole text when either is present).
#[test]
fn only_two_non_ascii_characters_fold_to_ascii_letters() {
    let letter = Regex::new(r"(?i)^[a-z]$").expect("letter");
    let folding: Vec<char> = (0x80u32..=0x10FFFF)
        .filter_map(char::from_u32)
        .filter(|c| letter.is_match(c.encode_utf8(&mut [0; 4])))
        .collect();
    assert_eq!(folding, vec!['\u{17F}', '\u{212A}']);
}
