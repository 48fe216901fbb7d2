//! `sanitize_once` as it was before one search found every candidate byte (an ASCII check,
//! a search for non-ASCII bytes, `memchr3` and a control search apart), kept to compare with.

use super::*;

fn is_control_byte(c: u8) -> bool {
    (c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r')) || c == 0x7F
}

pub(super) fn sanitize_once(s: &str) -> (Cow<'_, str>, Removed) {
    let b = s.as_bytes();
    let mut removed = Removed::default();
    let mut out: Option<String> = None;
    let mut keep_from = 0; // start of the not yet copied stretch
    let mut i = 0;
    let ascii = s.is_ascii();
    let mut prev_vs = false;
    while i < b.len() {
        // Jump to the next byte that can start something to remove: within the ASCII stretch
        // up to the next non-ASCII byte (found 16 bytes at a time), with a vectorised search.
        if b[i] < 0x80 {
            let end = if ascii { b.len() } else { i + next_non_ascii(&b[i..]) };
            match next_special_ascii(&b[i..end]) {
                Some(off) => i += off,
                None => {
                    prev_vs = false;
                    i = end;
                    continue;
                }
            }
        }
        let c = b[i];
        let cut = if c == b'<' {
            if b[i..].starts_with(b"<!--") {
                let end = memchr::memmem::find(&b[i + 4..], b"-->").map(|e| i + 4 + e + 3).unwrap_or(b.len());
                removed.comments += 1;
                Some(end - i)
            } else if let Some(n) = pipe_token_len(&b[i..]) {
                removed.template_tokens += 1;
                Some(n)
            } else {
                template_token_at(&b[i..], &mut removed)
            }
        } else if c == b'[' {
            template_token_at(&b[i..], &mut removed)
        } else if c == 0x1B {
            removed.control += 1;
            Some(ansi_len(&b[i..]))
        } else if c < 0x20 || c == 0x7F {
            if matches!(c, b'\t' | b'\n' | b'\r') {
                None
            } else {
                removed.control += 1;
                Some(1)
            }
        } else if c >= 0x80 {
            let ch = s[i..].chars().next().unwrap_or('\u{FFFD}');
            let vs = is_variation_selector(ch);
            let drop = if is_invisible(ch) || (vs && prev_vs) {
                removed.invisible += 1;
                true
            } else if is_control(ch) {
                removed.control += 1;
                true
            } else {
                false
            };
            // What is removed does not end a run of selectors: removing it joins the run.
            if !drop {
                prev_vs = vs;
            }
            if drop {
                Some(ch.len_utf8())
            } else {
                i += ch.len_utf8();
                continue;
            }
        } else {
            None
        };
        if c < 0x80 && cut.is_none() {
            prev_vs = false;
        }
        match cut {
            Some(n) => {
                let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
                o.push_str(&s[keep_from..i]);
                i += n;
                keep_from = i;
            }
            None => i += 1,
        }
    }
    match out {
        None => (Cow::Borrowed(s), removed),
        Some(mut o) => {
            o.push_str(&s[keep_from..]);
            (Cow::Owned(o), removed)
        }
    }
}

/// Offset of the first byte ≥ 0x80 (or the length).
fn next_non_ascii(b: &[u8]) -> usize {
    let mut i = 0;
    while i + 16 <= b.len() {
        let w = u128::from_le_bytes(b[i..i + 16].try_into().expect("16 bytes"));
        if w & 0x8080_8080_8080_8080_8080_8080_8080_8080 != 0 {
            break;
        }
        i += 16;
    }
    i + b[i..].iter().position(|&c| c >= 0x80).unwrap_or(b.len() - i)
}

/// Offset of the first control byte other than tab, line feed and carriage return. Whole
/// blocks of 32 bytes are tested without an early exit, which the compiler vectorises.
fn first_control(b: &[u8]) -> Option<usize> {
    let mut at = 0;
    for block in b.chunks_exact(32) {
        if block.iter().fold(false, |any, &c| any | is_control_byte(c)) {
            break;
        }
        at += 32;
    }
    b[at..].iter().position(|&c| is_control_byte(c)).map(|p| at + p)
}

/// Offset of the first byte in an ASCII slice that may start something to remove.
fn next_special_ascii(b: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let hit = memchr::memchr3(b'<', b'[', 0x1B, &b[from..]).map(|o| from + o);
        // Control characters are rare; look for them only in the stretch before the hit.
        let upto = hit.unwrap_or(b.len());
        if let Some(c) = first_control(&b[from..upto]) {
            return Some(from + c);
        }
        let h = hit?;
        let rest = &b[h..];
        if rest[0] == 0x1B
            || rest.starts_with(b"<!--")
            || rest.starts_with(b"<|")
            || rest.starts_with(b"<<")
            || rest.starts_with(b"</SYS")
            || rest.starts_with(b"<start_of")
            || rest.starts_with(b"<end_of")
            || rest[0] == b'[' && rest.len() > 1 && rest[1].is_ascii_uppercase()
            || rest.starts_with(b"[/")
        {
            return Some(h);
        }
        from = h + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`next_special_ascii`] as it was before [`first_control`]: a byte-by-byte search.
    fn next_special_ascii_reference(b: &[u8]) -> Option<usize> {
        let mut from = 0;
        loop {
            let hit = memchr::memchr3(b'<', b'[', 0x1B, &b[from..]).map(|o| from + o);
            let upto = hit.unwrap_or(b.len());
            if let Some(c) = b[from..upto].iter().position(|&c| is_control_byte(c)) {
                return Some(from + c);
            }
            let h = hit?;
            let rest = &b[h..];
            if rest[0] == 0x1B
                || rest.starts_with(b"<!--")
                || rest.starts_with(b"<|")
                || rest.starts_with(b"<<")
                || rest.starts_with(b"</SYS")
                || rest.starts_with(b"<start_of")
                || rest.starts_with(b"<end_of")
                || rest[0] == b'[' && rest.len() > 1 && rest[1].is_ascii_uppercase()
                || rest.starts_with(b"[/")
            {
                return Some(h);
            }
            from = h + 1;
        }
    }

    /// The vectorised control search finds what the byte-by-byte one found, from every offset
    /// of the corpora and of generated text (controls at every place in and around a block).
    #[test]
    fn special_search_is_the_same_as_before() {
        let mut texts: Vec<Vec<u8>> = [
            include_str!("../../../../corpus/benign-hard.txt"),
            include_str!("../../../../corpus/injection-explicit.txt"),
        ]
        .iter()
        .map(|t| t.bytes().filter(|b| b.is_ascii()).collect())
        .collect();
        let pool = b"aaaaaaaaaa \t\n\r\x00\x01\x1b\x1f\x7f<[!|-SI/";
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for len in 0..100 {
            for _ in 0..20 {
                let t: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        pool[(seed % pool.len() as u64) as usize]
                    })
                    .collect();
                texts.push(t);
            }
        }
        for pos in 0..70 {
            for c in [0u8, 1, 8, 0x1B, 0x1F, 0x7F, b'\t', b'\n', b'\r', b' '] {
                let mut t = vec![b'x'; 70];
                t[pos] = c;
                texts.push(t);
            }
        }
        for t in &texts {
            for from in 0..t.len().min(300) {
                assert_eq!(
                    next_special_ascii(&t[from..]),
                    next_special_ascii_reference(&t[from..]),
                    "{t:?} from {from}"
                );
            }
        }
    }
}
