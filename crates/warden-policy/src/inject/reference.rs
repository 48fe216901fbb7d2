//! The injection scan as it was before the anchor windows: one `RegexSet` over the whole text,
//! then each matched rule's regex for the offset of its first match. Kept as the definition of
//! what the detector finds; the equivalence tests and the `detectors` fuzz target check
//! [`super::scan`] against it, and `scan` falls back to it when its windows cannot be used.

use super::{pattern, Finding, Verdict, RULES};
use regex::{Regex, RegexSet, RegexSetBuilder};
use std::sync::LazyLock;

struct Compiled {
    set: RegexSet,
    each: Vec<Regex>,
}

// The set's lazy DFA gets a large cache: with a small one it thrashes on these bounded
// repetitions and falls back to a slower engine (measured 0.07 GB/s with the default, 0.48 GB/s with 24 MB; more did not help).
static COMPILED: LazyLock<Compiled> = LazyLock::new(|| {
    let pats: Vec<String> = RULES.iter().map(pattern).collect();
    Compiled {
        set: RegexSetBuilder::new(&pats)
            .size_limit(64 << 20)
            .dfa_size_limit(24 << 20)
            .build()
            .expect("injection rules compile"),
        each: pats.iter().map(|p| Regex::new(p).expect("injection rule compiles")).collect(),
    }
});

/// [`super::scan`], searching the whole text.
pub fn scan(text: &str) -> Verdict {
    super::with_encoded(text, scan_rules(text), scan_rules)
}

/// The rules alone, searching the whole text.
pub(super) fn scan_rules(text: &str) -> Verdict {
    let c = &*COMPILED;
    let matched = c.set.matches(text);
    if !matched.matched_any() {
        return Verdict::default();
    }
    let findings: Vec<Finding> = matched
        .iter()
        .map(|i| {
            let r = &RULES[i];
            let at = c.each[i].find(text).map(|m| m.start()).unwrap_or(0);
            Finding { rule: r.id, category: r.category, weight: r.weight, at }
        })
        .collect();
    let score = findings.iter().map(|f| f.weight).sum::<f32>().min(1.0);
    Verdict { score, findings }
}
