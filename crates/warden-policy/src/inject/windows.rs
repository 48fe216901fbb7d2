//! Where each injection rule can match: windows around anchor words that every match of the
//! rule contains, found by Aho-Corasick searches (groups of literals of similar length) over an
//! ASCII-lowercased copy of the text.
//!
//! Bounds are counted in tokens: maximal runs of word characters (`[0-9A-Za-z_]`) or of other
//! characters. Every piece of a rule touches a known number of tokens at most (a word or a run
//! of `\s`/`\W` one, `.{0,n}` n, `(?:\W+\w+){0,k}` 2k), so a match holding an anchor starts at
//! most `back` tokens before the anchor's token and ends at most `fwd` tokens after it, however
//! long those tokens are (one token of slack is added on each side). A window is that stretch; the windows of a rule are merged where they
//! overlap, so each match lies whole inside one, and a bounded search that lets look-around see
//! the text around it (`regex_automata::Input::range`) finds the same first match as a search
//! of the whole text. Rules whose own regex is fast on any text (a literal prefilter) search the
//! whole text. Under `(?i)`, `ſ` matches `s` and the Kelvin sign `k`: with either in the text
//! there are no windows and the caller searches the whole text for every rule.

use super::RULES;
use aho_corasick::{AhoCorasick, Input, MatchKind};
use std::ops::Range;
use std::sync::LazyLock;

/// How far a match can reach around an anchor.
#[derive(Clone, Copy)]
enum Reach {
    /// `back` tokens before the anchor's token, `fwd` tokens after the token of its last byte.
    Tokens { back: u16, fwd: u16 },
    /// The email of `exfil.send`: `\b[\w.+-]+@[\w-]+\.\w` preceded by `back` tokens at most.
    Email { back: u16 },
}

/// One anchor of one rule: the literal (lowercase), what the rule has around it.
struct Anchor {
    rule: usize,
    lit: &'static str,
    word: Word,
    reach: Reach,
}

/// What every match of a rule has around an anchor's literal.
#[derive(Clone, Copy, PartialEq)]
enum Word {
    /// Nothing known.
    Any,
    /// `\b` before it (the literal starts with a word character).
    Start,
    /// `\b` before it, and after it `\b`, `\s` or another non-word character (the literal
    /// is a whole word): `act\s+as`, `(tool|function|with)\b`, `note\s+to`.
    Whole,
    /// After it `\b` (the literal ends with a word character) and nothing known before it:
    /// `\.env\b` (which `os.env` matches and `os.environ` does not).
    End,
}

use Word::{Any, End, Start, Whole};

/// Rules searched in the whole text (their regex has a literal prefilter and is fast anyway).
const WHOLE: &[&str] = &["exfil.markdown_image", "exfil.url_data", "impersonation.hidden_html"];

const fn t(back: u16, fwd: u16) -> Reach {
    Reach::Tokens { back, fwd }
}

/// `(rule, word, reach, literals)`; see each rule's pattern in `super::RULES`.
const ANCHORS: &[(&str, Word, Reach, &[&str])] = &[
    // verb W word2 \b (?:\W+\w+){0,3}? \W+ final: 9 + 1 + 7 + 1 tokens after the verb.
    (
        "override.ignore_previous",
        Start,
        t(0, 18),
        &["ignore", "disregard", "forget", "override", "skip", "bypass", "neglect", "cancel", "abandon", "discard"],
    ),
    // do \s+ not \s+ FOLLOW ; don ' t \s+ FOLLOW ; pay \s+ no \s+ attention \s+ TO
    ("override.ignore_previous", Whole, t(6, 18), &["follow", "obey"]),
    ("override.ignore_previous", Whole, t(0, 24), &["pay"]),
    // stop \s+ following ; no \s+ LONGER \s+ follow: two tokens more than a one-word verb
    ("override.ignore_previous", Start, t(0, 20), &["stop"]),
    ("override.ignore_previous", Start, t(2, 20), &["longer"]),
    // stop \s+ listening \s+ to \s+ the \s+ user
    ("override.ignore_everything", Start, t(0, 10), &["stop"]),
    // verb \s+ everything \b .{0,30} \b above ; ignore \s+ the \s+ user
    ("override.ignore_everything", Start, t(0, 33), &["ignore", "disregard", "forget"]),
    // noun \s+ (are|is) \s+ no \s+ longer \s+ apply
    ("override.cancelled", Start, t(0, 8), &["instruction", "rules", "prompt", "guideline", "direction", "directive"]),
    // new \s+ system \s+ NOUN \s* (:|follow|is)
    ("override.new_instructions", Start, t(4, 2), &["instruction", "task", "directive", "prompt"]),
    // you \s+ are \s+ NOW / from \s+ NOW \s+ on / do \s+ anything \s+ NOW
    // you \s+ are \s+ NOW \s+ no \s+ longer
    ("override.role", Whole, t(4, 4), &["now"]),
    ("override.role", Start, t(0, 2), &["developer"]),
    ("override.role", Start, t(0, 0), &["jailbr"]),
    ("override.role", Start, t(0, 4), &["pretend"]),
    // act \s+ as \s+ an \s+ evil
    ("override.role", Whole, t(0, 6), &["act"]),
    // disable \s+ all \s+ the \s+ content \s+ filters
    ("override.role", Start, t(0, 8), &["disable"]),
    // immerse \s+ yourself \s+ into \s+ the \s+ role ; known \s+ as \s+ DAN ; broken \s+ free \s+ of
    // \s+ the \s+ typical \s+ confines
    ("override.jailbreak", Start, t(0, 10), &["immerse"]),
    ("override.jailbreak", Whole, t(0, 14), &["known", "broken"]),
    // as \s+ an \s+ large \s+ LANGUAGE \s+ model \b .{0,60} \b you \s+ are \s+ required
    // (a two-letter literal would be found inside every "said" and "main": the space before
    // it instead, which the rule requires there)
    ("override.as_an_ai", Whole, t(6, 70), &["llm", "language"]),
    ("override.as_an_ai", Any, t(5, 70), &[" ai"]),
    // <\s*/?\s* WORD \s*> , \[\s* WORD \s*\] , (^|\n)\s* WORD \s*:
    (
        "impersonation.tag",
        Start,
        t(1, 1),
        &["important", "sys", "instruction", "admin", "secret", "hidden", "assistant"],
    ),
    // WORD \s+ to \s+ the \s+ language \s+ models ; message \s+ from \s+ the \s+ admin
    ("impersonation.address_ai", Whole, t(0, 9), &["note", "message", "attention", "hey", "hello"]),
    ("impersonation.address_ai", Start, t(0, 9), &["instruction"]),
    // ai \s+ AGENT \s+ that \s+ read
    ("impersonation.address_ai", Start, t(2, 4), &["agent", "model", "assistant"]),
    // do \s+ not \s+ tell \b .{0,20} \b the \s+ USER ; without \s+ telling \s+ the \s+ USER
    ("secrecy", Start, t(28, 0), &["user", "human"]),
    ("secrecy", Start, t(0, 2), &["secretly", "quietly", "silently"]),
    // call \s+ the \s+ `tool_name` \s+ WITH
    ("tool.call", Whole, t(6, 0), &["function", "with"]),
    // call \s+ the \s+ `name` \s+ TOOL \b .{0,40} \b to \s+ send
    ("tool.call", Whole, t(6, 43), &["tool"]),
    // you \s+ are \s+ required \s+ to \s+ now \s+ CALL \s+ the \s+ `name
    // you \s+ are \s+ required \s+ to \s+ now \s+ CALL \s+ the \s+ `send_email (not the `_` of the
    // name: JSON is full of them; not modal verbs: "have" and "should" are everywhere)
    // … CALL \s+ the \s+ `get-roots-list-x` \s+ right \s+ away (a name is seven tokens at most)
    ("tool.must_call", Whole, t(11, 16), &["invoke", "call", "execute", "trigger"]),
    // base64 - DECODE [^.\n]{0,60} \b then \s+ carry \s+ out ; run \s+ the \s+ DECODED ;
    // DECODED \s+ version \b .{0,40} \b as \s+ your
    // (`Any`: "base64decode" is one word)
    ("tool.decode_and_follow", Any, t(4, 70), &["decode"]),
    // before \s+ you \s+ continue \b .{0,60} \b read
    ("tool.before_using", Start, t(0, 65), &["before"]),
    // execute \s+ the \s+ following \s+ COMMAND
    ("tool.run_this", Whole, t(6, 0), &["command", "script", "code"]),
    // rm \s+ -rf \s+ /
    ("tool.shell", Any, t(1, 1), &["-rf"]),
    // curl \s+ [^|\n]{0,80} \| \s* bash (no \b before curl)
    ("tool.shell", Any, t(0, 84), &["curl"]),
    // verb .{0,40} noun .{0,60} https?://
    ("exfil.send", Any, t(103, 0), &["://"]),
    ("exfil.send", Any, Reach::Email { back: 103 }, &["@"]),
    // verb .{0,40} (api[\s_-]?keys? | system \s+ prompt | access \s+ token | …), no \b before them
    (
        "exfil.secrets",
        Any,
        t(43, 2),
        &["api", "password", "credentials", "secret", "token", "~/.ssh", "id_rsa", ".env", "mcp.json", "system"],
    ),
    // chat \s+ HISTORY \s+ as ; MESSAGES \s+ from \s+ this \s+ session \s+ as \s+ the \s+ attachment
    ("exfil.context", Start, t(2, 14), &["conversation", "history", "messages", "output", "prompt", "window"]),
    // all \s+ of \s+ the \s+ previous \s+ tool \s+ OUTPUTS ; the \s+ entire \s+ CONVERSATION \s+ so \s+ far
    ("exfil.context_object", Start, t(12, 4), &["output", "messages", "conversation", "context", "history"]),
    // CALL \s+ the \s+ `get-roots-list-x` (
    ("tool.call_syntax", Whole, t(0, 13), &["call", "invoke", "execute", "trigger"]),
    // verb .{0,40} PATH(two to six tokens, then one) .{0,60} verb
    // Where every match has `\b` after the literal (End), a literal inside a longer word
    // (`.environ`, `_historyfile`) is passed over.
    (
        "exfil.secret_file",
        End,
        t(42, 72),
        &[
            "~/.ssh",
            "id_rsa",
            "id_ed25519",
            "id_ecdsa",
            "id_dsa",
            ".aws",
            ".netrc",
            ".npmrc",
            ".pypirc",
            ".pgpass",
            ".docker",
            ".kube",
            ".env",
            "_history",
        ],
    ),
    (
        "exfil.secret_file",
        Any,
        t(42, 72),
        &["mcp.json", "claude_desktop_config", ".git-credentials", "wallet.dat", "/etc/shadow"],
    ),
    // following \s+ code \s+ NOUN \b .{0,80} \b as \s+ part \s+ of \s+ your \s+ code
    (
        "response.code",
        Whole,
        t(4, 89),
        &["snippet", "excerpt", "block", "section", "code", "fragment", "segment", "piece"],
    ),
    // your \s+ CODE \s+ should
    ("response.code", Whole, t(2, 2), &["code", "implementation", "solution", "program"]),
    // verb .{0,80} in \s+ your \s+ RESPONSE ; your \s+ RESPONSE \s+ should
    ("response.directive", Start, t(85, 2), &["response", "answer", "reply", "output"]),
];

/// Literals per search (measured on BIPIA text with 100 literals: groups of 12 to 16 are
/// equally fast, of 8 or 24 slower).
const GROUP: usize = 14;

struct Compiled {
    /// Prefix-free literals (at most one starts at any position) in groups of at most
    /// [`GROUP`], sorted by length so that a group's literals share a length (one search for
    /// all is several times slower; a search for 20 literals or more is about twice as slow as
    /// one for 14, measured on BIPIA text), each with the anchors whose literal starts with it.
    literals: Vec<(AhoCorasick, Vec<Vec<Anchor>>)>,
    /// Anchors of one byte (`@`), found with `memchr` (they would slow the literal search).
    bytes: Vec<(u8, Vec<Anchor>)>,
    /// The whole-text rules.
    whole: Vec<usize>,
}

fn rule_index(id: &str) -> usize {
    RULES.iter().position(|r| r.id == id).expect("anchor names a rule")
}

static COMPILED: LazyLock<Compiled> = LazyLock::new(|| {
    let all: Vec<Anchor> = ANCHORS
        .iter()
        .flat_map(|&(id, word, reach, lits)| {
            let rule = rule_index(id);
            lits.iter().map(move |&lit| Anchor { rule, lit, word, reach })
        })
        .collect();
    // The literals no other literal is a proper prefix of.
    let mut roots: Vec<&str> = all.iter().map(|a| a.lit).collect();
    roots.sort_unstable();
    roots.dedup();
    let roots: Vec<&str> =
        roots.iter().copied().filter(|l| !roots.iter().any(|o| o.len() < l.len() && l.starts_with(o))).collect();
    let single: Vec<&str> = roots.iter().copied().filter(|r| r.len() == 1).collect();
    let mut multi: Vec<&str> = roots.iter().copied().filter(|r| r.len() > 1).collect();
    multi.sort_by_key(|r| (r.len(), *r));
    let n = multi.len().div_ceil(GROUP);
    let per = multi.len().div_ceil(n);
    let groups: Vec<Vec<&str>> = multi.chunks(per.max(1)).map(|c| c.to_vec()).collect();
    let mut literals: Vec<(Vec<&str>, Vec<Vec<Anchor>>)> =
        groups.into_iter().map(|r| (r.clone(), r.iter().map(|_| Vec::new()).collect())).collect();
    let mut bytes: Vec<(u8, Vec<Anchor>)> = single.iter().map(|r| (r.as_bytes()[0], Vec::new())).collect();
    'next: for a in all {
        for (roots, anchors) in &mut literals {
            if let Some(i) = roots.iter().position(|r| a.lit.starts_with(r)) {
                anchors[i].push(a);
                continue 'next;
            }
        }
        let i = bytes.iter().position(|(c, _)| a.lit.as_bytes()[0] == *c).expect("every literal has a root");
        bytes[i].1.push(a);
    }
    Compiled {
        literals: literals
            .into_iter()
            .map(|(roots, anchors)| {
                let ac = AhoCorasick::builder().match_kind(MatchKind::LeftmostFirst).build(&roots);
                (ac.expect("anchors compile"), anchors)
            })
            .collect(),
        bytes,
        whole: WHOLE.iter().map(|id| rule_index(id)).collect(),
    }
});

pub(super) fn warm() {
    LazyLock::force(&COMPILED);
}

/// The windows of every rule (indexed like `RULES`), sorted and disjoint; `None` when the text
/// holds a character that `(?i)` folds to an ASCII letter (search the whole text then).
pub(super) fn of(text: &str) -> Option<Vec<Vec<Range<usize>>>> {
    if !text.is_ascii() && folds_to_ascii(text.as_bytes()) {
        return None;
    }
    // The lowercase copy goes to a buffer kept by the thread (up to a size), not a fresh
    // allocation each call.
    if text.len() > KEPT {
        return Some(windows(text, &mut Vec::new()));
    }
    LOWER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut lower) => Some(windows(text, &mut lower)),
        Err(_) => Some(windows(text, &mut Vec::new())),
    })
}

/// The largest text whose lowercase copy is made in the thread's buffer.
const KEPT: usize = 1 << 20;

thread_local! {
    static LOWER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether `b` holds `ſ` (C5 BF) or the Kelvin sign (E2 84 AA): one search for their last
/// bytes, each hit checked.
fn folds_to_ascii(b: &[u8]) -> bool {
    memchr::memchr2_iter(0xBF, 0xAA, b).any(|i| match b[i] {
        0xBF => i >= 1 && b[i - 1] == 0xC5,
        _ => i >= 2 && b[i - 2..i] == [0xE2, 0x84],
    })
}

/// The windows of every rule, with `lower` as the buffer for the lowercase copy.
fn windows(text: &str, lower: &mut Vec<u8>) -> Vec<Vec<Range<usize>>> {
    let c = &*COMPILED;
    let mut out: Vec<Vec<Range<usize>>> = RULES.iter().map(|_| Vec::new()).collect();
    for &i in &c.whole {
        out[i].push(0..text.len());
    }
    lower.clear();
    lower.extend_from_slice(text.as_bytes());
    lower.make_ascii_lowercase();
    let lower = &lower[..];
    for (ac, anchors) in &c.literals {
        let mut from = 0;
        while let Some(m) = ac.find(Input::new(lower).span(from..lower.len())) {
            from = m.start() + 1;
            for a in &anchors[m.pattern().as_usize()] {
                add(text, lower, m.start(), a, &mut out);
            }
        }
    }
    for (byte, anchors) in &c.bytes {
        for p in memchr::memchr_iter(*byte, lower) {
            for a in anchors {
                add(text, lower, p, a, &mut out);
            }
        }
    }
    for w in &mut out {
        merge(w);
    }
    out
}

/// The window of anchor `a` if it is at `p`.
fn add(text: &str, lower: &[u8], p: usize, a: &Anchor, out: &mut [Vec<Range<usize>>]) {
    let b = text.as_bytes();
    if !lower[p..].starts_with(a.lit.as_bytes())
        || (matches!(a.word, Start | Whole) && p > 0 && is_word(b[p - 1]))
        || (matches!(a.word, Whole | End) && b.get(p + a.lit.len()).is_some_and(|&c| is_word(c)))
    {
        return;
    }
    let end = p + a.lit.len() - 1;
    let (lo, hi) = match a.reach {
        Reach::Tokens { back, fwd } => (back_tokens(b, p, back + 1), fwd_tokens(b, end, fwd + 1)),
        Reach::Email { back } => {
            let mut s = p;
            while s > 0 && (is_word(b[s - 1]) || matches!(b[s - 1], b'.' | b'+' | b'-')) {
                s -= 1;
            }
            let e = p + 1 + b[p + 1..].iter().position(|&c| !is_word(c) && c != b'-').unwrap_or(b.len() - p - 1);
            (back_tokens(b, s, back + 1), e + 2)
        }
    };
    out[a.rule].push(floor(text, lo)..ceil(text, hi));
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The start of the token `n` tokens before the one holding byte `p` (`p` < the length).
fn back_tokens(b: &[u8], p: usize, n: u16) -> usize {
    let w = is_word(b[p]);
    let mut i = p;
    while i > 0 && is_word(b[i - 1]) == w {
        i -= 1;
    }
    for _ in 0..n {
        let Some(&c) = b.get(i.wrapping_sub(1)) else { break };
        let w = is_word(c);
        while i > 0 && is_word(b[i - 1]) == w {
            i -= 1;
        }
    }
    i
}

/// The end of the token `n` tokens after the one holding byte `p` (`p` < the length).
fn fwd_tokens(b: &[u8], p: usize, n: u16) -> usize {
    let w = is_word(b[p]);
    let mut i = p + 1;
    while i < b.len() && is_word(b[i]) == w {
        i += 1;
    }
    for _ in 0..n {
        let Some(&c) = b.get(i) else { break };
        let w = is_word(c);
        while i < b.len() && is_word(b[i]) == w {
            i += 1;
        }
    }
    i
}

fn floor(t: &str, mut i: usize) -> usize {
    i = i.min(t.len());
    while !t.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil(t: &str, mut i: usize) -> usize {
    i = i.min(t.len());
    while !t.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Sort and merge overlapping windows in place.
fn merge(v: &mut Vec<Range<usize>>) {
    v.sort_unstable_by_key(|r| r.start);
    // v[..kept] are the merged windows so far.
    let mut kept: usize = 0;
    for i in 0..v.len() {
        let r = v[i].clone();
        match kept.checked_sub(1).and_then(|k| v.get_mut(k)) {
            Some(last) if r.start < last.end => last.end = last.end.max(r.end),
            _ => {
                v[kept] = r;
                kept += 1;
            }
        }
    }
    v.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_has_anchors_or_is_searched_whole() {
        for r in RULES.iter() {
            assert!(ANCHORS.iter().any(|a| a.0 == r.id) || WHOLE.contains(&r.id), "{} has no anchor", r.id);
        }
        LazyLock::force(&COMPILED);
    }

    #[test]
    fn characters_folding_to_ascii_are_found() {
        for t in ["\u{17F}", "a\u{212A}", "¿ª™ ſ", "\u{212A}"] {
            assert!(folds_to_ascii(t.as_bytes()), "{t}");
        }
        for t in ["", "¿", "ª", "™", "Ÿ", "K k s", "\u{2129}\u{212B}"] {
            assert!(!folds_to_ascii(t.as_bytes()), "{t}");
        }
    }

    #[test]
    fn token_bounds() {
        let b = b"ab  cd..ef";
        assert_eq!(back_tokens(b, 5, 0), 4);
        assert_eq!(back_tokens(b, 5, 1), 2);
        assert_eq!(back_tokens(b, 5, 2), 0);
        assert_eq!(back_tokens(b, 5, 9), 0);
        assert_eq!(fwd_tokens(b, 4, 0), 6);
        assert_eq!(fwd_tokens(b, 4, 1), 8);
        assert_eq!(fwd_tokens(b, 4, 9), 10);
    }
}
