//! Output sanitizer: removes from text what a person reading it cannot see but a model can.
//!
//! Defends against content hidden from the reviewer and aimed at the model: HTML comments
//! (invisible when Markdown is rendered), zero-width, bidirectional-override and Unicode "tag"
//! characters (ASCII smuggling), runs of variation selectors (data smuggled in emoji), ANSI
//! escape sequences and other C0/C1 control characters (terminal tricks that rewrite what was
//! shown), and chat-template delimiter tokens (`<|im_start|>`, `[INST]`, `<<SYS>>`, …) that try
//! to open a new turn in the model's prompt.
//! Does not defend against: instructions written in plain visible text (see [`crate::inject`]),
//! homoglyphs, or text in images and audio. Zero-width joiners are removed too, which splits
//! composed emoji and changes the rendering of some scripts (Persian, Indic); that is the price.
//!
//! Text that contains nothing to remove is returned borrowed, found with a vectorised byte scan
//! (the common case, measured in BENCHMARKS.md).

use std::borrow::Cow;

/// What was removed, by class.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// Zero-width, bidi, tag, variation-selector-run and other invisible characters.
    pub invisible: usize,
    /// ANSI escape sequences and control characters.
    pub control: usize,
    /// HTML comments.
    pub comments: usize,
    /// Chat-template delimiter tokens.
    pub template_tokens: usize,
}

impl Removed {
    pub fn any(&self) -> bool {
        self.invisible + self.control + self.comments + self.template_tokens > 0
    }

    pub fn add(&mut self, o: Removed) {
        self.invisible += o.invisible;
        self.control += o.control;
        self.comments += o.comments;
        self.template_tokens += o.template_tokens;
    }
}

/// Characters nobody sees: zero-width, joiners, bidi embeddings/overrides/isolates, invisible
/// operators, fillers, interlinear annotation, BOM, soft hyphen and the Unicode tag block.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E007F}'
        | '\u{E0100}'..='\u{E01EF}')
}

fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}')
}

/// Control characters other than tab, line feed and carriage return (C0, DEL, C1).
fn is_control(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{7F}'
}

/// The chat-template tokens removed verbatim (ASCII, matched case-sensitively as models do).
const TEMPLATE_TOKENS: &[&str] = &[
    "[INST]",
    "[/INST]",
    "<<SYS>>",
    "<</SYS>>",
    "<start_of_turn>",
    "<end_of_turn>",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[AVAILABLE_TOOLS]",
    "[TOOL_CALLS]",
    "[TOOL_RESULTS]",
];

/// Length of a `<|name|>` token at the start of `b` (name: 1–40 of `[A-Za-z0-9_.:-]`).
fn pipe_token_len(b: &[u8]) -> Option<usize> {
    if !b.starts_with(b"<|") {
        return None;
    }
    let body = &b[2..];
    let n = body.iter().take(41).position(|&c| c == b'|')?;
    let ok = n > 0 && body[..n].iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-'));
    (ok && body.get(n + 1) == Some(&b'>')).then_some(n + 4)
}

/// Length of an ANSI escape sequence starting with ESC at `b[0]`.
fn ansi_len(b: &[u8]) -> usize {
    match b.get(1) {
        // CSI: parameters 0x30–0x3F, intermediates 0x20–0x2F, one final byte 0x40–0x7E.
        Some(b'[') => {
            let mut i = 2;
            while i < b.len() && (0x20..=0x3F).contains(&b[i]) {
                i += 1;
            }
            if i < b.len() && (0x40..=0x7E).contains(&b[i]) {
                i + 1
            } else {
                i
            }
        }
        // OSC, DCS, SOS, PM, APC: up to BEL or ESC \ (or the end, unterminated).
        Some(b']' | b'P' | b'X' | b'^' | b'_') => {
            let mut i = 2;
            while i < b.len() {
                if b[i] == 0x07 {
                    return i + 1;
                }
                if b[i] == 0x1B && b.get(i + 1) == Some(&b'\\') {
                    return i + 2;
                }
                if b[i] == 0x1B {
                    return i;
                }
                i += 1;
            }
            i
        }
        Some(c) if (0x20..=0x7E).contains(c) => 2,
        _ => 1,
    }
}

/// Remove hidden content from `s`. Borrowed when nothing was removed.
///
/// Taking something out can join what was around it into a new token (`[` ESC`[0m` `INST]`
/// becomes `[INST]`), nested as deep as an attacker likes (`[IN[IN[INST]ST]ST]`). Linear
/// however it is nested: one vectorised pass, a second one to see whether the first joined
/// anything, and if it did, [`rebuild`] — one pass that re-checks the text it has kept as it
/// grows, so every join is seen where it happens.
pub fn sanitize(s: &str) -> (Cow<'_, str>, Removed) {
    let (first, mut removed) = sanitize_once(s);
    let Cow::Owned(text) = first else { return (first, removed) };
    let (second, r) = sanitize_once(&text);
    if matches!(second, Cow::Borrowed(_)) {
        return (Cow::Owned(text), removed);
    }
    drop(second);
    removed.add(r);
    let mut again = Removed::default();
    let out = rebuild(&text, &mut again);
    removed.add(again);
    (Cow::Owned(out), removed)
}

/// Remove hidden content in one pass over `s`, character by character, checking after each
/// kept `]`, `>` or `-` whether the kept text now ends in a token or opens a comment, so that
/// whatever a removal joins is removed too. Each check looks back at most 44 bytes: linear.
fn rebuild(s: &str, removed: &mut Removed) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut prev_vs = false;
    while i < b.len() {
        let c = b[i];
        if c == 0x1B {
            removed.control += 1;
            i += ansi_len(&b[i..]);
            continue;
        }
        if (c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r')) || c == 0x7F {
            removed.control += 1;
            i += 1;
            continue;
        }
        if c >= 0x80 {
            let ch = s[i..].chars().next().unwrap_or('\u{FFFD}');
            i += ch.len_utf8();
            let vs = is_variation_selector(ch);
            if is_invisible(ch) || (vs && prev_vs) {
                removed.invisible += 1;
            } else if is_control(ch) {
                removed.control += 1;
            } else {
                prev_vs = vs;
                out.push(ch);
            }
            continue;
        }
        out.push(c as char);
        i += 1;
        prev_vs = false;
        match c {
            b'-' if out.ends_with("<!--") => {
                out.truncate(out.len() - 4);
                removed.comments += 1;
                i = memchr::memmem::find(&b[i..], b"-->").map_or(b.len(), |e| i + e + 3);
                // what was removed does not end a run of selectors: the run goes on from before it
                prev_vs = out.chars().next_back().is_some_and(is_variation_selector);
            }
            b']' | b'>' => {
                if let Some(n) = token_suffix(out.as_bytes()) {
                    out.truncate(out.len() - n);
                    removed.template_tokens += 1;
                    prev_vs = out.chars().next_back().is_some_and(is_variation_selector);
                }
            }
            _ => {}
        }
    }
    out
}

/// Length of the template token (`[INST]`, `<|name|>`, …) that `b` ends with.
fn token_suffix(b: &[u8]) -> Option<usize> {
    if let Some(t) = TEMPLATE_TOKENS.iter().find(|t| b.ends_with(t.as_bytes())) {
        return Some(t.len());
    }
    if !b.ends_with(b"|>") {
        return None;
    }
    // `<|name|>`, name 1–40 bytes without `|`: the `<|` is the last one before the final `|>`.
    let from = b.len().saturating_sub(44);
    let k = from + memchr::memmem::rfind(&b[from..b.len() - 2], b"<|")?;
    (pipe_token_len(&b[k..]) == Some(b.len() - k)).then_some(b.len() - k)
}

fn sanitize_once(s: &str) -> (Cow<'_, str>, Removed) {
    let b = s.as_bytes();
    let mut removed = Removed::default();
    let mut out: Option<String> = None;
    let mut keep_from = 0; // start of the not yet copied stretch
    let mut i = 0; // end of what was last handled (a removal, a kept character or special byte)
    let mut from = 0; // where the search for the next candidate starts
    let mut prev_vs = false;
    loop {
        // One vectorised search for the next byte that may start something to remove; a `<`
        // or `[` that cannot start a token is passed over (it does not end a selector run).
        let j = from + next_candidate(&b[from..]);
        if j == b.len() || b[j] >= 0x80 {
            // Plain ASCII since the last thing handled ends a run of variation selectors; ASCII
            // passed over on the way to a removal does not (as before: `reference`).
            if j > i {
                prev_vs = false;
            }
            if j == b.len() {
                break;
            }
        } else if !may_start_removal(&b[j..]) {
            from = j + 1;
            continue;
        }
        let c = b[j];
        let cut = if c == b'<' {
            if b[j..].starts_with(b"<!--") {
                let end = memchr::memmem::find(&b[j + 4..], b"-->").map(|e| j + 4 + e + 3).unwrap_or(b.len());
                removed.comments += 1;
                Some(end - j)
            } else if let Some(n) = pipe_token_len(&b[j..]) {
                removed.template_tokens += 1;
                Some(n)
            } else {
                template_token_at(&b[j..], &mut removed)
            }
        } else if c == b'[' {
            template_token_at(&b[j..], &mut removed)
        } else if c == 0x1B {
            removed.control += 1;
            Some(ansi_len(&b[j..]))
        } else if c < 0x80 {
            // another control byte (`next_candidate` passes over tab, line feed, return)
            removed.control += 1;
            Some(1)
        } else {
            let ch = s[j..].chars().next().unwrap_or('\u{FFFD}');
            let vs = is_variation_selector(ch);
            if is_invisible(ch) || (vs && prev_vs) {
                removed.invisible += 1;
                Some(ch.len_utf8())
            } else if is_control(ch) {
                removed.control += 1;
                Some(ch.len_utf8())
            } else {
                // What is removed does not end a run of selectors: removing it joins the run.
                prev_vs = vs;
                i = j + ch.len_utf8();
                from = i;
                continue;
            }
        };
        match cut {
            Some(n) => {
                let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
                o.push_str(&s[keep_from..j]);
                i = j + n;
                keep_from = i;
            }
            None => {
                prev_vs = false;
                i = j + 1;
            }
        }
        from = i;
    }
    match out {
        None => (Cow::Borrowed(s), removed),
        Some(mut o) => {
            o.push_str(&s[keep_from..]);
            (Cow::Owned(o), removed)
        }
    }
}

fn template_token_at(b: &[u8], removed: &mut Removed) -> Option<usize> {
    let t = TEMPLATE_TOKENS.iter().find(|t| b.starts_with(t.as_bytes()))?;
    removed.template_tokens += 1;
    Some(t.len())
}

/// Whether `c` may start something to remove: a non-ASCII byte, `<`, `[`, or a control byte
/// other than tab, line feed and carriage return. Branch-free, so that a block of them is
/// tested with vector instructions.
fn is_candidate(c: u8) -> bool {
    (c >= 0x7F) | (c == b'<') | (c == b'[') | ((c < 0x20) & (c != b'\t') & (c != b'\n') & (c != b'\r'))
}

/// Offset of the first candidate byte (or the length). Whole blocks of 32 bytes are tested
/// without an early exit, which the compiler vectorises.
fn next_candidate(b: &[u8]) -> usize {
    let mut at = 0;
    for block in b.chunks_exact(32) {
        if block.iter().fold(false, |any, &c| any | is_candidate(c)) {
            break;
        }
        at += 32;
    }
    b[at..].iter().position(|&c| is_candidate(c)).map_or(b.len(), |p| at + p)
}

/// Whether the ASCII candidate at `b[0]` may start a removal: any control byte, and a `<` or
/// `[` that begins like a comment or a template token.
fn may_start_removal(b: &[u8]) -> bool {
    match b[0] {
        b'<' => {
            b.starts_with(b"<!--")
                || b.starts_with(b"<|")
                || b.starts_with(b"<<")
                || b.starts_with(b"</SYS")
                || b.starts_with(b"<start_of")
                || b.starts_with(b"<end_of")
        }
        b'[' => b.get(1).is_some_and(|c| c.is_ascii_uppercase() || *c == b'/'),
        _ => true,
    }
}

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;
