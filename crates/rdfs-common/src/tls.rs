//! Mutual TLS on every rdfs connection (`[security] tls_enabled`): what
//! HDFS offers only with Kerberos, here without a KDC. Every daemon and
//! client holds a certificate signed by the cluster's CA (`rdfs ca`); a
//! server accepts only peers whose certificate chains to that CA, and the
//! certificate names who the peer is: its common name is the user (or the
//! daemon's name), its organizational unit the role — `namenode`,
//! `datanode`, `journalnode` or `client`.
//!
//! TLS is set up once per process ([`configure`]); the channel and server
//! builders of [`crate::grpc`] consult it, so no caller can forget it. A
//! server accepts connections itself (see [`incoming`]) so that it can
//! name, in its log, each peer that failed the handshake, spoke plaintext
//! to a TLS port or TLS to a plaintext one. A plaintext client that
//! reaches a TLS server is answered, on every call, with an error saying
//! the server requires TLS.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::Stream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::config::SecurityConfig;

/// How long a peer may take over the first bytes and the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first byte of every TLS connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("security.tls_enabled is set, but {0} is empty")]
    Missing(&'static str),
    #[error("{key} = {path}: {reason}")]
    File {
        key: &'static str,
        path: String,
        reason: String,
    },
    #[error("TLS set-up: {0}")]
    Setup(String),
    #[error("TLS was already set up differently in this process")]
    AlreadyConfigured,
}

/// What a certificate says its holder is (its subject's OU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Namenode,
    Datanode,
    Journalnode,
    Client,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Namenode,
        Role::Datanode,
        Role::Journalnode,
        Role::Client,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Namenode => "namenode",
            Self::Datanode => "datanode",
            Self::Journalnode => "journalnode",
            Self::Client => "client",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.name() == text)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Who the peer's certificate says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub name: String,
    pub role: Role,
}

impl std::fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} '{}'", self.role, self.name)
    }
}

/// Reads the subject of a DER certificate: its CN and OU.
pub fn identity_of(der: &[u8]) -> Result<PeerIdentity, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unreadable certificate: {e}"))?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or("the certificate has no common name")?
        .to_string();
    let role = subject
        .iter_organizational_unit()
        .next()
        .and_then(|ou| ou.as_str().ok())
        .ok_or("the certificate has no organizational unit (role)")?;
    let role = Role::parse(role).ok_or_else(|| format!("unknown role {role:?}"))?;
    Ok(PeerIdentity { name, role })
}

/// This process's TLS material, when TLS is on.
pub struct Tls {
    acceptor: TlsAcceptor,
    client: tonic::transport::ClientTlsConfig,
    /// Who this process's own certificate names.
    pub identity: PeerIdentity,
}

static TLS: OnceLock<Option<Arc<Tls>>> = OnceLock::new();

fn read(key: &'static str, path: &str) -> Result<Vec<u8>, TlsError> {
    if path.is_empty() {
        return Err(TlsError::Missing(key));
    }
    std::fs::read(path).map_err(|e| TlsError::File {
        key,
        path: path.to_string(),
        reason: e.to_string(),
    })
}

impl Tls {
    /// Loads the CA, certificate and key `security` names.
    pub fn load(security: &SecurityConfig) -> Result<Self, TlsError> {
        let ca_pem = read("security.tls_ca_file", &security.tls_ca_file)?;
        let cert_pem = read("security.tls_cert_file", &security.tls_cert_file)?;
        let key_pem = read("security.tls_key_file", &security.tls_key_file)?;
        let bad = |key: &'static str, path: &str, reason: String| TlsError::File {
            key,
            path: path.to_string(),
            reason,
        };
        let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&ca_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| bad("security.tls_ca_file", &security.tls_ca_file, e.to_string()))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                bad(
                    "security.tls_cert_file",
                    &security.tls_cert_file,
                    e.to_string(),
                )
            })?;
        let first = chain.first().ok_or_else(|| {
            bad(
                "security.tls_cert_file",
                &security.tls_cert_file,
                "no certificate in it".into(),
            )
        })?;
        let identity = identity_of(first)
            .map_err(|e| bad("security.tls_cert_file", &security.tls_cert_file, e))?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            bad(
                "security.tls_key_file",
                &security.tls_key_file,
                e.to_string(),
            )
        })?;

        let mut roots = rustls::RootCertStore::empty();
        for ca in &cas {
            roots
                .add(ca.clone())
                .map_err(|e| bad("security.tls_ca_file", &security.tls_ca_file, e.to_string()))?;
        }
        // ring rather than aws-lc: it builds without a C toolchain's cmake,
        // at the cost of the post-quantum key exchange.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| TlsError::Setup(e.to_string()))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Setup(format!("certificate and key: {e}")))?;
        server.alpn_protocols = vec![b"h2".to_vec()];

        let client = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&ca_pem))
            .identity(tonic::transport::Identity::from_pem(&cert_pem, &key_pem));
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            client,
            identity,
        })
    }
}

/// Sets this process's TLS up from `security` (nothing when TLS is off).
/// Once per process; a second call with TLS as the first left it is a
/// no-op, so tools that load their config twice are not refused.
pub fn configure(security: &SecurityConfig) -> Result<(), TlsError> {
    let wanted = if security.tls_enabled {
        Some(Arc::new(Tls::load(security)?))
    } else {
        None
    };
    let on = wanted.is_some();
    let installed = TLS.get_or_init(|| wanted);
    if installed.is_some() != on {
        return Err(TlsError::AlreadyConfigured);
    }
    if let Some(tls) = installed {
        tracing::debug!(identity = %tls.identity, "TLS on");
    }
    Ok(())
}

/// This process's TLS, when on.
pub fn current() -> Option<&'static Arc<Tls>> {
    TLS.get().and_then(Option::as_ref)
}

pub fn enabled() -> bool {
    current().is_some()
}

/// The client side of this process's TLS, for [`crate::grpc::endpoint`].
pub(crate) fn client_config() -> Option<tonic::transport::ClientTlsConfig> {
    current().map(|tls| tls.client.clone())
}

/// What a server knows of the peer of a connection; in every request's
/// extensions.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub remote_addr: Option<SocketAddr>,
    /// From its certificate, on a TLS connection.
    pub identity: Option<PeerIdentity>,
    /// A plaintext connection to a server that requires TLS: every call on
    /// it is refused.
    pub insecure: bool,
}

/// The peer of a request, as the connection it came on knows it.
pub fn peer<T>(request: &tonic::Request<T>) -> Option<&PeerInfo> {
    request.extensions().get::<PeerInfo>()
}

/// One accepted connection, plaintext or TLS.
pub enum Conn {
    Plain(TcpStream, PeerInfo),
    Tls(Box<TlsStream<TcpStream>>, PeerInfo),
}

impl Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        match self {
            Self::Plain(_, info) | Self::Tls(_, info) => info.clone(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream, _) => std::pin::Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream, _) => std::pin::Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream, _) => std::pin::Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream, _) => std::pin::Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream, _) => std::pin::Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Tls(stream, _) => {
                std::pin::Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream, _) => stream.is_write_vectored(),
            Self::Tls(stream, _) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream, _) => std::pin::Pin::new(stream).poll_flush(cx),
            Self::Tls(stream, _) => std::pin::Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream, _) => std::pin::Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream, _) => std::pin::Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connections accepted on `listener`, each with `TCP_NODELAY` set and,
/// with TLS on, past its handshake. Handshakes run apart from the accept
/// loop, so a slow or silent peer holds up no other. A peer that fails is
/// named in the log with why, and dropped.
pub fn incoming(
    listener: tokio::net::TcpListener,
) -> impl Stream<Item = std::io::Result<Conn>> + Send + 'static {
    let tls = current().cloned();
    let (conns, rx) = tokio::sync::mpsc::channel::<std::io::Result<Conn>>(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = conns.closed() => return,
            };
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors and the like: back off, go on.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let conns = conns.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                if let Some(conn) = establish(stream, remote, tls.as_deref()).await {
                    let _ = conns.send(Ok(conn)).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn establish(stream: TcpStream, remote: SocketAddr, tls: Option<&Tls>) -> Option<Conn> {
    let mut first = [0u8; 1];
    let starts_tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) => first[0] == TLS_HANDSHAKE_RECORD,
        // Closed at once, or silent: nothing to serve.
        _ => return None,
    };
    let info = |identity, insecure| PeerInfo {
        remote_addr: Some(remote),
        identity,
        insecure,
    };
    match (tls, starts_tls) {
        (None, false) => Some(Conn::Plain(stream, info(None, false))),
        (None, true) => {
            tracing::warn!(peer = %remote,
                "a peer began a TLS handshake, but TLS is off here (security.tls_enabled); dropped");
            // A fatal handshake_failure alert, so the peer hears a TLS
            // refusal rather than a bare reset.
            let mut stream = stream;
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                use tokio::io::AsyncWriteExt;
                let _ = stream
                    .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])
                    .await;
                let _ = stream.shutdown().await;
            })
            .await;
            None
        }
        (Some(_), false) => {
            tracing::warn!(peer = %remote,
                "a peer connected without TLS to this TLS port; each of its calls is refused");
            Some(Conn::Plain(stream, info(None, true)))
        }
        (Some(tls), true) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let (_, session) = stream.get_ref();
                    let identity = session
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .map(|cert| identity_of(cert));
                    match identity {
                        Some(Ok(identity)) => {
                            Some(Conn::Tls(Box::new(stream), info(Some(identity), false)))
                        }
                        Some(Err(reason)) => {
                            tracing::warn!(peer = %remote, %reason,
                                "TLS peer refused: its certificate names no rdfs identity");
                            None
                        }
                        None => {
                            tracing::warn!(peer = %remote, "TLS peer refused: no client certificate");
                            None
                        }
                    }
                }
                Ok(Err(err)) => {
                    tracing::warn!(peer = %remote, error = %err,
                        "TLS handshake failed (no certificate, one from another CA, or an expired one)");
                    None
                }
                Err(_) => {
                    tracing::warn!(peer = %remote, "TLS handshake timed out");
                    None
                }
            }
        }
    }
}

/// Refuses every call on a plaintext connection to a TLS server, saying
/// why; installed on every server by [`crate::grpc::server`].
pub fn gate(request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    if peer(&request).is_some_and(|peer| peer.insecure) {
        return Err(tonic::Status::unauthenticated(
            "this server requires TLS with a client certificate signed by the cluster's CA \
             (security.tls_enabled), but this client connected without TLS",
        ));
    }
    Ok(request)
}

/// An interceptor admitting only peers whose certificate has one of
/// `roles` (with TLS off, everyone).
pub fn require_role(
    service: &'static str,
    roles: &'static [Role],
) -> impl Fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |request| {
        if !enabled() {
            return Ok(request);
        }
        match peer(&request).and_then(|peer| peer.identity.as_ref()) {
            Some(identity) if roles.contains(&identity.role) => Ok(request),
            Some(identity) => {
                let wanted: Vec<&str> = roles.iter().map(|role| role.name()).collect();
                Err(crate::ExceptionKind::AccessControl.status(format!(
                    "{service} is for certificates of role {}; this one is {identity}",
                    wanted.join(" or ")
                )))
            }
            None => Err(crate::ExceptionKind::AccessControl
                .status(format!("{service} requires a client certificate"))),
        }
    }
}

/// Whether a transport failure is a TLS mismatch or refusal: a matter of
/// configuration that retrying will not mend.
pub fn is_mismatch(detail: &str) -> bool {
    let lower = detail.to_ascii_lowercase();
    lower.contains("received fatal alert")
        || lower.contains("invalid peer certificate")
        || lower.contains("corrupt message")
        || lower.contains("invalidcontenttype")
}

/// A transport failure's message, with what a TLS mismatch looks like
/// from this side spelled out.
pub fn explain(address: &str, message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    if enabled() {
        if lower.contains("corrupt message")
            || lower.contains("invalidcontenttype")
            || lower.contains("received fatal alert")
            || lower.contains("tls handshake eof")
            || lower.contains("connection reset")
            || lower.contains("broken pipe")
        {
            return format!(
                "{message} (this client uses TLS; the server at {address} may have TLS off, \
                 or refused this client's certificate)"
            );
        }
    } else if lower.contains("requires tls") {
        return message.to_string();
    } else if lower.contains("connection reset")
        || lower.contains("broken pipe")
        || lower.contains("frame with invalid size")
        || lower.contains("h2 protocol error")
    {
        return format!(
            "{message} (this client has TLS off; the server at {address} may require TLS: \
             set security.tls_enabled and its certificate files)"
        );
    }
    message.to_string()
}
