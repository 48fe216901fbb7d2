//! How the config is shown (`GET /admin/config`, through `Serialize`): what may hold a secret is
//! masked as it is written out. A secret reference shows where it points (an environment
//! variable's name, a file's path; `secret.rs`), never a value; an API key's hash, the values of
//! literal `env` variables and plain headers, and the password and query of a URL are replaced
//! by [`MASK`].
//!
//! Defends against: the effective config leaking a secret written where the config allows
//! literal text (a token pasted into `env`, `headers`, a URL's password or query string).
//! Does not defend against: a secret pasted into a field that is not for secrets (`args`, a
//! rule's `when`): the admin view runs every string through the secret redactor as well
//! (`admin/config_view.rs`), which catches what has a recognisable shape only.

use serde::ser::SerializeMap;
use serde::Serializer;
use std::collections::BTreeMap;

/// What a masked value reads as.
pub const MASK: &str = "***";

/// The value, whatever it is, as [`MASK`].
pub(super) fn masked<T, S: Serializer>(_: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(MASK)
}

/// A map's keys, each value as [`MASK`].
pub(super) fn values<S: Serializer>(m: &BTreeMap<String, String>, s: S) -> Result<S::Ok, S::Error> {
    let mut out = s.serialize_map(Some(m.len()))?;
    for k in m.keys() {
        out.serialize_entry(k, MASK)?;
    }
    out.end()
}

pub(super) fn url<S: Serializer>(u: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mask_url(u))
}

pub(super) fn opt_url<S: Serializer>(u: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match u {
        Some(u) => s.serialize_some(&mask_url(u)),
        None => s.serialize_none(),
    }
}

/// A URL with its password, query and fragment masked (the user name stays: it is not a
/// secret, and says who connects). Text that does not parse as a URL is masked whole when it has
/// any of `@ ? #`, where a credential could hide.
pub fn mask_url(u: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(u) else {
        return if u.contains(['@', '?', '#']) { MASK.to_string() } else { u.to_string() };
    };
    if parsed.password().is_some() && parsed.set_password(Some(MASK)).is_err() {
        return MASK.to_string();
    }
    if parsed.query().is_some() {
        parsed.set_query(Some(MASK));
    }
    if parsed.fragment().is_some() {
        parsed.set_fragment(Some(MASK));
    }
    parsed.to_string()
}

/// Whether a secret reference's `prefix` is only an authentication scheme (`"Bearer "`,
/// `"Splunk "`): one word and a space. Anything else may carry a part of the secret.
pub(super) fn scheme_only(prefix: &str) -> bool {
    let Some(word) = prefix.strip_suffix(' ') else { return false };
    (1..=32).contains(&word.len())
        && word.starts_with(|c: char| c.is_ascii_alphabetic())
        && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_query_and_fragment() {
        assert_eq!(mask_url("postgres://app:hunter2@db:5432/x"), "postgres://app:***@db:5432/x");
        assert_eq!(mask_url("https://h/v1/traces?api_key=s3cret#t"), "https://h/v1/traces?***#***");
        assert_eq!(mask_url("https://issuer.example"), "https://issuer.example/");
        assert_eq!(mask_url("not a url but user:pw@host"), MASK);
        assert_eq!(mask_url("redis-host:6379"), "redis-host:6379");
    }

    #[test]
    fn only_a_scheme_prefix_is_shown() {
        assert!(scheme_only("Bearer ") && scheme_only("Splunk "));
        for p in ["Bearer", "Basic dXNlcjo= ", "user:", "sk-", " ", "Bearer  "] {
            assert!(!scheme_only(p), "{p:?}");
        }
    }
}
