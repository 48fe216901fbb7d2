//! Argument guards: checks on one argument value, chosen per tool and argument in config.
//!
//! - [`path`]: traversal and prefix escapes (CVE-2025-53110: `/data/allowed_evil` is not inside
//!   `/data/allowed`; containment is compared component by component), `..`, NUL, encoded or
//!   backslash separators, and relative paths, which the guard and the server would resolve
//!   against different directories (refused; or, with [`path_or_relative`], taken from the first
//!   root and forwarded absolute). Symlinks (CVE-2025-53109) need the filesystem: the gateway resolves
//!   them with [`path_resolved`] where Warden shares the upstream's filesystem.
//! - [`sql`]: parsed with a real SQL parser; exactly one statement, a query (no writes, DDL,
//!   transaction control, `PRAGMA`, `ATTACH`, `SELECT … INTO`, data-modifying CTEs, or functions
//!   that reach the filesystem, the network or sleep), tables and columns from allow-lists. The
//!   Postgres server's `COMMIT; DROP SCHEMA …` bypass is two statements and refused.
//! - [`argv`]: values handed to a command line: no option injection (mcp-server-git's
//!   `--output=`), no shell metacharacters (`;`, `|`, `&`, `$(…)`, backticks) or line breaks.
//! - [`url`]: https only (by default), no credentials in the URL, no private, loopback,
//!   link-local, ULA or cloud-metadata addresses (SSRF) — for IP literals here, for names after
//!   the gateway resolves them.
//! - [`segment`]: a value a server places into one segment of a URL path or one file name
//!   (an id in `/api/v1/users/{id}`): no `/`, `\`, `.` or `..`, no percent escapes (a server may
//!   decode them), no `?`, `#`, `;`, `:` (a scheme: `http:evil` resolved against a base is
//!   absolute), no characters that normalize to dots or slashes, no whitespace or control characters (CVE-2026-32871: FastMCP's
//!   OpenAPI provider joined `../admin` onto its backend URL with its own credentials).
//! - [`text`]: free text: hidden characters and explicit injection phrases.
//!
//! Does not defend against: a tool that ignores the value it was given and does something else,
//! TOCTOU races on the filesystem between the check and the upstream's use (the built-in file
//! tools open beneath a root instead), SQL dialect features the parser does not know (refused as
//! parse errors, so this fails closed), redirects followed by the upstream itself.
//!
//! Refusals are safe to show: they name the rule, never echo the value.

mod sql;

pub use sql::{cast_allowed, sql, Dialect, SqlPolicy};
use std::path::{Component, Path, PathBuf};

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub &'static str);

fn refuse<T>(why: &'static str) -> Result<T, Refusal> {
    Err(Refusal(why))
}

/// Check a path argument against allowed roots (absolute, already resolved by the caller if
/// they may be symlinks). Returns the normalised absolute path. A relative path is refused: the
/// guard and the server would resolve it against different directories (`etc/passwd` is inside
/// `/srv/data` for the guard and `/etc/passwd` for a server started in `/`); see
/// [`path_or_relative`].
pub fn path(value: &str, roots: &[PathBuf]) -> Result<PathBuf, Refusal> {
    if !Path::new(value).is_absolute() && !value.is_empty() {
        return refuse("path is relative: give an absolute path beneath an allowed root");
    }
    path_or_relative(value, roots)
}

/// [`path`], taking a relative path from the first root. The caller must then forward the
/// returned absolute path, never the relative one.
pub fn path_or_relative(value: &str, roots: &[PathBuf]) -> Result<PathBuf, Refusal> {
    if value.is_empty() {
        return refuse("empty path");
    }
    if value.contains('\0') {
        return refuse("path contains a NUL byte");
    }
    if value.contains('\\') {
        return refuse("path contains a backslash");
    }
    let lower = value.to_ascii_lowercase();
    if ["%2f", "%5c", "%2e", "%00", "%25"].iter().any(|e| lower.contains(e)) {
        return refuse("path contains an encoded separator or dot");
    }
    if value.chars().any(|c| c.is_control()) {
        return refuse("path contains a control character");
    }
    let p = Path::new(value);
    let base = match roots.first() {
        Some(r) => r,
        None => return refuse("no roots are configured for this path argument"),
    };
    let joined = if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => return refuse("path contains `..`"),
            Component::Normal(n) => {
                if n.to_str().is_some_and(|s| s.starts_with('~')) {
                    return refuse("path starts with `~`");
                }
                out.push(n)
            }
        }
    }
    if !within(&out, roots) {
        return refuse("path is outside the allowed roots");
    }
    Ok(out)
}

/// True when `p` is one of `roots` or beneath one, compared component by component.
pub fn within(p: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| p.starts_with(r))
}

/// [`path`], then the same containment check on the path with symlinks resolved (the deepest
/// existing ancestor is canonicalised, so a path to a file yet to be created works too).
/// `roots` must be canonical already. This function reads the filesystem.
pub fn path_resolved(value: &str, roots: &[PathBuf]) -> Result<PathBuf, Refusal> {
    resolve_links(&path(value, roots)?, roots)
}

/// The symlink half of [`path_resolved`], for a path [`path`] or [`path_or_relative`] passed.
pub fn resolve_links(p: &Path, roots: &[PathBuf]) -> Result<PathBuf, Refusal> {
    let mut existing = p;
    let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
    let real = loop {
        match std::fs::canonicalize(existing) {
            Ok(r) => break r,
            Err(_) => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name);
                    existing = parent;
                }
                _ => return refuse("path cannot be resolved"),
            },
        }
    };
    let full = rest.iter().rev().fold(real, |acc, n| acc.join(n));
    if !within(&full, roots) {
        return refuse("path leaves the allowed roots through a symbolic link");
    }
    Ok(full)
}

/// Check one command-line value.
pub fn argv(value: &str) -> Result<(), Refusal> {
    if value.starts_with('-') {
        return refuse("value starts with `-` (option injection)");
    }
    // A tool that splits its argument on whitespace (or hands it to a shell) would take a later
    // word as an option of its own: `main --output=/tmp/x`.
    if value.split(char::is_whitespace).skip(1).any(|w| w.starts_with('-')) {
        return refuse("a word of the value starts with `-` (option injection after whitespace)");
    }
    if value.chars().any(|c| matches!(c, '\n' | '\r' | '\0')) {
        return refuse("value contains a line break or NUL");
    }
    if value.chars().any(|c| {
        matches!(
            c,
            ';' | '|' | '&' | '$' | '`' | '<' | '>' | '(' | ')' | '{' | '}' | '\\' | '!' | '*' | '?' | '"' | '\''
        )
    }) {
        return refuse("value contains a shell metacharacter");
    }
    if value.chars().any(|c| c.is_control()) {
        return refuse("value contains a control character");
    }
    Ok(())
}

/// Check a value that becomes one segment of a URL path or one file name. Empty values are
/// refused too: `users/` is another resource than `users/{id}`.
pub fn segment(value: &str) -> Result<(), Refusal> {
    if value.is_empty() {
        return refuse("value is empty");
    }
    if value == "." || value == ".." {
        return refuse("value is a dot segment (`.` or `..`)");
    }
    if value.contains(['/', '\\']) {
        return refuse("value contains a path separator");
    }
    if value.contains('%') {
        return refuse("value contains a percent escape");
    }
    if value.contains(['?', '#', ';', ':']) {
        return refuse("value contains a query, fragment, parameter or scheme delimiter");
    }
    // Look-alikes that Unicode normalization (NFKC) or a lenient URL parser turns into dots and
    // slashes: fullwidth and small full stops, one- and two-dot leaders, ellipsis, fullwidth and
    // division slashes, fraction slash, fullwidth backslash.
    if value.contains([
        '\u{ff0e}', '\u{fe52}', '\u{2024}', '\u{2025}', '\u{2026}', '\u{ff0f}', '\u{2215}', '\u{2044}', '\u{ff3c}',
        '\u{29f8}', '\u{fe68}',
    ]) {
        return refuse("value contains a character that normalizes to a dot or a slash");
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return refuse("value contains whitespace or a control character");
    }
    Ok(())
}

/// URL guard settings.
#[derive(Debug, Clone, Default)]
pub struct UrlPolicy {
    /// Also allow plain `http`.
    pub allow_http: bool,
    /// Host names (exact, lower-case) or `*.suffix` patterns allowed; empty: any public host.
    pub hosts: Vec<String>,
}

/// Check a URL argument. Returns the host to resolve when it is a name (the caller must then
/// check every address it resolves to with [`crate::net::is_public_ip`]); `None` for IP literals,
/// which are checked here.
pub fn url(value: &str, policy: &UrlPolicy) -> Result<Option<String>, Refusal> {
    let u = url::Url::parse(value).map_err(|_| Refusal("not a valid absolute URL"))?;
    match u.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        _ => return refuse("URL scheme is not allowed"),
    }
    if !u.username().is_empty() || u.password().is_some() {
        return refuse("URL carries credentials");
    }
    let host = match u.host() {
        None => return refuse("URL has no host"),
        Some(url::Host::Ipv4(ip)) => {
            return if crate::net::is_public_ip(ip.into()) {
                allowed(&ip.to_string(), policy).map(|_| None)
            } else {
                refuse("URL points at a private, loopback or link-local address")
            };
        }
        Some(url::Host::Ipv6(ip)) => {
            return if crate::net::is_public_ip(ip.into()) {
                allowed(&ip.to_string(), policy).map(|_| None)
            } else {
                refuse("URL points at a private, loopback or link-local address")
            };
        }
        Some(url::Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
    };
    let internal = host == "localhost"
        || [".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".intranet", ".corp", ".lan"]
            .iter()
            .any(|s| host.ends_with(s))
        || host == "metadata"
        || !host.contains('.');
    if internal {
        return refuse("URL points at an internal host name");
    }
    allowed(&host, policy)?;
    Ok(Some(host))
}

fn allowed(host: &str, policy: &UrlPolicy) -> Result<(), Refusal> {
    if policy.hosts.is_empty()
        || policy.hosts.iter().any(|h| match h.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => h == host,
        })
    {
        Ok(())
    } else {
        refuse("URL host is not on the allow-list")
    }
}

/// Check free text: hidden characters, or an injection score at or above `threshold`.
pub fn text(value: &str, threshold: f32) -> Result<(), Refusal> {
    let (clean, removed) = crate::sanitize::sanitize(value);
    if removed.invisible > 0 || removed.control > 0 || removed.template_tokens > 0 {
        return refuse("text contains hidden characters or chat-template tokens");
    }
    if removed.comments > 0 {
        return refuse("text contains an HTML comment");
    }
    if crate::inject::scan(&clean).is_injection(threshold) {
        return refuse("text reads as a prompt injection");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
