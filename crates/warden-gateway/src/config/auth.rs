//! `[auth]`: who may call — JWT issuers, introspection, API keys, the built-in authorization server.

use super::*;

/// Authentication (DESIGN.md stage 2). Every request to `/mcp` must present one accepted
/// credential: a bearer JWT from an accepted issuer (or the built-in authorization server), an
/// opaque token accepted by introspection, an API key, or a verified client certificate.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// This server's canonical resource URI (RFC 8707), the MCP endpoint's public URL, e.g.
    /// `https://mcp.example.com/mcp`. Tokens must name it in `aud`. Required on a non-loopback
    /// bind; on loopback it defaults to `http://<Host header>/mcp`.
    #[serde(serialize_with = "mask::opt_url")]
    pub resource: Option<String>,
    /// Scopes every request needs. Missing ones get 403 `insufficient_scope`. Default none.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Scopes announced in the protected resource metadata. Default: `required_scopes`.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Authorization servers whose JWT access tokens are accepted.
    #[serde(default, rename = "jwt")]
    pub issuers: Vec<JwtIssuer>,
    /// Opaque access tokens checked by RFC 7662 introspection.
    pub introspection: Option<Introspection>,
    /// API keys for service clients (`warden apikey create` prints one with its entry).
    #[serde(default, rename = "api_key")]
    pub api_keys: Vec<ApiKeyEntry>,
    /// Scopes granted to a caller authenticated by a verified client certificate.
    #[serde(default)]
    pub mtls_scopes: Vec<String>,
    /// The built-in OAuth 2.1 authorization server.
    pub builtin: Option<BuiltinAs>,
}

/// An external authorization server whose JWTs are accepted.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuer {
    /// The issuer, compared exactly with `iss`. Keys are found by RFC 8414 / OIDC discovery
    /// under it unless `jwks_url` is set. `https://` (plain `http://` only to loopback).
    #[serde(serialize_with = "mask::url")]
    pub issuer: String,
    /// The JWKS URL, skipping discovery.
    #[serde(serialize_with = "mask::opt_url")]
    pub jwks_url: Option<String>,
    /// Signature algorithms accepted (asymmetric only). Default: RS256/384/512, PS256/384/512,
    /// ES256, ES384, EdDSA.
    #[serde(default = "default_algs")]
    pub algorithms: Vec<String>,
    /// Clock leeway for `exp`/`nbf`/`iat`, seconds. Default 30.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Longest accepted token lifetime (`exp - iat`), seconds. Default 3600.
    #[serde(default = "default_lifetime")]
    pub max_lifetime_secs: u64,
    /// Claim holding the caller's roles (dotted path, e.g. `realm_access.roles`). Default `roles`.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Claim holding the caller's tenant (dotted path). Default `tenant`.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// Seconds between background JWKS refreshes. Default 300.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_secs: u64,
    /// Fewest seconds between JWKS fetches caused by an unknown `kid`. Default 10.
    #[serde(default = "default_kid_refresh")]
    pub unknown_kid_refresh_secs: u64,
    /// Tenants this issuer may assert; a token naming another is refused. Empty (the default):
    /// any — set it whenever several issuers or API keys share one Warden with tenants.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Whether this issuer may grant Warden's own scopes (`warden:admin`, `warden:approve`).
    /// Default false: such scopes in its tokens are ignored, so an identity provider that anyone
    /// can register scopes at cannot make its users Warden operators.
    #[serde(default)]
    pub admin_scopes: bool,
    /// Warden's client at this issuer for signing its users in, in a browser, when they link
    /// their account at an upstream (`[upstream.oauth] mode = "user"`: Warden checks the one who
    /// opens a link is the user it is for). Default: registered dynamically (RFC 7591) when the
    /// issuer offers it; without either, this issuer's users cannot link.
    pub sign_in_client_id: Option<String>,
    /// The secret of `sign_in_client_id` (absent: a public client).
    pub sign_in_client_secret: Option<SecretRef>,
}

/// RFC 7662 token introspection for opaque tokens.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Introspection {
    /// The introspection endpoint (`https://`, or `http://` to loopback).
    #[serde(serialize_with = "mask::url")]
    pub endpoint: String,
    /// Warden's client id at the authorization server.
    pub client_id: String,
    /// Warden's client secret.
    pub client_secret: SecretRef,
    /// Seconds a result is cached (never past the token's `exp`). Default 30.
    #[serde(default = "default_introspect_cache")]
    pub cache_secs: u64,
    /// Introspections of tokens not in the cache, per client address (burst 20); past it the
    /// client gets 503 with `Retry-After`, so random tokens cannot turn Warden into a flood on
    /// the authorization server. Default `"120/minute"`.
    #[serde(default = "default_lookups_per_client")]
    pub lookups_per_client: String,
    /// The same over all clients (burst 100). Default `"50/s"`.
    #[serde(default = "default_lookups_total")]
    pub lookups_total: String,
}

/// One API key, stored only as a hash.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// The key's public id (the part after `wdk_`, before the next `_`).
    pub id: String,
    /// `sha256:<hex>` of the whole key.
    #[serde(serialize_with = "mask::masked")]
    pub hash: String,
    /// The principal's subject.
    pub subject: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    pub tenant: Option<String>,
    /// Expiry, RFC 3339 (e.g. `2027-01-31T00:00:00Z`). Absent: no expiry.
    pub expires: Option<String>,
}

/// The built-in OAuth 2.1 authorization server (for the embedded default and small teams).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinAs {
    /// The signing key (PKCS#8 Ed25519, created on first start). Default
    /// `warden-data/signing-key.pk8` beside the config file. Replicas share it (a mounted secret).
    pub key_file: Option<PathBuf>,
    /// Keys that signed earlier and still verify (and are published), signing nothing new: to
    /// rotate, make the new key `key_file` and keep the old one here until the tokens it signed
    /// have expired (`access_token_ttl_secs`). Relative to the config file.
    #[serde(default)]
    pub previous_key_files: Vec<PathBuf>,
    /// Local users with argon2id password hashes (`warden user add`). Default
    /// `warden-data/users.toml` beside the config file.
    pub users_file: Option<PathBuf>,
    /// Access token lifetime, seconds (at most 3600). Default 900.
    #[serde(default = "default_access_ttl")]
    pub access_token_ttl_secs: u64,
    /// Refresh token lifetime, seconds. Default 86400.
    #[serde(default = "default_refresh_ttl")]
    pub refresh_token_ttl_secs: u64,
    /// Scopes clients may request. Default `["mcp"]`.
    #[serde(default = "default_as_scopes")]
    pub scopes: Vec<String>,
    /// Accept RFC 7591 dynamic client registration. Default true.
    #[serde(default = "default_true")]
    pub dynamic_registration: bool,
    /// Accept Client ID Metadata Documents: an `https` URL as `client_id`, whose JSON document
    /// the server fetches (public addresses only). Default true.
    #[serde(default = "default_true")]
    pub client_metadata_documents: bool,
    /// Development and tests only: also fetch client metadata documents from `http` loopback URLs.
    /// Default false.
    #[serde(default)]
    pub client_metadata_allow_loopback: bool,
    /// Registered clients, refresh tokens (as hashes) and revoked grants, kept across restarts.
    /// Default `warden-data/as-state.json` beside the config file.
    pub state_file: Option<PathBuf>,
    /// Failed logins for one user name before it is locked for 15 minutes. Default 5.
    #[serde(default = "default_login_attempts")]
    pub max_failed_logins: u32,
    /// Dynamic registrations accepted per client address (an IPv6 client: per /64) in an hour;
    /// more get 429. Default 20.
    #[serde(default = "default_registrations_per_hour")]
    pub registrations_per_hour: u32,
    /// Dynamic registrations accepted from all addresses together in an hour. Default 200 (with
    /// unused clients forgotten after a day, at most a day's worth of them is kept).
    #[serde(default = "default_registrations_total")]
    pub registrations_total_per_hour: u32,
    /// A registered client that has obtained no token this many seconds after registering is
    /// forgotten (one that has is forgotten when its last grant is older than
    /// `refresh_token_ttl_secs` and it holds no live refresh token). Default 86400.
    #[serde(default = "default_unused_client_ttl")]
    pub unused_client_ttl_secs: u64,
}

impl JwtIssuer {
    /// The default rules for `issuer`.
    pub fn with_defaults(issuer: &str) -> JwtIssuer {
        toml::from_str(&format!("issuer = {issuer:?}")).expect("defaults parse")
    }
}

impl Auth {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if let Some(r) = &self.resource {
            let u = reqwest::Url::parse(r).map_err(|e| format!("auth.resource: not a URL: {e}"))?;
            if u.fragment().is_some() || !matches!(u.scheme(), "https" | "http") {
                return Err("auth.resource: expected an http(s) URL without a fragment".into());
            }
        }
        if self.issuers.is_empty()
            && self.introspection.is_none()
            && self.api_keys.is_empty()
            && self.builtin.is_none()
            && self.mtls_scopes.is_empty()
        {
            return Err("auth: no credential is accepted; configure jwt, introspection, api_key, builtin or \
                        mtls_scopes"
                .into());
        }
        for (i, j) in self.issuers.iter().enumerate() {
            check_remote_url(&j.issuer).map_err(|m| format!("auth.jwt[{i}].issuer: {m}"))?;
            if let Some(u) = &j.jwks_url {
                check_remote_url(u).map_err(|m| format!("auth.jwt[{i}].jwks_url: {m}"))?;
            }
            for a in &j.algorithms {
                if !default_algs().contains(a) {
                    return Err(format!(
                        "auth.jwt[{i}].algorithms: {a:?} is not accepted (asymmetric algorithms only: {})",
                        default_algs().join(", ")
                    ));
                }
            }
            if j.max_lifetime_secs == 0 || j.leeway_secs > 300 {
                return Err(format!("auth.jwt[{i}]: max_lifetime_secs must be ≥ 1 and leeway_secs ≤ 300"));
            }
        }
        if let Some(x) = &self.introspection {
            check_remote_url(&x.endpoint).map_err(|m| format!("auth.introspection.endpoint: {m}"))?;
        }
        let mut ids = std::collections::HashSet::new();
        for (i, k) in self.api_keys.iter().enumerate() {
            if !ids.insert(&k.id) {
                return Err(format!("auth.api_key[{i}].id: duplicate id {:?}", k.id));
            }
            let hex = k.hash.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("auth.api_key[{i}].hash: expected sha256:<64 hex digits>"));
            }
            if let Some(e) = &k.expires {
                humantime::parse_rfc3339(e).map_err(|e| format!("auth.api_key[{i}].expires: {e}"))?;
            }
        }
        if let Some(b) = &self.builtin {
            if b.access_token_ttl_secs == 0 || b.access_token_ttl_secs > 3600 {
                return Err("auth.builtin.access_token_ttl_secs: expected 1..=3600".into());
            }
            if b.max_failed_logins == 0 {
                return Err("auth.builtin.max_failed_logins: expected at least 1".into());
            }
        }
        Ok(())
    }
}
