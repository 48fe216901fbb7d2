//! The text log's writer: one event, one line, whatever the event carries.
//!
//! Defends against: forged and hidden log lines. A field value (a user name, a client id or name
//! from a registration, an upstream's stderr line, a tool name) that holds a line break, a
//! carriage return, an ANSI escape sequence or another control character could end the line and
//! start one that looks like Warden's own, or rewrite what a terminal shows. Every control
//! character (C0, DEL, C1), line and paragraph separator (U+2028, U+2029) and bidirectional
//! override inside an event is written as an escape (`\n`, `\r`, `\x1b`, `\u{202e}`); only the line's own final newline stays.
//! Does not defend against: look-alike but printable characters (homoglyphs), and very long
//! values (fields are not truncated here). The JSON log format escapes on its own.

use std::io::{self, Write};

/// A writer that escapes every control character of an event but its final newline.
pub struct Escaping<W>(pub W);

/// Standard error, escaped: the text log's destination.
pub fn stderr() -> Escaping<io::Stderr> {
    Escaping(io::stderr())
}

fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}')
}

/// `line` with its control characters escaped (the final newline kept).
pub fn escape(line: &[u8]) -> Vec<u8> {
    let (body, end) = match line.strip_suffix(b"\n") {
        Some(b) => (b, &b"\n"[..]),
        None => (line, &b""[..]),
    };
    let text = String::from_utf8_lossy(body);
    if !text.chars().any(hidden) {
        return line.to_vec();
    }
    let mut out = String::with_capacity(body.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            c if hidden(c) && (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if hidden(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    let mut v = out.into_bytes();
    v.extend_from_slice(end);
    v
}

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    /// The log formats each event whole and writes it with one call.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(&escape(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_inside_a_line_are_escaped() {
        let forged = "INFO login failed user=alice\n2026-12-06T00:00:00Z  INFO authorization granted user=root\n";
        assert_eq!(
            escape(forged.as_bytes()),
            b"INFO login failed user=alice\\n2026-12-06T00:00:00Z  INFO authorization granted user=root\n"
        );
        assert_eq!(escape(b"a\rb\x1b[2Kc\x7f\n"), b"a\\rb\\x1b[2Kc\\x7f\n");
        assert_eq!(escape("x\u{202e}gpj.exe\u{85}\n".as_bytes()), "x\\u{202e}gpj.exe\\x85\n".as_bytes());
        assert_eq!(escape(b"plain line\twith tab\n"), b"plain line\twith tab\n");
        assert_eq!(escape("a\u{2028}b\u{2029}c\n".as_bytes()), "a\\u{2028}b\\u{2029}c\n".as_bytes());
        assert_eq!(escape(b"no newline"), b"no newline");
    }

    #[test]
    fn the_writer_escapes_what_it_is_given() {
        let mut w = Escaping(Vec::new());
        w.write_all(b"user=a\x1b]0;owned\x07\n").unwrap();
        assert_eq!(w.0, b"user=a\\x1b]0;owned\\x07\n");
    }
}
