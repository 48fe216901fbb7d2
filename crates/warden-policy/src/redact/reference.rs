//! The redactor as it was before the candidate prefilter: one `RegexSet` over the whole text,
//! then each class's regex over the whole text. Kept as the definition of what the redactor
//! finds; the equivalence tests and the `detectors` fuzz target check [`super::Redactor`]
//! against it. Not for production use (several times slower).

use super::{Class, ALL};
use regex::{Regex, RegexSet};
use std::borrow::Cow;
use std::sync::LazyLock;

static COMPILED: LazyLock<(RegexSet, Vec<Regex>)> = LazyLock::new(|| {
    let pats: Vec<String> = ALL.iter().map(|c| crate::inject::ascii_classes(c.pattern())).collect();
    (
        RegexSet::new(&pats).expect("redaction patterns compile"),
        pats.iter().map(|p| Regex::new(p).expect("redaction pattern compiles")).collect(),
    )
});

/// [`super::Redactor::redact`] for the classes enabled in `enabled` (indexed like `ALL`).
pub fn redact<'a>(classes: &[Class], text: &'a str, found: &mut Vec<Class>) -> Cow<'a, str> {
    let enabled: Vec<bool> = ALL.iter().map(|c| classes.contains(c)).collect();
    if !enabled.iter().any(|&e| e) || text.len() < 6 {
        return Cow::Borrowed(text);
    }
    let (set, each) = &*COMPILED;
    let hits = set.matches(text);
    if !hits.matched_any() {
        return Cow::Borrowed(text);
    }
    let mut out = Cow::Borrowed(text);
    for _ in 0..8 {
        let mut changed = false;
        for (i, re) in each.iter().enumerate().filter(|&(i, _)| enabled[i]) {
            // Until something changed, the set says which classes can match at all.
            if matches!(out, Cow::Borrowed(_)) && !hits.matched(i) {
                continue;
            }
            if let Some(r) = replace_confirmed(re, ALL[i], &out) {
                out = Cow::Owned(r);
                changed = true;
                if !found.contains(&ALL[i]) {
                    found.push(ALL[i]);
                }
            }
        }
        if !changed {
            break;
        }
    }
    out
}

/// Replace the confirmed matches of one class; `None` when there are none. A match that fails
/// its check (Luhn, mod 97, …) does not consume its text: the search resumes one character
/// later, so a valid number inside a longer invalid run is still found.
fn replace_confirmed(re: &Regex, class: Class, text: &str) -> Option<String> {
    let mut out = String::new();
    let mut copied = 0;
    let mut at = 0;
    while at <= text.len() {
        let Some(c) = re.captures_at(text, at) else { break };
        let m = c.get(0).expect("group 0");
        if class.confirm(m.as_str(), c.get(2).map(|v| v.as_str())) {
            out.push_str(&text[copied..m.start()]);
            if class.keeps_prefix() {
                out.push_str(&c[1]);
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
    if copied == 0 && out.is_empty() {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}
