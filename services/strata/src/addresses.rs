//! Listen addresses from the config.

use std::net::SocketAddr;

/// A listen address that is not an IP address and port.
#[derive(Debug, thiserror::Error)]
#[error("invalid listen address {0}")]
pub struct BadAddress(String);

/// The socket address a server listens on (`server.*_listen_address` must be
/// an IP address: it is not resolved).
pub(crate) fn socket_addr(host: &str, port: u16) -> Result<SocketAddr, BadAddress> {
    format!("{host}:{port}")
        .parse()
        .map_err(|_| BadAddress(format!("{host}:{port}")))
}
