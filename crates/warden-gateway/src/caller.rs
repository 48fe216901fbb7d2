//! Who is on the other end of a connection, as the listener learns it and puts it in each
//! request's extensions for the stages after it: the client's address and the identity of a
//! verified TLS client certificate. A leaf: the listener, TLS, authentication and the endpoints
//! all read these without depending on one another.

use std::net::IpAddr;
use std::sync::Arc;
use warden_policy::Principal;

/// The client's address: the peer, or the address a trusted proxy forwarded (`listener.rs`).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

/// A TLS client certificate's identity (`tls.rs`), read by authentication.
#[derive(Clone, Debug)]
pub struct PeerCert(pub Arc<Principal>);
