//! Transport settings shared by every rdfs gRPC server and channel.
//!
//! Block data moves in ~64 KiB messages along multi-hop pipelines; hyper's
//! defaults (16 KiB frames, small adaptive windows) cost 40-60% of the
//! throughput there, so every endpoint uses large frames and fixed windows.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint, Server};

/// Request metadata naming the calling user (HDFS's effective user).
pub const USER_METADATA_KEY: &str = "x-rdfs-user";
/// The user that sends a call on behalf of `x-rdfs-user` (a proxy user,
/// Hadoop's real user).
pub const REAL_USER_METADATA_KEY: &str = "x-rdfs-real-user";

/// Metadata naming the client a call comes from: 16 random bytes per client,
/// in 32 hex digits (Hadoop IPC's `clientId`). With the call id, it lets the
/// namenode answer a retried at-most-once call from its retry cache.
pub const CLIENT_ID_METADATA_KEY: &str = "x-rdfs-client-id";

/// Metadata numbering a client's calls (Hadoop IPC's `callId`); a retry of a
/// call repeats its number.
pub const CALL_ID_METADATA_KEY: &str = "x-rdfs-call-id";

/// Names the calling user (and the real user behind a proxied call) on
/// every request of a channel: what rdfs's own tools and daemons send to
/// services that check who calls (the HA service's transitions and image
/// transfers need the superuser).
#[derive(Debug, Clone)]
pub struct UserInterceptor {
    user: tonic::metadata::AsciiMetadataValue,
    real_user: Option<tonic::metadata::AsciiMetadataValue>,
}

impl UserInterceptor {
    /// Fails when a name cannot travel as request metadata (not visible
    /// ASCII).
    pub fn new(user: &str, real_user: Option<&str>) -> Result<Self, String> {
        let value = |name: &str| {
            tonic::metadata::AsciiMetadataValue::try_from(name)
                .map_err(|_| format!("user name {name:?} cannot be sent: it must be visible ASCII"))
        };
        Ok(Self {
            user: value(user)?,
            real_user: real_user.map(value).transpose()?,
        })
    }
}

impl tonic::service::Interceptor for UserInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let metadata = request.metadata_mut();
        metadata.insert(USER_METADATA_KEY, self.user.clone());
        if let Some(real_user) = &self.real_user {
            metadata.insert(REAL_USER_METADATA_KEY, real_user.clone());
        }
        Ok(request)
    }
}

/// A client id as [`CLIENT_ID_METADATA_KEY`] carries it.
pub fn format_client_id(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 16 bytes of a client id sent as 32 hex digits; `None` otherwise.
pub fn parse_client_id(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

/// Largest HTTP/2 frame we send or accept.
pub const MAX_FRAME_SIZE: u32 = 1024 * 1024;
/// Per-stream flow-control window.
pub const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
/// Per-connection flow-control window.
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// Largest message either side will decode: a packet plus its checksums
/// with ample headroom, and large listings.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// The interceptor every server runs first ([`crate::tls::gate`]).
pub type Gate = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;

/// The server builder [`server`] returns.
pub type RdfsServer =
    Server<tower_layer::Stack<tonic::service::InterceptorLayer<Gate>, tower_layer::Identity>>;

/// A server builder with rdfs's transport settings; serve it on
/// [`incoming`], which does the TLS handshakes when TLS is on.
pub fn server() -> RdfsServer {
    Server::builder()
        .max_frame_size(MAX_FRAME_SIZE)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .layer(tonic::service::InterceptorLayer::new(
            crate::tls::gate as Gate,
        ))
}

/// The connections a server accepts on `listener`, with `TCP_NODELAY` set
/// and, with TLS on, past their handshake (see [`crate::tls::incoming`]).
/// (tonic applies its own `tcp_nodelay` only when it binds the socket
/// itself; without it, small replies such as pipeline acks and namenode
/// answers wait on Nagle's algorithm and the peer's delayed ACK: 40 ms.)
pub fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<crate::tls::Conn>> + Send + 'static {
    crate::tls::incoming(listener)
}

/// A lazily connecting channel to `addr` (`host:port`) with rdfs's transport
/// settings. Fails only if the address cannot form a URI.
pub fn channel(addr: &str, connect_timeout: Duration) -> Result<Channel, tonic::transport::Error> {
    Ok(endpoint(addr, connect_timeout)?.connect_lazy())
}

/// The endpoint behind [`channel`], for callers that want to connect eagerly.
pub fn endpoint(
    addr: &str,
    connect_timeout: Duration,
) -> Result<Endpoint, tonic::transport::Error> {
    let tls = crate::tls::client_config();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?;
    let endpoint = match tls {
        Some(tls) => endpoint.tls_config(tls)?,
        None => endpoint,
    };
    Ok(endpoint
        .connect_timeout(connect_timeout)
        .max_frame_size(MAX_FRAME_SIZE)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true))
}

/// Channels to peers by `host:port`, shared so that repeated transfers to
/// the same datanode reuse one HTTP/2 connection.
#[derive(Clone)]
pub struct ChannelCache {
    channels: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Channel>>>,
    connect_timeout: Duration,
}

impl ChannelCache {
    pub fn new(connect_timeout: Duration) -> Self {
        Self {
            channels: Default::default(),
            connect_timeout,
        }
    }

    /// The channel to `addr`, created (lazily connecting) on first use.
    pub fn get(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let channel = channel(addr, self.connect_timeout)?;
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// Drops the channel to a peer that failed, so the next use starts afresh.
    pub fn forget(&self, addr: &str) {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(addr);
    }
}

/// A failed call's message with the chain of causes behind it (a
/// transport failure's message alone says only "transport error"), and
/// what a TLS mismatch with `peer` looks like spelled out.
pub fn status_detail(status: &tonic::Status, peer: &str) -> String {
    let mut detail = if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        status.message().to_string()
    };
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !detail.contains(&text) {
            detail = format!("{detail}: {text}");
        }
        source = cause.source();
    }
    crate::tls::explain(peer, &detail)
}

/// How long one hop of a write pipeline waits for the acks of the
/// `downstream` datanodes after it (HDFS's socket timeout plus a read
/// timeout extension per node). Each hop waits longer than the one after
/// it, so when a datanode stalls, the hop just before it times out first
/// and names it, rather than every hop blaming its own neighbour.
pub fn pipeline_ack_timeout(socket_timeout: Duration, downstream: usize) -> Duration {
    let extension = (socket_timeout / 4).min(Duration::from_secs(5));
    socket_timeout + extension * downstream as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_round_trip_and_malformed_ones_are_none() {
        let id: [u8; 16] = *b"\x00\x01\x7f\x80\xff0123456789a";
        let text = format_client_id(&id);
        assert_eq!(text.len(), 32);
        assert_eq!(parse_client_id(&text), Some(id));
        for bad in ["", "00", &"g".repeat(32), &"0".repeat(31), &"é".repeat(16)] {
            assert_eq!(parse_client_id(bad), None, "{bad:?}");
        }
    }
}
