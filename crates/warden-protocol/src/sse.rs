//! Server-Sent Events: an encoder for Warden's streams and an incremental decoder for upstream
//! streams (WHATWG "event stream" parsing: `data` lines joined with `\n`, `id`, `event`, `retry`,
//! comments ignored, CRLF/LF/CR line ends).

/// One decoded event.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
}

/// Encode one event. `data` must not contain bare CR; newlines become several `data:` lines.
pub fn encode(id: Option<&str>, data: &str, retry_ms: Option<u64>) -> String {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    if let Some(r) = retry_ms {
        out.push_str(&format!("retry: {r}\n"));
    }
    if data.is_empty() {
        out.push_str("data: \n");
    }
    for line in data.split('\n') {
        if !line.is_empty() || !data.is_empty() {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
    out
}

/// Incremental decoder with a cap on buffered bytes (a stream that never ends a line or an event
/// cannot grow memory without bound).
pub struct Decoder {
    buf: Vec<u8>,
    cur: Event,
    has_data: bool,
    max: usize,
    last_id: Option<String>,
    skip_lf: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("SSE event larger than {0} bytes")]
pub struct TooLarge(pub usize);

impl Decoder {
    pub fn new(max_event_bytes: usize) -> Self {
        Decoder {
            buf: Vec::new(),
            cur: Event::default(),
            has_data: false,
            max: max_event_bytes,
            last_id: None,
            skip_lf: false,
        }
    }

    /// The last event id seen (for `Last-Event-ID` on reconnect).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Feed bytes; returns complete events (with non-empty data or a retry/id update).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, TooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        loop {
            if self.skip_lf && !self.buf.is_empty() {
                self.skip_lf = false;
                if self.buf[0] == b'\n' {
                    self.buf.remove(0);
                    continue;
                }
            }
            let Some(pos) = self.buf.iter().position(|&b| b == b'\n' || b == b'\r') else {
                break;
            };
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            let end = line.pop();
            if end == Some(b'\r') {
                if self.buf.first() == Some(&b'\n') {
                    self.buf.remove(0);
                } else if self.buf.is_empty() {
                    // CR at a chunk's end: its LF, if any, arrives next and must not count as
                    // an empty line.
                    self.skip_lf = true;
                }
            }
            self.line(&String::from_utf8_lossy(&line), &mut out);
            if self.cur.data.len() > self.max {
                return Err(TooLarge(self.max));
            }
        }
        if self.buf.len() > self.max {
            return Err(TooLarge(self.max));
        }
        Ok(out)
    }

    fn line(&mut self, line: &str, out: &mut Vec<Event>) {
        if line.is_empty() {
            let ev = std::mem::take(&mut self.cur);
            if self.has_data {
                out.push(ev);
            }
            self.has_data = false;
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.cur.data.push('\n');
                }
                self.cur.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => {
                self.cur.id = Some(value.to_string());
                self.last_id = Some(value.to_string());
            }
            "event" => self.cur.event = Some(value.to_string()),
            "retry" => self.cur.retry = value.parse().ok(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes_multiline_data_ids_and_retry() {
        let mut d = Decoder::new(1 << 20);
        let mut wire = encode(Some("s1-0"), "", Some(1000));
        wire.push_str(&encode(Some("s1-1"), "{\"a\":1}\n{\"b\":2}", None));
        // feed byte by byte, with CRLF variants
        let wire = wire.replace("retry", ": comment\r\nretry");
        let mut evs = Vec::new();
        for b in wire.as_bytes() {
            evs.extend(d.feed(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(evs.len(), 2, "{evs:?}");
        assert_eq!(evs[0].retry, Some(1000));
        assert_eq!(evs[0].data, "");
        assert_eq!(evs[1].data, "{\"a\":1}\n{\"b\":2}");
        assert_eq!(d.last_event_id(), Some("s1-1"));
    }

    #[test]
    fn unbounded_event_is_refused() {
        let mut d = Decoder::new(16);
        assert_eq!(d.feed(b"data: 0123456789012345678901234567890"), Err(TooLarge(16)));
    }
}
