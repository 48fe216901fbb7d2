//! Newline-delimited JSON-RPC framing for stdio, with a cap on line length so a peer that never
//! sends a newline cannot grow Warden's memory.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Default cap on one stdio line.
pub const MAX_LINE: usize = 16 << 20;

pub enum Line {
    /// One complete line, without its newline (a trailing `\r` is removed too).
    Data(Vec<u8>),
    /// A line longer than the cap; it was discarded up to its newline.
    TooLong,
    Eof,
}

pub async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Line> {
    let mut buf = Vec::new();
    let mut overflow = false;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if overflow {
                Line::TooLong
            } else if buf.is_empty() {
                Line::Eof
            } else {
                Line::Data(buf)
            });
        }
        let (take, found) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !overflow {
            let part = &chunk[..if found { take - 1 } else { take }];
            if buf.len() + part.len() > max {
                overflow = true;
                buf = Vec::new();
            } else {
                buf.extend_from_slice(part);
            }
        }
        r.consume(take);
        if found {
            if overflow {
                return Ok(Line::TooLong);
            }
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Line::Data(buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn splits_lines_and_caps_length() {
        let data = b"{\"a\":1}\r\nxxxxxxxxxxxxxxxxxxxx\n{}\nlast".to_vec();
        let mut r = tokio::io::BufReader::with_capacity(4, &data[..]);
        let mut got = Vec::new();
        loop {
            match read_line(&mut r, 10).await.unwrap() {
                Line::Data(d) => got.push(String::from_utf8(d).unwrap()),
                Line::TooLong => got.push("<too long>".into()),
                Line::Eof => break,
            }
        }
        assert_eq!(got, ["{\"a\":1}", "<too long>", "{}", "last"]);
    }
}
