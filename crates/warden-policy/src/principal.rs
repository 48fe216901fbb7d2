//! Who is calling: the result of authentication, read by every later stage.

use serde::Serialize;
use serde_json::{Map, Value};

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Principal {
    pub subject: String,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    /// The token's other claims (JWT/introspection only); never the token itself.
    pub claims: Map<String, Value>,
    pub method: AuthMethod,
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
        }
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The scopes of `needed` this principal lacks.
    pub fn missing_scopes<'a>(&self, needed: &'a [String]) -> Vec<&'a str> {
        needed.iter().filter(|s| !self.has_scope(s)).map(String::as_str).collect()
    }

    /// A key that identifies the same caller across requests: sessions are bound to it.
    pub fn binding_key(&self) -> String {
        format!("{:?}\u{0}{}\u{0}{}", self.method, self.tenant.as_deref().unwrap_or(""), self.subject)
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
    }
}
