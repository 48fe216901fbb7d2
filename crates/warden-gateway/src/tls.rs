//! The listener's TLS: TLS 1.3 only (rustls, ring), certificates re-read when their files change
//! (new connections get the new certificate; open ones keep theirs), and optional mTLS whose
//! verified client certificate becomes a [`Principal`].
//!
//! Defends against: downgrade to TLS ≤ 1.2 (not offered), clients without a certificate or with
//! one from another CA when mTLS is on (handshake refused), slow handshakes (bounded by the read
//! timeout), a broken certificate update (the old configuration stays in use and the error is
//! logged).
//! Does not defend against: revoked client certificates (no CRL/OCSP checking yet).

use crate::caller::PeerCert;
use crate::config::Tls;
use parking_lot::RwLock;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use warden_policy::{AuthMethod, Principal};

pub struct TlsState {
    cfg: Tls,
    mtls_scopes: Vec<String>,
    current: RwLock<Arc<ServerConfig>>,
    stamps: RwLock<Vec<Option<SystemTime>>>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(p: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(p)
        .map_err(|e| format!("{}: {e}", p.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", p.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", p.display()));
    }
    Ok(certs)
}

/// A rustls server configuration for `cfg`: TLS 1.3 only, HTTP/2 and HTTP/1.1 by ALPN.
pub fn server_config(cfg: &Tls) -> Result<ServerConfig, String> {
    let certs = read_certs(&cfg.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file).map_err(|e| format!("{}: {e}", cfg.key_file.display()))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?;
    let builder = match &cfg.client_ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(v)
        }
        None => builder.with_no_client_auth(),
    };
    let mut sc = builder.with_single_cert(certs, key).map_err(|e| format!("{}: {e}", cfg.cert_file.display()))?;
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(sc)
}

fn files(cfg: &Tls) -> Vec<PathBuf> {
    let mut f = vec![cfg.cert_file.clone(), cfg.key_file.clone()];
    f.extend(cfg.client_ca_file.clone());
    f
}

fn stamps(cfg: &Tls) -> Vec<Option<SystemTime>> {
    files(cfg).iter().map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).collect()
}

impl TlsState {
    pub fn new(cfg: &Tls, mtls_scopes: Vec<String>) -> Result<Arc<TlsState>, String> {
        let sc = server_config(cfg)?;
        Ok(Arc::new(TlsState {
            cfg: cfg.clone(),
            mtls_scopes,
            current: RwLock::new(Arc::new(sc)),
            stamps: RwLock::new(stamps(cfg)),
        }))
    }

    /// Re-read the files when they change, every `reload_secs`, while `self` lives.
    pub fn start_reload(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let every = Duration::from_secs(self.cfg.reload_secs.max(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(t) = me.upgrade() else { return };
                t.reload_if_changed();
            }
        });
    }

    /// Reload when a file's modification time changed. Returns whether a new config is in use.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamps(&self.cfg);
        if *self.stamps.read() == now {
            return false;
        }
        *self.stamps.write() = now;
        match server_config(&self.cfg) {
            Ok(sc) => {
                *self.current.write() = Arc::new(sc);
                tracing::info!("TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS reload failed; keeping the previous certificate");
                false
            }
        }
    }

    /// Complete a handshake; the verified client certificate's principal, if any.
    pub async fn accept(
        &self,
        stream: TcpStream,
        timeout: Duration,
    ) -> Result<(TlsStream<TcpStream>, Option<PeerCert>), String> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.current.read().clone());
        let tls = tokio::time::timeout(timeout, acceptor.accept(stream))
            .await
            .map_err(|_| "TLS handshake timed out".to_string())?
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|leaf| cert_principal(leaf.as_ref(), &self.mtls_scopes))
            .map(|p| PeerCert(Arc::new(p)));
        Ok((tls, peer))
    }
}

/// A verified client certificate → principal: subject from the first SAN URI, DNS name or email,
/// else the subject CN.
pub fn cert_principal(der: &[u8], scopes: &[String]) -> Option<Principal> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut subject = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for kind in 0..3 {
            subject = san.value.general_names.iter().find_map(|n| match (kind, n) {
                (0, GeneralName::URI(u)) => Some(u.to_string()),
                (1, GeneralName::DNSName(d)) => Some(d.to_string()),
                (2, GeneralName::RFC822Name(e)) => Some(e.to_string()),
                _ => None,
            });
            if subject.is_some() {
                break;
            }
        }
    }
    let subject = subject
        .or_else(|| cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(String::from))?;
    let mut claims = Map::new();
    claims.insert("cert_subject".into(), Value::String(cert.subject().to_string()));
    claims.insert("cert_issuer".into(), Value::String(cert.issuer().to_string()));
    let fp = crate::digest::hex(&crate::digest::sha256(der));
    claims.insert("cert_sha256".into(), Value::String(fp));
    Some(Principal {
        subject,
        tenant: None,
        client_id: None,
        scopes: scopes.to_vec(),
        roles: vec![],
        claims,
        method: AuthMethod::Mtls,
        presented: Default::default(),
    })
}
