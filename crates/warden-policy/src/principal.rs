//! Who is calling: the result of authentication, read by every later stage.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A bearer JWT validated locally (external IdP or the built-in authorization server).
    Jwt,
    /// An opaque bearer token validated by RFC 7662 introspection.
    Introspection,
    /// A Warden API key.
    ApiKey,
    /// A TLS client certificate.
    Mtls,
    /// Nobody: a loopback listener with no authentication configured, or the local stdio client.
    Local,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Principal {
    pub subject: String,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    /// The token's other claims (JWT/introspection only); never the token itself.
    pub claims: Map<String, Value>,
    pub method: AuthMethod,
    /// The bearer token itself (JWT/introspection only), kept for one use: an upstream that
    /// takes the caller's identity by token exchange (RFC 8693). Never serialized, printed or
    /// compared.
    #[serde(skip)]
    pub presented: Presented,
}

/// A caller's bearer token, held only to be exchanged for an upstream's: it never appears in
/// `Debug` output or serialization, and two principals compare equal whatever their tokens.
#[derive(Clone, Default)]
pub struct Presented(Option<std::sync::Arc<str>>);

impl Presented {
    pub fn new(token: &str) -> Presented {
        Presented(Some(token.into()))
    }

    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Presented(..)" } else { "Presented(none)" })
    }
}

impl PartialEq for Presented {
    fn eq(&self, _: &Presented) -> bool {
        true
    }
}

impl Principal {
    /// The caller of an unauthenticated loopback listener or of stdio mode.
    pub fn local() -> Principal {
        Principal {
            subject: "local".into(),
            tenant: None,
            client_id: None,
            scopes: vec![],
            roles: vec![],
            claims: Map::new(),
            method: AuthMethod::Local,
            presented: Presented::default(),
        }
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The scopes of `needed` this principal lacks.
    pub fn missing_scopes<'a>(&self, needed: &'a [String]) -> Vec<&'a str> {
        needed.iter().filter(|s| !self.has_scope(s)).map(String::as_str).collect()
    }

    /// Who vouches for the subject: a token's issuer (`iss`), an API key's id, nothing else.
    pub fn issuer(&self) -> &str {
        match self.method {
            AuthMethod::Jwt | AuthMethod::Introspection => self.claims.get("iss").and_then(Value::as_str).unwrap_or(""),
            AuthMethod::ApiKey => self.client_id.as_deref().unwrap_or(""),
            AuthMethod::Mtls | AuthMethod::Local => "",
        }
    }

    /// A key that identifies exactly the same caller across requests — how it authenticated, its
    /// tenant, who vouches for it ([`Principal::issuer`]) and its subject. Sessions, approvals
    /// and limits are bound to it: the same `sub` from two issuers is two callers.
    pub fn binding_key(&self) -> String {
        format!(
            "{:?}\u{0}{}\u{0}{}\u{0}{}",
            self.method,
            self.tenant.as_deref().unwrap_or(""),
            self.issuer(),
            self.subject
        )
    }

    /// The person behind any of their credentials, loosely: tenant and subject (case folded).
    /// Only for checks where a false match refuses and never grants: an approver with the
    /// requester's person key is the requester, whether it signed in with a token or a key.
    pub fn person_key(&self) -> String {
        format!("{}\u{0}{}", self.tenant.as_deref().unwrap_or(""), self.subject.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_scopes_lists_only_the_absent_ones() {
        let mut p = Principal::local();
        p.scopes = vec!["mcp:read".into()];
        let need = vec!["mcp:read".to_string(), "mcp:write".to_string()];
        assert_eq!(p.missing_scopes(&need), vec!["mcp:write"]);
        assert!(p.has_scope("mcp:read"));
    }

    #[test]
    fn binding_key_separates_tenants_and_methods() {
        let a = Principal { tenant: Some("a".into()), ..Principal::local() };
        let b = Principal { tenant: Some("b".into()), ..Principal::local() };
        assert_ne!(a.binding_key(), b.binding_key());
        let k = Principal { method: AuthMethod::ApiKey, ..Principal::local() };
        assert_ne!(k.binding_key(), Principal::local().binding_key());
        // The same subject from two issuers, or two API keys, is two callers…
        let jwt = |iss: &str| {
            let mut claims = Map::new();
            claims.insert("iss".into(), iss.into());
            Principal { subject: "alice".into(), method: AuthMethod::Jwt, claims, ..Principal::local() }
        };
        assert_ne!(jwt("https://a").binding_key(), jwt("https://b").binding_key());
        let key = |id: &str| Principal {
            subject: "alice".into(),
            method: AuthMethod::ApiKey,
            client_id: Some(format!("apikey:{id}")),
            ..Principal::local()
        };
        assert_ne!(key("k1").binding_key(), key("k2").binding_key());
        // …but one person, for the checks that only refuse.
        assert_eq!(jwt("https://a").person_key(), key("k1").person_key());
    }

    /// Issue 27: the token kept for an exchange never shows in logs, records or sessions.
    #[test]
    fn a_presented_token_is_never_printed_or_serialized() {
        let p = Principal { presented: Presented::new("eyJ.secret-token.sig"), ..Principal::local() };
        assert_eq!(p.presented.get(), Some("eyJ.secret-token.sig"));
        assert!(!format!("{p:?}").contains("secret-token"));
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("secret-token"), "{json}");
        let back: Principal = serde_json::from_str(&json).unwrap();
        assert_eq!(back.presented.get(), None);
        assert_eq!(back, p, "comparisons ignore the token");
    }
}
