//! Redaction of secrets and personal data in text that leaves Warden (tool results, resource
//! contents, prompt messages, error messages).
//!
//! Defends against credentials and personal data in upstream output reaching the model, the
//! client, or a log: cloud keys (AWS, Google), GitHub/Slack/Stripe/OpenAI-style tokens, JWTs,
//! PEM private keys, passwords in connection strings, high-entropy values next to key-like
//! names; emails, phone numbers, card numbers (Luhn-checked), IBANs (mod-97 checked), US social
//! security and UK national insurance numbers. Each class can be switched off in config.
//! Does not defend against: secrets with no recognisable shape or name (a bare random string),
//! data split across several content items, encoded data (base64 of a key), national ids of
//! countries not listed, phone numbers written in words. Redaction replaces, it does not
//! reversibly mask: `[REDACTED:<class>]`.
//!
//! Speed: a class's regex runs only on the windows of the text that [`prefilter`] finds in a few
//! fast passes (rare literals, `@`, `:`/`=`, digit runs), each window holding every match the
//! class can have there. The result is the same as searching the whole text, which
//! [`reference`] does; tests and the `detectors` fuzz target compare the two.

use regex::{Captures, Regex};
use regex_automata::{meta, Input};
use std::borrow::Cow;
use std::ops::Range;
use std::sync::LazyLock;

#[cfg(test)]
mod equivalence;
mod prefilter;
#[doc(hidden)]
pub mod reference;
#[cfg(test)]
mod tests;

/// A class of sensitive data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    AwsKey,
    GoogleKey,
    GithubToken,
    SlackToken,
    StripeKey,
    ApiKey,
    Jwt,
    PrivateKey,
    ConnectionPassword,
    KeyValueSecret,
    Email,
    Phone,
    Card,
    Iban,
    NationalId,
}

impl Class {
    /// Secret classes, in the order they are applied (private keys and JWTs before the
    /// key=value rule, which would otherwise take a part of them).
    pub const SECRETS: &'static [Class] = &[
        Class::PrivateKey,
        Class::Jwt,
        Class::AwsKey,
        Class::GoogleKey,
        Class::GithubToken,
        Class::SlackToken,
        Class::StripeKey,
        Class::ApiKey,
        Class::ConnectionPassword,
        Class::KeyValueSecret,
    ];
    /// Personal data classes, in the order they are applied (IBANs and cards before phones).
    pub const PII: &'static [Class] = &[Class::Email, Class::Iban, Class::Card, Class::NationalId, Class::Phone];

    pub fn name(self) -> &'static str {
        match self {
            Class::AwsKey => "aws_key",
            Class::GoogleKey => "google_key",
            Class::GithubToken => "github_token",
            Class::SlackToken => "slack_token",
            Class::StripeKey => "stripe_key",
            Class::ApiKey => "api_key",
            Class::Jwt => "jwt",
            Class::PrivateKey => "private_key",
            Class::ConnectionPassword => "connection_password",
            Class::KeyValueSecret => "key_value_secret",
            Class::Email => "email",
            Class::Phone => "phone",
            Class::Card => "card",
            Class::Iban => "iban",
            Class::NationalId => "national_id",
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            Class::AwsKey => r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
            Class::GoogleKey => r"\bAIza[0-9A-Za-z_\-]{35}\b",
            Class::GithubToken => r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
            Class::SlackToken => r"\bxox[abposr]-[A-Za-z0-9-]{10,}|https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+",
            Class::StripeKey => r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}\b",
            Class::ApiKey => r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}\b",
            Class::Jwt => r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
            Class::PrivateKey => {
                r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\z)"
            }
            // Group 1 keeps scheme and user, group 2 is the password.
            Class::ConnectionPassword => r"\b([a-zA-Z][a-zA-Z0-9+.\-]{1,20}://[^:/\s@]{1,100}:)([^@\s/]{1,200})@",
            // Group 1 keeps the key and separator, group 2 is the value.
            Class::KeyValueSecret => {
                r#"(?i)(\b[\w.-]{0,30}(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|client[_-]?secret|credentials?)[\w.-]{0,10}["']?\s*[:=]\s*["']?)([^\s"',;&]{8,200})"#
            }
            Class::Email => {
                r"\b[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24}\b"
            }
            Class::Phone => {
                r"(?:\+\d{1,3}[\s.\-]?)?(?:\(\d{2,4}\)|\b\d{3})[\s.\-]\d{3}[\s.\-]\d{4}\b|\+\d{1,3}(?:[\s.\-]?\d{2,4}){3,5}\b"
            }
            Class::Card => r"\b\d(?:[ \-]?\d){12,18}\b",
            Class::Iban => r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b",
            Class::NationalId => r"\b\d{3}-\d{2}-\d{4}\b|\b[A-CEGHJ-PR-TW-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]\b",
        }
    }

    /// Checks a candidate (`m`, the whole match; `value`, group 2) beyond its shape; false
    /// keeps the text.
    fn confirm(self, m: &str, value: Option<&str>) -> bool {
        match self {
            Class::Card => luhn(m),
            Class::Iban => iban_ok(m),
            Class::NationalId => ssn_ok(m),
            Class::KeyValueSecret => value.is_some_and(looks_secret),
            Class::Phone => m.chars().filter(char::is_ascii_digit).count() >= 10,
            _ => true,
        }
    }

    fn keeps_prefix(self) -> bool {
        matches!(self, Class::ConnectionPassword | Class::KeyValueSecret)
    }
}

/// Every class, secrets first.
static ALL: LazyLock<Vec<Class>> = LazyLock::new(|| Class::SECRETS.iter().chain(Class::PII).copied().collect());

/// Each class's regex, indexed like [`ALL`]; the engine under `regex`, so that a search can be
/// bounded to a window while `\b` and `\z` still see the text around it.
static EACH: LazyLock<Vec<meta::Regex>> = LazyLock::new(|| {
    ALL.iter()
        .map(|c| meta::Regex::new(&crate::inject::ascii_classes(c.pattern())).expect("redaction pattern compiles"))
        .collect()
});

/// A redactor for a chosen set of classes.
#[derive(Debug, Clone)]
pub struct Redactor {
    enabled: Vec<bool>,
}

impl Default for Redactor {
    /// Every class.
    fn default() -> Self {
        Redactor { enabled: vec![true; ALL.len()] }
    }
}

impl Redactor {
    pub fn new(classes: &[Class]) -> Self {
        Redactor { enabled: ALL.iter().map(|c| classes.contains(c)).collect() }
    }

    pub fn is_empty(&self) -> bool {
        !self.enabled.iter().any(|&e| e)
    }

    /// Replace every enabled class in `text`; the classes found are appended to `found`.
    /// Runs until nothing more is found (a replacement ends a digit run, which can expose a
    /// valid number the longer run hid), so redacting the output again changes nothing.
    ///
    /// Each class's regex runs only on the windows [`prefilter`] finds around its anchors
    /// (rare literals, `@`, `:`/`=`, digit runs), which hold every match it can have; the
    /// result is the same as searching the whole text ([`reference`] is that search).
    pub fn redact<'a>(&self, text: &'a str, found: &mut Vec<Class>) -> Cow<'a, str> {
        if self.is_empty() || text.len() < 6 {
            return Cow::Borrowed(text);
        }
        let mut out = Cow::Borrowed(text);
        let mut windows = prefilter::Windows::default();
        for _ in 0..8 {
            let mut changed = false;
            for (i, &class) in ALL.iter().enumerate().filter(|&(i, _)| self.enabled[i]) {
                let regions = windows.of(class, &out);
                if regions.is_empty() {
                    continue;
                }
                if let Some(r) = replace_confirmed(&EACH[i], class, &out, &regions) {
                    out = Cow::Owned(r);
                    windows = prefilter::Windows::default();
                    changed = true;
                    if !found.contains(&class) {
                        found.push(class);
                    }
                }
            }
            if !changed {
                break;
            }
        }
        out
    }
}

/// Replace the confirmed matches of one class inside `regions` (sorted, disjoint, each holding
/// every match that starts in it); `None` when there are none. A match that fails its check
/// (Luhn, mod 97, …) does not consume its text: the search resumes one character later, so a
/// valid number inside a longer invalid run is still found.
fn replace_confirmed(re: &meta::Regex, class: Class, text: &str, regions: &[Range<usize>]) -> Option<String> {
    let mut out = String::new();
    let mut copied = 0;
    let mut at = 0;
    let mut caps = re.create_captures();
    for r in regions {
        at = at.max(r.start);
        while at < r.end {
            re.search_captures(&Input::new(text).range(at..r.end), &mut caps);
            let Some(m) = caps.get_match() else { break };
            let whole = &text[m.range()];
            let value = caps.get_group(2).map(|g| &text[g.range()]);
            if class.confirm(whole, value) {
                out.push_str(&text[copied..m.start()]);
                if class.keeps_prefix() {
                    out.push_str(caps.get_group(1).map_or("", |g| &text[g.range()]));
                    out.push_str(&format!("[REDACTED:{}]", class.name()));
                    if class == Class::ConnectionPassword {
                        out.push('@');
                    }
                } else {
                    out.push_str(&format!("[REDACTED:{}]", class.name()));
                }
                copied = m.end();
                at = if m.end() > m.start() { m.end() } else { m.end() + 1 };
            } else {
                at = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
            }
            while at < text.len() && !text.is_char_boundary(at) {
                at += 1;
            }
        }
    }
    if copied == 0 && out.is_empty() {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

static STACK_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&crate::inject::ascii_classes(r#"(?m)^\s*(at\s+\S.*|File ".*", line \d+.*|Traceback \(most recent call last\):.*|thread '.*' panicked at .*|\d+:\s+0x[0-9a-f]+ - .*|goroutine \d+ \[.*)$"#))
        .expect("stack line pattern")
});
static FS_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&crate::inject::ascii_classes(r"(?:\b[A-Za-z]:\\|~/|(?:^|[\s'\x22(=:])/)(?:[\w.@+-]+[/\\])+[\w.@+-]*"))
        .expect("path pattern")
});
static INTERNAL_ADDR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&crate::inject::ascii_classes(r"\b(?:10(?:\.\d{1,3}){3}|127(?:\.\d{1,3}){3}|192\.168(?:\.\d{1,3}){2}|172\.(?:1[6-9]|2\d|3[01])(?:\.\d{1,3}){2}|169\.254(?:\.\d{1,3}){2}|[\w-]+(?:\.[\w-]+)*\.(?:internal|local|localdomain|svc\.cluster\.local|corp|lan))(?::\d{1,5})?\b|\blocalhost:\d{1,5}\b"))
        .expect("internal address pattern")
});

/// Scrub an error message for a client: stack traces are cut, file paths and internal addresses
/// (private IPs, `*.internal`, `*.svc.cluster.local`, `localhost:port`) replaced. Secrets are
/// left to [`Redactor::redact`], which callers run afterwards.
pub fn scrub_error(msg: &str) -> String {
    let mut out = msg.to_string();
    if let Some(m) = STACK_LINE.find(&out) {
        out.truncate(m.start());
        out = out.trim_end().to_string();
        out.push_str(" [stack trace removed]");
    }
    let out = FS_PATH.replace_all(&out, |c: &Captures| {
        let m = &c[0];
        let lead: String = m.chars().take_while(|ch| !matches!(ch, '/' | '~') && !ch.is_ascii_alphabetic()).collect();
        format!("{lead}[path]")
    });
    INTERNAL_ADDR.replace_all(&out, "[internal address]").into_owned()
}

fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|&d| d == digits[0]) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn iban_ok(s: &str) -> bool {
    let c: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !(15..=34).contains(&c.len()) {
        return false;
    }
    let mut rem: u32 = 0;
    for &b in c[4..].iter().chain(&c[..4]) {
        let v = match b {
            b'0'..=b'9' => (b - b'0') as u32,
            b'A'..=b'Z' => (b - b'A') as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

fn ssn_ok(s: &str) -> bool {
    if !s.as_bytes()[0].is_ascii_digit() {
        return true; // UK national insurance shape
    }
    let p: Vec<&str> = s.split('-').collect();
    !(p[0] == "000" || p[0] == "666" || p[0].starts_with('9') || p[1] == "00" || p[2] == "0000")
}

/// A value next to a key-like name is a secret unless it is obviously not (a placeholder, a
/// word, a reference such as `${VAR}`).
fn looks_secret(v: &str) -> bool {
    if v.starts_with("${") || v.starts_with('<') || v.starts_with('[') || v.starts_with('%') {
        return false;
    }
    let lower = v.to_ascii_lowercase();
    if [
        "redacted",
        "xxxxxxxx",
        "********",
        "changeme",
        "placeholder",
        "required",
        "optional",
        "string",
        "true",
        "false",
        "null",
        "none",
    ]
    .iter()
    .any(|p| lower.contains(p))
    {
        return false;
    }
    let has_digit = v.bytes().any(|b| b.is_ascii_digit());
    let has_alpha = v.bytes().any(|b| b.is_ascii_alphabetic());
    let has_other = v.bytes().any(|b| !b.is_ascii_alphanumeric());
    (has_digit && has_alpha) || (has_other && entropy(v) >= 3.0) || entropy(v) >= 3.5
}

/// Shannon entropy in bits per byte.
pub fn entropy(s: &str) -> f64 {
    let mut n = [0u32; 256];
    for b in s.bytes() {
        n[b as usize] += 1;
    }
    let len = s.len() as f64;
    n.iter().filter(|&&c| c > 0).map(|&c| c as f64 / len).map(|p| -p * p.log2()).sum()
}
