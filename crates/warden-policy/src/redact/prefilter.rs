//! Where each redaction class can match: windows of the text, found in a few fast passes, that
//! hold every match of the class's regex (not only the ones that pass its check).
//!
//! Each window is built around an anchor that every match of the class contains: a rare literal
//! (`AKIA`, `eyJ`, `-----BEGIN `, `://`, …; one Aho-Corasick pass), the `@` of an email, the
//! `:`/`=` of a key=value pair, a run of digits. It starts no later than any match holding the
//! anchor can start and ends no earlier than it can end; where a pattern is unbounded (`+`,
//! `{n,}`, `\s*`, `.*` to the end) the window runs to the end of the run of characters the
//! pattern can take there. Windows of one class are merged where they overlap, so a window
//! holds every match that starts in it, whole. Searching each window with look-around that
//! sees the text around it (`regex_automata::Input::range`) then finds exactly what searching
//! the whole text finds. Where a case-insensitive pattern could match a non-ASCII character
//! that folds to ASCII (`ſ`, the Kelvin sign), the whole text is the window.

use super::Class;
use aho_corasick::{AhoCorasick, Input, MatchKind};
use std::ops::Range;
use std::sync::LazyLock;

/// The windows of each class in one text, computed a group of classes at a time (the classes
/// of a group share a pass), on first use.
#[derive(Default)]
pub(super) struct Windows {
    done: [bool; 4],
    of: [Vec<Range<usize>>; 15],
}

impl Windows {
    /// The windows of `class` in `text`, sorted and disjoint. `text` must be the text the
    /// previous calls on this value were given (a new text needs a new `Windows`).
    pub(super) fn of(&mut self, class: Class, text: &str) -> Vec<Range<usize>> {
        let g = group(class);
        if !self.done[g] {
            self.done[g] = true;
            let mut w = Push { text, of: &mut self.of };
            match g {
                0 => secrets(&mut w),
                1 => key_values(&mut w),
                2 => emails(&mut w),
                _ => numbers(&mut w),
            }
        }
        merge(&mut self.of[class as usize])
    }
}

fn group(class: Class) -> usize {
    match class {
        Class::KeyValueSecret => 1,
        Class::Email => 2,
        Class::Phone | Class::Card | Class::Iban | Class::NationalId => 3,
        _ => 0,
    }
}

struct Push<'a, 't> {
    text: &'t str,
    of: &'a mut [Vec<Range<usize>>; 15],
}

impl Push<'_, '_> {
    /// A window `lo..hi`, widened to character boundaries and cut at the end of the text.
    fn add(&mut self, class: Class, lo: usize, hi: usize) {
        let t = self.text;
        let mut lo = lo.min(t.len());
        while !t.is_char_boundary(lo) {
            lo -= 1;
        }
        let mut hi = hi.min(t.len());
        while !t.is_char_boundary(hi) {
            hi += 1;
        }
        if lo < hi {
            self.of[class as usize].push(lo..hi);
        }
    }
}

/// Sort and merge overlapping windows (touching ones stay apart: a match is inside one).
fn merge(v: &mut [Range<usize>]) -> Vec<Range<usize>> {
    v.sort_unstable_by_key(|r| r.start);
    let mut out: Vec<Range<usize>> = Vec::with_capacity(v.len());
    for r in v.iter() {
        match out.last_mut() {
            Some(last) if r.start < last.end => last.end = last.end.max(r.end),
            _ => out.push(r.clone()),
        }
    }
    out
}

fn is_space(c: u8) -> bool {
    matches!(c, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ')
}

/// The first index from `from` whose byte fails `f` (or the end).
fn run_end(b: &[u8], from: usize, f: impl Fn(u8) -> bool) -> usize {
    let from = from.min(b.len());
    from + b[from..].iter().position(|&c| !f(c)).unwrap_or(b.len() - from)
}

/// The literals of the secret classes, in the order `secrets` reads their ids.
const LITERALS: &[&str] = &[
    "-----BEGIN ", // 0: private key
    "eyJ",         // 1: JWT
    "AKIA",        // 2..=5: AWS
    "ASIA",
    "ABIA",
    "ACCA",
    "AIza", // 6: Google
    "ghp_", // 7..=12: GitHub
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xox",      // 13: Slack token
    "rk_live_", // 14..=17: Stripe
    "rk_test_",
    "sk_live_",
    "sk_test_",
    "sk-", // 18: API key
    "://", // 19: connection password, Slack webhook
];

static SECRET_LITERALS: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder().match_kind(MatchKind::LeftmostFirst).build(LITERALS).expect("secret literals compile")
});

fn secrets(w: &mut Push) {
    let b = w.text.as_bytes();
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    let token = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    // Every occurrence of every literal, even inside another one: no literal is a prefix of
    // another, so at most one starts at each position, and each search resumes one byte on.
    let mut from = 0;
    while let Some(m) = SECRET_LITERALS.find(Input::new(b).span(from..b.len())) {
        let p = m.start();
        from = p + 1;
        match m.pattern().as_usize() {
            // `(?s:.*?)` up to an END line or the end of the text.
            0 => w.add(Class::PrivateKey, p, b.len()),
            1 => w.add(Class::Jwt, p, run_end(b, p, |c| token(c) || c == b'.')),
            2..=5 => w.add(Class::AwsKey, p, p + 20),
            6 => w.add(Class::GoogleKey, p, p + 39),
            7..=12 => w.add(Class::GithubToken, p, run_end(b, p, |c| alnum(c) || c == b'_').min(p + 266)),
            13 => w.add(Class::SlackToken, p, run_end(b, p, |c| alnum(c) || c == b'-')),
            14..=17 => w.add(Class::StripeKey, p, run_end(b, p + 8, alnum)),
            18 => w.add(Class::ApiKey, p, run_end(b, p + 3, token)),
            _ => {
                connection_password(w, p);
                const HOOK: &[u8] = b"://hooks.slack.com/services/";
                if p >= 5 && &b[p - 5..p] == b"https" && b[p..].starts_with(HOOK) {
                    let end = run_end(b, p + HOOK.len(), |c| token(c) || c == b'/');
                    w.add(Class::SlackToken, p - 5, end);
                }
            }
        }
    }
}

/// `scheme://user:password@` around the `://` at `p`: the user part cannot hold `:`, so it
/// ends at the first `:`, `/`, `@` or space; the password ends at the first `@`, `/` or space,
/// which must be `@`. Lengths are in characters of up to 4 bytes.
fn connection_password(w: &mut Push, p: usize) {
    let b = w.text.as_bytes();
    let mut s = p;
    while s > 0 && p - s < 21 && (b[s - 1].is_ascii_alphanumeric() || matches!(b[s - 1], b'+' | b'.' | b'-')) {
        s -= 1;
    }
    if p - s < 2 {
        return;
    }
    let user = p + 3;
    let cap = (user + 401).min(b.len());
    let Some(k) = b[user..cap].iter().position(|&c| matches!(c, b':' | b'/' | b'@') || is_space(c)) else {
        return;
    };
    if k == 0 || b[user + k] != b':' {
        return;
    }
    let pass = user + k + 1;
    let cap = (pass + 801).min(b.len());
    let Some(k) = b[pass..cap].iter().position(|&c| matches!(c, b'@' | b'/') || is_space(c)) else {
        return;
    };
    if k > 0 && b[pass + k] == b'@' {
        w.add(Class::ConnectionPassword, s, pass + k + 1);
    }
}

/// `name = value` pairs: anchored on the `:` or `=`. Before it: optional spaces, an optional
/// quote, then the run of `[\w.-]` that ends in the key word plus at most 10 characters and
/// starts at most 30 characters before the key word (at most 13 long). After it: spaces, an
/// optional quote and a value of 8 to 200 characters.
fn key_values(w: &mut Push) {
    let b = w.text.as_bytes();
    // `(?i)` lets `s` match `ſ` (U+017F) and `k` match the Kelvin sign (U+212A); this pass only
    // knows ASCII, so with either in the text, search all of it.
    if !w.text.is_ascii() && (w.text.contains('\u{17F}') || w.text.contains('\u{212A}')) {
        w.add(Class::KeyValueSecret, 0, b.len());
        return;
    }
    let word = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-');
    for c in memchr::memchr2_iter(b':', b'=', b) {
        let mut r = c;
        while r > 0 && is_space(b[r - 1]) {
            r -= 1;
        }
        if r > 0 && matches!(b[r - 1], b'"' | b'\'') {
            r -= 1;
        }
        let mut s = r;
        while s > 0 && r - s < 53 && word(b[s - 1]) {
            s -= 1;
        }
        if !has_key_word(&b[s.max(r.saturating_sub(23))..r]) {
            continue;
        }
        let mut v = c + 1;
        while v < b.len() && is_space(b[v]) {
            v += 1;
        }
        if v < b.len() && matches!(b[v], b'"' | b'\'') {
            v += 1;
        }
        let cap = (v + 800).min(b.len());
        let e = v + b[v..cap]
            .iter()
            .position(|&c| is_space(c) || matches!(c, b'"' | b'\'' | b',' | b';' | b'&'))
            .unwrap_or(cap - v);
        if e - v >= 8 {
            w.add(Class::KeyValueSecret, s, e);
        }
    }
}

/// Whether `w` holds a part every key word has (ASCII case-insensitively).
fn has_key_word(w: &[u8]) -> bool {
    const PARTS: [&[u8]; 6] = [b"passw", b"pwd", b"secret", b"token", b"key", b"credential"];
    (0..w.len()).any(|i| PARTS.iter().any(|p| w.len() - i >= p.len() && w[i..i + p.len()].eq_ignore_ascii_case(p)))
}

/// Emails: the `@`, at most 64 local-part characters before it, the run of domain characters
/// after it.
fn emails(w: &mut Push) {
    let b = w.text.as_bytes();
    for p in memchr::memchr_iter(b'@', b) {
        let mut s = p;
        while s > 0
            && p - s < 64
            && (b[s - 1].is_ascii_alphanumeric() || matches!(b[s - 1], b'.' | b'_' | b'%' | b'+' | b'-'))
        {
            s -= 1;
        }
        let e = run_end(b, p + 1, |c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-'));
        if s < p && e > p + 1 {
            w.add(Class::Email, s, e);
        }
    }
}

/// Phone, card and social security numbers lie in a run of digits (`\d` is any Unicode decimal
/// digit), spaces, `.`, `-`, `(`, `)` and `+` holding at least 7, 13 and 9 digits; IBANs and UK
/// national insurance numbers start with two capital letters just before a digit (or a space
/// and a digit) and are at most 50 and 32 bytes long.
fn numbers(w: &mut Push) {
    let t = w.text;
    let b = t.as_bytes();
    let upper = |i: usize| b[i].is_ascii_uppercase();
    let mut i = 0;
    while let Some(d) = next_digit(t, i) {
        if d >= 2 && upper(d - 2) && upper(d - 1) {
            w.add(Class::Iban, d - 2, d + 48);
            w.add(Class::NationalId, d - 2, d + 30);
        }
        if d >= 3 && is_space(b[d - 1]) && upper(d - 3) && upper(d - 2) {
            w.add(Class::NationalId, d - 3, d + 29);
        }
        let start = if d > 0 && matches!(b[d - 1], b'+' | b'(') { d - 1 } else { d };
        let (mut j, mut digits) = (d, 0);
        while j < b.len() {
            let c = b[j];
            if c.is_ascii_digit() {
                digits += 1;
                j += 1;
            } else if is_space(c) || matches!(c, b'.' | b'-' | b'(' | b')' | b'+') {
                j += 1;
            } else if c >= 0x80 {
                match t.get(j..).and_then(|s| s.chars().next()) {
                    Some(ch) if maybe_digit(ch) => {
                        digits += 1;
                        j += ch.len_utf8();
                    }
                    _ => break,
                }
            } else {
                break;
            }
        }
        if digits >= 7 {
            w.add(Class::Phone, start, j);
        }
        if digits >= 9 {
            w.add(Class::NationalId, start, j);
        }
        if digits >= 13 {
            w.add(Class::Card, start, j);
        }
        i = j.max(d + 1);
    }
}

/// The next ASCII digit or non-ASCII numeric character (a superset of `\d`) from `i`, which is
/// a character boundary. Eight ASCII bytes at a time.
fn next_digit(t: &str, mut i: usize) -> Option<usize> {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let b = t.as_bytes();
    loop {
        while let Some(chunk) = b.get(i..i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().ok()?);
            let low = w & !HIGH;
            // bit 7 of each byte: at least b'0', at least b'9' + 1 (no carry: low ≤ 0x7F).
            let ge0 = low.wrapping_add(0x5050_5050_5050_5050);
            let ge10 = low.wrapping_add(0x4646_4646_4646_4646);
            if ((ge0 & !ge10) | w) & HIGH != 0 {
                break;
            }
            i += 8;
        }
        let c = *b.get(i)?;
        if c.is_ascii_digit() {
            return Some(i);
        }
        if c < 0x80 {
            i += 1;
            continue;
        }
        match t.get(i..).and_then(|s| s.chars().next()) {
            Some(ch) if maybe_digit(ch) => return Some(i),
            Some(ch) => i += ch.len_utf8(),
            None => i += 1,
        }
    }
}

/// A superset of the non-ASCII characters of `\d` (Unicode `Nd`): numeric, and not in the
/// stretches with no decimal digit at all (U+0080–U+065F: Latin, Greek, Cyrillic, …;
/// U+1C5A–U+A61F: general punctuation, symbols, CJK), which are most non-ASCII text.
pub(super) fn maybe_digit(ch: char) -> bool {
    let u = ch as u32;
    ((0x660..0x1C5A).contains(&u) || u >= 0xA620) && ch.is_numeric()
}
