//! TLS to PostgreSQL (the audit trail, the credential vault, the SQL tools), as libpq's
//! connection parameters say, in the URL's query (`postgres://…?sslmode=verify-full&…`) or a
//! `key=value` string:
//!
//! - `sslmode`: `disable`; `prefer` (the default, as libpq's: TLS when the server offers it,
//!   no certificate checked); `require` (TLS or no connection; no certificate checked, unless
//!   `sslrootcert` is given: then as `verify-ca`); `verify-ca` (the server's certificate chains
//!   to `sslrootcert`); `verify-full` (and names the host connected to).
//! - `sslrootcert`: a PEM file of the CAs to trust, or `system` (the machine's own roots: then
//!   `verify-full` is the default and the only mode taken, as in libpq 16: any public CA would
//!   vouch for any name otherwise). `verify-ca` and `verify-full` need it.
//!
//! A Unix socket (`host=/run/postgresql`) never takes TLS, as in libpq.
//!
//! rustls, TLS 1.2 and 1.3, ring's algorithms.
//!
//! Defends against: an eavesdropper on the network reading audit records, sealed credentials or
//! queries (any mode but `disable`, once TLS is up); a server posing as the database
//! (`verify-ca`: a certificate from the trusted CAs; `verify-full`: also for the host named).
//! Does not defend against: an active attacker under `prefer` or `require` without
//! `sslrootcert` (nothing is checked, as in libpq; `prefer` goes on in the clear when the
//! server answers that it has no TLS, or when told so by someone in between). Client
//! certificates (`sslcert`, `sslkey`) are not supported: a URL naming them is refused.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How a PostgreSQL server is reached: its settings, and TLS as the URL says.
#[derive(Clone)]
pub struct PgTarget {
    pub config: postgres::Config,
    tls: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for PgTarget {
    /// The settings without the password, and whether TLS is tried.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl PgTarget {
    pub fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        match &self.tls {
            None => self.config.connect(postgres::NoTls),
            Some(t) => self.config.connect(t.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS parameters taken off `url` (which tokio-postgres does not all know): the mode, the
/// root certificates, and the rest of the URL.
fn split(url: &str) -> Result<(Mode, Option<String>, String), String> {
    let url = url.trim();
    let mut mode = None;
    let mut root = None;
    let mut take = |k: &str, v: &str| -> Result<bool, String> {
        match k {
            "sslmode" => {
                mode = Some(match v {
                    "disable" => Mode::Disable,
                    "prefer" | "allow" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    _ => {
                        return Err(format!(
                            "sslmode {v:?}: expected disable, prefer, require, verify-ca or verify-full"
                        ))
                    }
                })
            }
            "sslrootcert" => root = Some(v.to_string()),
            "sslcert" | "sslkey" | "sslpassword" => {
                return Err(format!("{k}: client certificates are not supported"));
            }
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // The query starts after the user and password (up to the first `@`, as the driver reads
        // them): a `?` in a password does not start it.
        let from = url.find('@').map_or(0, |at| at + 1);
        match url[from..].find('?').map(|q| (&url[..from + q], &url[from + q + 1..])) {
            None => url.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(k, &percent_decode(v)?)? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            let (k, v) = token.split_once('=').unwrap_or((token, ""));
            if !take(k.trim(), v.trim())? {
                kept.push(token);
            }
        }
        kept.join(" ")
    };
    // What the driver would read as ours, had it been missed here: refused, not guessed.
    if rest.contains("sslmode") || rest.contains("sslrootcert") {
        return Err("sslmode or sslrootcert could not be read (write each once, as key=value)".into());
    }
    let system = root.as_deref() == Some("system");
    let mode = match mode {
        None if system => Mode::VerifyFull,
        None => Mode::Prefer,
        Some(m) if system && m != Mode::VerifyFull => {
            return Err("sslrootcert=system takes sslmode=verify-full only (a public CA vouches for names)".into())
        }
        Some(m) => m,
    };
    Ok((mode, root, rest))
}

fn percent_decode(v: &str) -> Result<String, String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = v.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or("a malformed %-escape in the URL")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a %-escape that is not UTF-8 in the URL".into())
}

/// Parse `url` (`postgres://…` or `key=value …`) with its TLS parameters.
pub fn parse(url: &str) -> Result<PgTarget, String> {
    let (mode, root, rest) = split(url)?;
    let mut config: postgres::Config = rest.parse().map_err(|e| format!("{e}"))?;
    // A Unix socket: no TLS (libpq never uses it there).
    let unix = config.get_hosts().iter().all(|h| matches!(h, postgres::config::Host::Unix(_)));
    let mode = if unix && !config.get_hosts().is_empty() { Mode::Disable } else { mode };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Option<Arc<dyn ServerCertVerifier>> = match (mode, &root) {
        (Mode::Disable, _) => None,
        (Mode::Prefer, _) | (Mode::Require, None) => {
            Some(Arc::new(Lenient { provider: provider.clone(), chain: None }))
        }
        (Mode::VerifyCa | Mode::VerifyFull, None) => {
            return Err("sslmode verify-ca and verify-full need sslrootcert (a PEM file, or `system`)".into())
        }
        (Mode::Require | Mode::VerifyCa | Mode::VerifyFull, Some(r)) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(r)?), provider.clone())
                .build()
                .map_err(|e| format!("sslrootcert: {e}"))?;
            if mode == Mode::VerifyFull {
                Some(webpki)
            } else {
                Some(Arc::new(Lenient { provider: provider.clone(), chain: Some(webpki) }))
            }
        }
    };
    config.ssl_mode(match mode {
        Mode::Disable => postgres::config::SslMode::Disable,
        Mode::Prefer => postgres::config::SslMode::Prefer,
        _ => postgres::config::SslMode::Require,
    });
    let tls = match verifier {
        None => None,
        Some(v) => {
            let c = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS: {e}"))?
                .dangerous()
                .with_custom_certificate_verifier(v)
                .with_no_client_auth();
            Some(MakeRustlsConnect::new(c))
        }
    };
    Ok(PgTarget { config, tls })
}

/// Advice when `url` reaches a server on another host without a verified certificate: what an
/// attacker on the path could do. `None` when verified, on loopback or a Unix socket, or when
/// the URL does not parse (`parse` says why).
pub fn unverified(url: &str) -> Option<String> {
    let (mode, root, rest) = split(url).ok()?;
    let config: postgres::Config = rest.parse().ok()?;
    let verified = matches!(mode, Mode::VerifyCa | Mode::VerifyFull) || (mode == Mode::Require && root.is_some());
    let remote = config.get_hosts().iter().find(|h| match h {
        postgres::config::Host::Tcp(name) => {
            name != "localhost" && !name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        postgres::config::Host::Unix(_) => false,
    });
    let postgres::config::Host::Tcp(host) = remote? else { return None };
    (!verified).then(|| {
        format!(
            "PostgreSQL at {host} is reached without a verified certificate (sslmode {}): whoever is on the path can read the traffic or pose as the server; use sslmode=verify-full with sslrootcert",
            match mode {
                Mode::Disable => "disable",
                Mode::Prefer => "prefer",
                _ => "require",
            }
        )
    })
}

fn roots(r: &str) -> Result<rustls::RootCertStore, String> {
    let mut store = rustls::RootCertStore::empty();
    if r == "system" {
        let found = rustls_native_certs::load_native_certs();
        store.add_parsable_certificates(found.certs);
    } else {
        for c in CertificateDer::pem_file_iter(r).map_err(|e| format!("sslrootcert {r}: {e}"))? {
            store.add(c.map_err(|e| format!("sslrootcert {r}: {e}"))?).map_err(|e| format!("sslrootcert {r}: {e}"))?;
        }
    }
    if store.is_empty() {
        return Err(format!("sslrootcert {r}: no certificate in it"));
    }
    Ok(store)
}

/// `prefer` and `require` (no chain: any certificate), `verify-ca` (the chain to the trusted
/// roots, whatever host it names). The handshake's signatures are checked either way.
#[derive(Debug)]
struct Lenient {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        // The name is checked last (after the chain, validity and usage): only its mismatch
        // is let pass.
        match chain.verify_server_cert(end, intermediates, name, ocsp, now) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_tls_parameters_are_taken_off_the_url() {
        let (m, r, rest) =
            split("postgres://u@db:5432/x?application_name=w&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem").unwrap();
        assert_eq!(
            (m, r.as_deref(), rest.as_str()),
            (Mode::VerifyFull, Some("/etc/ca.pem"), "postgres://u@db:5432/x?application_name=w")
        );
        let (m, r, rest) = split("postgres://u@db/x").unwrap();
        assert_eq!((m, r, rest.as_str()), (Mode::Prefer, None, "postgres://u@db/x"), "libpq's default");
        let (m, _, rest) = split("host=db user=u sslmode=disable dbname=x").unwrap();
        assert_eq!((m, rest.as_str()), (Mode::Disable, "host=db user=u dbname=x"));
        // A `?` in the password is not the query's start.
        let (m, r, rest) = split(" postgres://u:p?w@db/x?sslmode=require&sslrootcert=/ca.pem").unwrap();
        assert_eq!((m, r.as_deref(), rest.as_str()), (Mode::Require, Some("/ca.pem"), "postgres://u:p?w@db/x"));
        // The system's roots: verify-full, and only that.
        assert_eq!(split("postgres://db/x?sslrootcert=system").unwrap().0, Mode::VerifyFull);
        assert!(split("postgres://db/x?sslrootcert=system&sslmode=require").is_err());
        assert!(unverified("postgres://u@db.example.com/x").unwrap().contains("db.example.com"));
        assert!(unverified("postgres://u@db.example.com/x?sslmode=require").is_some());
        assert!(unverified("postgres://u@db.example.com/x?sslmode=verify-full&sslrootcert=/ca.pem").is_none());
        assert!(unverified("postgres://u@127.0.0.1/x").is_none() && unverified("host=/run/postgresql").is_none());
        // Written in a way not read here: refused, not left to the driver.
        assert!(split("postgres://db/x?sslmode%3Drequire").is_err());
        assert!(split("postgres://db/x?sslmode=bogus").is_err());
        assert!(split("postgres://db/x?sslcert=/c.pem").unwrap_err().contains("not supported"));
        assert!(parse("postgres://db/x?sslmode=verify-full").unwrap_err().contains("sslrootcert"));
        assert!(parse("postgres://db/x?sslmode=require&sslrootcert=/nonexistent.pem").is_err());
        assert!(parse("postgres://db/x?sslmode=require").is_ok());
    }
}
