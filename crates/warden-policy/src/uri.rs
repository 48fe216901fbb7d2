//! Resource URIs in one canonical form, so that rules match what the upstream will read and
//! the upstream reads what the rules matched (the gateway forwards the normalized URI).
//!
//! Defends against deny rules and allow-list globs evaded by spelling: `..` and `.` segments
//! (`file:///public/../secret`), their encoded forms (`%2e%2e`), doubled slashes
//! (`file:////secret`), case in the scheme and host (`FILE://`, `Host`), `file://localhost/`
//! for `file:///`, and percent-encoded letters (`%73ecret`).
//! Refused outright: an encoded `/` or `\` (`%2F`, `%5C`), which would split a segment
//! differently for the rules and the server; a backslash; NUL and other control characters; a
//! `..` that climbs above the root; more than [`MAX_URI_BYTES`].
//! Does not defend against: a server that decodes twice (`%252e` stays `%252e` here), or that
//! maps different URIs to the same data in ways of its own.

/// Longest URI accepted.
pub const MAX_URI_BYTES: usize = 8192;

/// Why a URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadUri(pub &'static str);

/// The canonical form of `uri` (RFC 3986 §6.2.2, plus `//` collapsed in the path and
/// `file://localhost/` as `file:///`).
pub fn normalize(uri: &str) -> Result<String, BadUri> {
    if uri.len() > MAX_URI_BYTES {
        return Err(BadUri("resource URI is too long"));
    }
    if uri.chars().any(char::is_control) {
        return Err(BadUri("resource URI contains a control character"));
    }
    let Some((scheme, rest)) = uri.split_once(':') else { return Err(BadUri("not a URI (no scheme)")) };
    let valid_scheme = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !valid_scheme {
        return Err(BadUri("not a URI (bad scheme)"));
    }
    let scheme = scheme.to_ascii_lowercase();
    // hier-part, then `?query` and `#fragment` as they are
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (hier, tail) = rest.split_at(end);
    let (authority, path) = match hier.strip_prefix("//") {
        Some(h) => {
            let slash = h.find('/').unwrap_or(h.len());
            let (a, p) = h.split_at(slash);
            (Some(authority_of(a, &scheme)?), p)
        }
        // `file:/etc/passwd` is `file:///etc/passwd` to every file URI reader
        None if scheme == "file" && hier.starts_with('/') => (Some(String::new()), hier),
        None => (None, hier),
    };
    let path = normalize_path(&decode_unreserved(path)?)?;
    let mut out = scheme;
    out.push(':');
    if let Some(a) = authority {
        out.push_str("//");
        out.push_str(&a);
    }
    out.push_str(&path);
    out.push_str(tail);
    Ok(out)
}

/// Host and port in lower case, the scheme's default port dropped; `file://localhost` is
/// `file://`. User info, escapes and backslashes are refused: readers disagree about them.
fn authority_of(a: &str, scheme: &str) -> Result<String, BadUri> {
    if a.contains(['@', '%', '\\']) {
        return Err(BadUri("resource URI has user info, an escape or a backslash in its authority"));
    }
    let a = a.to_ascii_lowercase();
    // host, then an optional port (digits; empty or the scheme's default is dropped)
    let (host, port) = match a.strip_prefix('[') {
        Some(_) => match a.find(']') {
            Some(i) => (&a[..=i], a[i + 1..].strip_prefix(':')),
            None => return Err(BadUri("resource URI has an unclosed IPv6 literal")),
        },
        None => match a.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a.as_str(), None),
        },
    };
    if port.is_some_and(|p| !p.bytes().all(|b| b.is_ascii_digit()))
        || (host.starts_with('[') && !a[host.len()..].is_empty() && port.is_none())
    {
        return Err(BadUri("resource URI has a malformed port"));
    }
    let default = match scheme {
        "http" | "ws" => "80",
        "https" | "wss" => "443",
        _ => "",
    };
    let mut out = if scheme == "file" && host == "localhost" { String::new() } else { host.to_string() };
    if let Some(p) = port.filter(|p| !p.is_empty() && *p != default) {
        out.push(':');
        out.push_str(p);
    }
    Ok(out)
}

/// Percent-encoded unreserved characters decoded, other escapes with upper-case hex; an
/// encoded `/`, `\` or NUL, a raw `\`, or a broken escape refused.
fn decode_unreserved(path: &str) -> Result<String, BadUri> {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => return Err(BadUri("resource URI contains a backslash")),
            b'%' => {
                let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                    return Err(BadUri("resource URI has a broken percent escape"));
                };
                match v {
                    b'/' | b'\\' | 0 => return Err(BadUri("resource URI encodes a separator or NUL")),
                    c if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') => out.push(c as char),
                    c => out.push_str(&format!("%{c:02X}")),
                }
                i += 3;
            }
            _ => {
                let ch = path[i..].chars().next().expect("in bounds");
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    Ok(out)
}

/// Dot segments resolved and empty segments dropped; a `..` above the root refused. A path
/// without a leading `/` (an opaque URI's) keeps its form.
fn normalize_path(path: &str) -> Result<String, BadUri> {
    if !path.contains('/') && path != "." && path != ".." {
        return Ok(path.to_string());
    }
    let absolute = path.starts_with('/');
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    let mut segs: Vec<&str> = Vec::new();
    for s in path.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                if segs.pop().is_none() {
                    return Err(BadUri("resource URI climbs above its root"));
                }
            }
            s => segs.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    if absolute {
        out.push('/');
    }
    out.push_str(&segs.join("/"));
    if trailing && !segs.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_resource_are_one_uri() {
        for (raw, want) in [
            ("file:///secret/x", "file:///secret/x"),
            ("file:///public/../secret/x", "file:///secret/x"),
            ("file:///public/%2e%2e/secret/x", "file:///secret/x"),
            ("file:///public/%2E%2E/secret/./x", "file:///secret/x"),
            ("file:////secret//x", "file:///secret/x"),
            ("FILE://LOCALHOST/secret/x", "file:///secret/x"),
            ("file://localhost/%73ecret/x", "file:///secret/x"),
            ("HTTPS://Example.COM/a/./b/../c?q=%2e#f", "https://example.com/a/c?q=%2e#f"),
            ("test://static-text", "test://static-text"),
            ("test://template/x/../ab/data", "test://template/ab/data"),
            ("mem:notes/today", "mem:notes/today"),
            ("urn:isbn:0451450523", "urn:isbn:0451450523"),
            ("ui://widget/a%20b", "ui://widget/a%20b"),
            ("file:///dir/", "file:///dir/"),
            ("s3://Bucket/Key", "s3://bucket/Key"),
            ("file:/etc/passwd", "file:///etc/passwd"),
            ("file:/a/../etc/passwd", "file:///etc/passwd"),
            ("http://h:80/a", "http://h/a"),
            ("https://H:443/a", "https://h/a"),
            ("http://h:/a", "http://h/a"),
            ("http://h:8080/a", "http://h:8080/a"),
        ] {
            assert_eq!(normalize(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn what_cannot_be_normalized_is_refused() {
        for bad in [
            "file:///public/..%2fsecret",
            "file:///a%5c..%5csecret",
            "file:///a\\..\\secret",
            "file:///../etc/passwd",
            "file:///a/%2e%2e/%2e%2e/etc",
            "file:///a%00b",
            "file:///a%zz",
            "file:///a%2",
            "no scheme",
            "1abc:x",
            "file:///a\nb",
            "http://h\\..\\secret/x",
            "http://user@h/x",
            "http://%6c ocalhost/x",
            "http://h%2F..%2Fsecret/x",
            "sss://*e::",
            "http://h:8o/x",
            "http://[::1/x",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
        assert!(normalize(&format!("file:///{}", "a".repeat(MAX_URI_BYTES))).is_err());
    }

    #[test]
    fn normalizing_is_idempotent() {
        for raw in [
            "file:///a/./b/../c//d/",
            "HTTP://h/%7euser/%41",
            "x:a/../b",
            "x:/a/b/..",
            "file:///a/.",
            "s://h:/x",
            "s://[::1]:9/x",
        ] {
            let once = normalize(raw).unwrap();
            assert_eq!(normalize(&once).unwrap(), once, "{raw}");
        }
    }
}
