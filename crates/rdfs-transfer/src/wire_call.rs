//! A streaming gRPC call over a tonic channel with [`crate::wire`]'s
//! framing instead of tonic's codec: the request body is the chunks given,
//! as they are, and the response is read message by message from the DATA
//! frames as they arrived. Interceptors, TLS and the HTTP/2 connection are
//! tonic's; only the copies are gone.

use std::convert::Infallible;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio_stream::{Stream, StreamExt};
use tonic::body::Body;
use tonic::transport::Channel;
use tower_service::Service;

use crate::wire::{Rope, Segments};

/// Largest message a data stream accepts: a packet and its checksums with
/// ample headroom.
pub const MAX_MESSAGE: usize = rdfs_common::grpc::MAX_MESSAGE_SIZE;

/// Starts the call `path` (`/package.Service/Method`) with `chunks` as its
/// request body; returns once the response headers arrived.
pub async fn start(
    mut channel: Channel,
    path: &'static str,
    chunks: impl Stream<Item = Bytes> + Send + 'static,
) -> Result<Messages, tonic::Status> {
    let body = Body::new(StreamBody::new(
        chunks.map(|chunk| Ok::<_, Infallible>(Frame::data(chunk))),
    ));
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(body)
        .map_err(|e| tonic::Status::internal(format!("cannot build the request: {e}")))?;
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(|e| tonic::Status::from_error(Box::new(e)))?;
    let response = channel
        .call(request)
        .await
        .map_err(|e| tonic::Status::from_error(Box::new(e)))?;
    // A call refused outright answers with its status in the headers.
    if let Some(status) = tonic::Status::from_header_map(response.headers())
        && status.code() != tonic::Code::Ok
    {
        return Err(status);
    }
    if response.status() != http::StatusCode::OK {
        return Err(tonic::Status::unknown(format!(
            "HTTP status {} instead of a gRPC response",
            response.status()
        )));
    }
    Ok(Messages {
        body: response.into_body(),
        rope: Rope::default(),
        done: false,
    })
}

/// The messages of a response (or request) body, each in the pieces its
/// DATA frames delivered.
pub struct Messages {
    body: Body,
    rope: Rope,
    done: bool,
}

impl Messages {
    pub fn new(body: Body) -> Self {
        Self {
            body,
            rope: Rope::default(),
            done: false,
        }
    }

    /// The next message; `None` once the stream ended cleanly. A non-OK
    /// status in the trailers, a broken stream or bad framing is an error.
    pub async fn next(&mut self) -> Option<Result<Segments, tonic::Status>> {
        loop {
            match self.rope.next_message(MAX_MESSAGE) {
                Ok(Some(message)) => return Some(Ok(message)),
                Ok(None) => {}
                Err(malformed) => return Some(Err(tonic::Status::internal(malformed.to_string()))),
            }
            if self.done {
                return (!self.rope.is_empty()).then(|| {
                    Err(tonic::Status::internal(
                        "the stream ended in the middle of a message",
                    ))
                });
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.rope.push(data),
                    Err(frame) => {
                        if let Some(trailers) = frame.trailers_ref() {
                            self.done = true;
                            if let Some(status) = tonic::Status::from_header_map(trailers)
                                && status.code() != tonic::Code::Ok
                            {
                                return Some(Err(status));
                            }
                        }
                    }
                },
                Some(Err(status)) => return Some(Err(status)),
                None => self.done = true,
            }
        }
    }
}
