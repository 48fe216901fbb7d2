//! Federation naming: several upstreams behind one endpoint without their names colliding.
//! Tools and prompts become `<namespace><separator><name>`; resource URIs (and URI templates)
//! become `warden://<namespace>/<original URI>`. An upstream with an empty namespace is exposed
//! unchanged.
//!
//! Defends against: one upstream shadowing another's tool (collisions are reported and both
//! names withheld), tool names outside the spec's 1–128 characters of `[A-Za-z0-9_.-]` (withheld).

use crate::config::is_tool_char;

pub const URI_SCHEME: &str = "warden://";

pub struct Namespaces {
    sep: String,
    ns: Vec<String>,
}

pub fn valid_tool_name(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.chars().all(is_tool_char)
}

impl Namespaces {
    pub fn new(sep: &str, ns: Vec<String>) -> Self {
        Namespaces { sep: sep.to_string(), ns }
    }

    pub fn namespace(&self, up: usize) -> &str {
        &self.ns[up]
    }

    /// The name a client sees for an upstream's tool or prompt.
    pub fn name(&self, up: usize, name: &str) -> String {
        match self.ns[up].as_str() {
            "" => name.to_string(),
            ns => format!("{ns}{}{name}", self.sep),
        }
    }

    /// Like [`Self::name`], but None when the result is not a valid tool name.
    pub fn tool_name(&self, up: usize, name: &str) -> Option<String> {
        Some(self.name(up, name)).filter(|n| valid_tool_name(n))
    }

    /// The URI a client sees for an upstream's resource or template.
    pub fn uri(&self, up: usize, uri: &str) -> String {
        match self.ns[up].as_str() {
            "" => uri.to_string(),
            ns => format!("{URI_SCHEME}{ns}/{uri}"),
        }
    }

    /// Map a client-visible URI back: (upstream, original URI). Only namespaced URIs resolve
    /// here; URIs of un-namespaced upstreams are resolved by the caller.
    pub fn resolve_uri(&self, uri: &str) -> Option<(usize, String)> {
        let rest = uri.strip_prefix(URI_SCHEME)?;
        let (ns, orig) = rest.split_once('/')?;
        let up = self.ns.iter().position(|n| !n.is_empty() && n == ns)?;
        Some((up, orig.to_string()))
    }

    pub fn unprefixed(&self) -> impl Iterator<Item = usize> + '_ {
        self.ns.iter().enumerate().filter(|(_, n)| n.is_empty()).map(|(i, _)| i)
    }
}

/// Given every upstream's exposed names, the names claimed more than once, with their owners.
pub fn collisions<'a>(lists: impl IntoIterator<Item = (&'a str, Vec<String>)>) -> Vec<String> {
    let mut seen: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for (up, names) in lists {
        for n in names {
            seen.entry(n).or_default().push(up);
        }
    }
    seen.into_iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(n, v)| format!("{n:?} is exposed by {}", v.join(" and ")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_uris_round_trip() {
        let ns = Namespaces::new("__", vec!["fs".into(), "".into()]);
        assert_eq!(ns.name(0, "read"), "fs__read");
        assert_eq!(ns.name(1, "read"), "read");
        assert_eq!(ns.uri(0, "file:///a"), "warden://fs/file:///a");
        assert_eq!(ns.resolve_uri("warden://fs/file:///a"), Some((0, "file:///a".into())));
        assert_eq!(ns.resolve_uri("warden://nope/x"), None);
        assert_eq!(ns.resolve_uri("file:///a"), None);
        assert_eq!(ns.tool_name(0, "has space"), None);
        assert_eq!(ns.tool_name(0, &"x".repeat(125)), None);
        assert_eq!(ns.unprefixed().collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn collisions_are_reported_with_owners() {
        let c = collisions([("a", vec!["x".into(), "y".into()]), ("b", vec!["x".into()])]);
        assert_eq!(c, vec!["\"x\" is exposed by a and b".to_string()]);
    }
}
