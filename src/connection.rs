//! One client connection: 4-byte length-prefixed frames in, responses out in request order.
//!
//! Requests are handled one at a time, in order, as Kafka does (so appends from pipelined
//! produce requests keep their order); a response that waits for the disk is handed to the
//! writer as a future, so the next requests are handled while the fsync runs.
//!
//! No files.

use crate::broker::Broker;
use crate::clock;
use crate::handler::{self, Boxed, Reply};
use crate::metrics::{CloseReason, METRICS};
use crate::protocol::{self, FrameError};
use crate::security::sasl::{Authenticator, Gate, RawReply};
use crate::security::{Listener, Session};
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

/// Responses queued per connection before the reader waits for the writer.
const IN_FLIGHT: usize = 32;

enum Outgoing {
    Ready(Bytes, Option<Served>),
    Later {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        response: Boxed<ResponseKind>,
        served: Served,
    },
}

/// A request on its way to the socket: counted in `/metrics` once its answer is written.
struct Served {
    api_key: ApiKey,
    started: Instant,
    frame_len: usize,
}

impl Served {
    fn new(api_key: ApiKey, started: Instant, frame_len: usize) -> Self {
        METRICS.in_flight(frame_len as i64);
        Served {
            api_key,
            started,
            frame_len,
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        METRICS.in_flight(-(self.frame_len as i64));
        if let Some(m) = METRICS.api(self.api_key) {
            m.requests.inc();
            m.latency.observe(self.started.elapsed().as_secs_f64());
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("frame length {0} is negative")]
    Negative(i32),
    #[error(
        "a TLS handshake (ClientHello) arrived on a listener without TLS; the client must \
         connect without TLS here, or to an SSL / SASL_SSL listener"
    )]
    TlsOnPlaintext,
    #[error("frame length {len} exceeds socket.request.max.bytes ({max})")]
    TooLarge { len: i32, max: usize },
    #[error("connection closed in the middle of a {expected}-byte frame ({got} bytes read)")]
    Torn { expected: usize, got: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `Ok(None)` on a clean close between frames. The length is checked against the limit
/// before anything is allocated, and the buffer grows only as bytes actually arrive.
pub async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut BufReader<R>,
    max: usize,
) -> Result<Option<Bytes>, ReadError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = rd.read(&mut prefix[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(ReadError::Torn { expected: 4, got })
            };
        }
        got += n;
    }
    let len = protocol::frame_length(prefix);
    if len < 0 {
        return Err(ReadError::Negative(len));
    }
    if len as usize > max {
        // A TLS record header (handshake, version 3.x) read as a length: a TLS client.
        if prefix[0] == 0x16 && prefix[1] == 0x03 {
            return Err(ReadError::TlsOnPlaintext);
        }
        return Err(ReadError::TooLarge { len, max });
    }
    let len = len as usize;
    // Up to 4 MiB up front (a produce request's usual size); beyond that, as bytes arrive.
    let mut buf = Vec::with_capacity(len.min(4 << 20));
    (&mut *rd).take(len as u64).read_to_end(&mut buf).await?;
    if buf.len() != len {
        return Err(ReadError::Torn {
            expected: len,
            got: buf.len(),
        });
    }
    Ok(Some(Bytes::from(buf)))
}

fn encode(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Option<Bytes> {
    match protocol::encode_response(api_key, version, correlation_id, body) {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::error!(?api_key, version, error = %e, "response does not encode");
            None
        }
    }
}

/// What Kafka answers to a request it cannot serve at that version.
fn unsupported(api_key: Option<ApiKey>, correlation_id: i32) -> Option<Bytes> {
    if api_key == Some(ApiKey::ApiVersions) {
        // KIP-511: a v0 ApiVersions response carrying the error and the supported ranges,
        // so the client can retry with a version both sides know.
        let body = handler::api_versions::response()
            .with_error_code(ResponseError::UnsupportedVersion.code());
        return encode(
            ApiKey::ApiVersions,
            0,
            correlation_id,
            &ResponseKind::ApiVersions(body),
        );
    }
    Some(protocol::encode_error_only(
        correlation_id,
        ResponseError::UnsupportedVersion.code(),
    ))
}

/// A plaintext TCP connection: its halves are split without a lock.
pub async fn serve_tcp(
    broker: Broker,
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<Listener>,
    shutdown: watch::Receiver<bool>,
) {
    let (rd, wr) = stream.into_split();
    serve(broker, rd, wr, Session::new(listener, peer), shutdown).await
}

/// Serves one connection, whatever carries its bytes (TCP, or TLS over TCP).
pub async fn serve<R, W>(
    broker: Broker,
    rd: R,
    wr: W,
    session: Session,
    mut shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let span = tracing::info_span!("conn", peer = %session.peer, listener = %session.listener.name);
    async move {
        tracing::debug!("accepted");
        let max = broker.config.props.int("socket.request.max.bytes").max(0) as usize;
        // Before and during the first SASL authentication, frames are held to Kafka's
        // smaller bound, so that an unauthenticated client cannot make the broker buffer much.
        let max_unauthenticated = max.min(
            broker.config.props.int("sasl.server.max.receive.size").max(0) as usize,
        );
        let failed_auth_delay = std::time::Duration::from_millis(
            broker
                .config
                .props
                .int("connection.failed.authentication.delay.ms")
                .max(0) as u64,
        );
        let mut rd = BufReader::with_capacity(64 * 1024, rd);
        let (tx, mut rx) = mpsc::channel::<Outgoing>(IN_FLIGHT);
        let writer = tokio::spawn(
            async move {
                let mut wr = BufWriter::with_capacity(64 * 1024, wr);
                while let Some(out) = rx.recv().await {
                    let (bytes, served) = match out {
                        Outgoing::Ready(b, served) => (Some(b), served),
                        Outgoing::Later {
                            api_key,
                            version,
                            correlation_id,
                            response,
                            served,
                        } => {
                            let body = response.await;
                            count_errors(api_key, &body);
                            (encode(api_key, version, correlation_id, &body), Some(served))
                        }
                    };
                    if let Some(b) = bytes {
                        if wr.write_all(&b).await.is_err() {
                            return;
                        }
                    }
                    drop(served);
                    if rx.is_empty() && wr.flush().await.is_err() {
                        return;
                    }
                }
                let _ = wr.flush().await;
                let _ = wr.shutdown().await;
            }
            .in_current_span(),
        );
        let mut session = session;
        METRICS.connections_open.inc();
        METRICS.accepted(&session.listener.name);
        let mut reason = CloseReason::Client;
        let mut sasl = if session.listener.protocol.uses_sasl() {
            match broker.sasl.listener(&session.listener.name) {
                Ok(l) => Some(Authenticator::new(l)),
                Err(e) => {
                    tracing::error!(error = %e, "SASL is misconfigured on this listener; closing");
                    METRICS.connections_open.dec();
                    METRICS.closed(CloseReason::Authentication);
                    return;
                }
            }
        } else {
            None
        };
        loop {
            let frame = tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    reason = CloseReason::Shutdown;
                    break;
                }
                frame = read_frame(
                    &mut rd,
                    if sasl.as_ref().is_some_and(|a| a.before_first_authentication()) {
                        max_unauthenticated
                    } else {
                        max
                    },
                ) => frame,
            };
            let frame = match frame {
                Ok(Some(f)) => f,
                Ok(None) => {
                    tracing::debug!("closed by client");
                    break;
                }
                // (UnexpectedEof: a TLS client that closed without close_notify, as most do)
                Err(ReadError::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    tracing::debug!(error = %e, "connection dropped by client");
                    break;
                }
                // A client stopped while sending (killed, or its process ended): nothing of
                // the partial request was acted on, so it is no more than a drop.
                Err(e @ ReadError::Torn { .. }) => {
                    tracing::debug!(error = %e, "connection dropped by client");
                    break;
                }
                Err(ReadError::TooLarge { len, max })
                    if sasl.as_ref().is_some_and(|a| a.before_first_authentication()) =>
                {
                    tracing::warn!(
                        client = %session.peer,
                        "failed authentication: a {len}-byte frame exceeds sasl.server.max.receive.size ({max}); closing"
                    );
                    reason = CloseReason::Authentication;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "closing connection");
                    reason = match e {
                        ReadError::TlsOnPlaintext => CloseReason::Tls,
                        ReadError::Io(_) => CloseReason::Io,
                        _ => CloseReason::BadRequest,
                    };
                    break;
                }
            };
            let (started, frame_len) = (Instant::now(), frame.len());
            if let Some(auth) = sasl.as_mut().filter(|a| a.expects_raw_token()) {
                // Kafka's unframed exchange after SaslHandshake v0: raw tokens both ways.
                match auth.on_raw_token(&frame, &mut session, clock::now_ms()) {
                    RawReply::Token(token) => {
                        let mut out = Vec::with_capacity(4 + token.len());
                        out.extend_from_slice(&(token.len() as u32).to_be_bytes());
                        out.extend_from_slice(&token);
                        if tx.send(Outgoing::Ready(out.into(), None)).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    RawReply::Close => break,
                }
            }
            let authenticating = sasl.as_ref().is_some_and(|a| a.is_authenticating());
            let request = match protocol::decode_request(frame) {
                Ok(r) => r,
                Err(e) => {
                    let reply = match &e {
                        FrameError::UnknownApiKey { correlation_id, .. } => unsupported(None, *correlation_id),
                        FrameError::UnsupportedVersion {
                            api_key, correlation_id, ..
                        } => unsupported(Some(*api_key), *correlation_id),
                        _ => None,
                    };
                    // Before authentication only ApiVersions is answered this way.
                    let reply = reply.filter(|_| {
                        !authenticating
                            || matches!(&e, FrameError::UnsupportedVersion { api_key: ApiKey::ApiVersions, .. })
                    });
                    match reply {
                        Some(bytes) => {
                            tracing::warn!(error = %e, "answering UNSUPPORTED_VERSION");
                            if tx.send(Outgoing::Ready(bytes, None)).await.is_err() {
                                break;
                            }
                            continue;
                        }
                        None => {
                            tracing::warn!(error = %e, "closing connection on a request that does not decode");
                            reason = CloseReason::BadRequest;
                            break;
                        }
                    }
                }
            };
            let (api_key, version) = (request.api_key, request.version);
            let correlation_id = request.header.correlation_id;
            let served = Served::new(api_key, started, frame_len);
            if let Some(auth) = sasl.as_mut() {
                let gate =
                    auth.on_request(api_key, version, &request.body, &mut session, clock::now_ms());
                let (body, close) = match gate {
                    Gate::Pass => (None, false),
                    Gate::Reply(body) => (Some(body), false),
                    Gate::ReplyAndClose(body) => (Some(body), true),
                    Gate::Close => {
                        reason = CloseReason::Authentication;
                        break;
                    }
                };
                if let Some(body) = body {
                    let Some(bytes) = encode(api_key, version, correlation_id, &body) else {
                        break;
                    };
                    if close && api_key == ApiKey::SaslAuthenticate {
                        // Kafka holds a failed authentication's answer back, which slows
                        // password guessing without holding up anyone else.
                        tokio::time::sleep(failed_auth_delay).await;
                    }
                    count_errors(api_key, &body);
                    if close {
                        reason = CloseReason::Authentication;
                    }
                    if tx.send(Outgoing::Ready(bytes, Some(served))).await.is_err() || close {
                        break;
                    }
                    continue;
                }
            }
            let span = tracing::debug_span!("request", api = ?api_key, version, correlation_id);
            let reply = handler::dispatch(&broker, request, &session).instrument(span).await;
            let out = match reply {
                Reply::Nothing => continue,
                Reply::Close => {
                    tracing::info!(
                        client = %session.peer,
                        correlation_id,
                        "closing the connection: an acks=0 produce failed"
                    );
                    reason = CloseReason::ProduceError;
                    break;
                }
                Reply::Now(body) => {
                    count_errors(api_key, &body);
                    match encode(api_key, version, correlation_id, &body) {
                        Some(b) => Outgoing::Ready(b, Some(served)),
                        None => break,
                    }
                }
                Reply::Later(response) => Outgoing::Later {
                    api_key,
                    version,
                    correlation_id,
                    response,
                    served,
                },
            };
            if tx.send(out).await.is_err() {
                break;
            }
        }
        drop(tx);
        let _ = writer.await;
        METRICS.connections_open.dec();
        METRICS.closed(reason);
        tracing::debug!(reason = reason.as_str(), "connection done");
    }
    .instrument(span)
    .await
}

/// Counts the error codes of a response in `/metrics`: the request's own code, and each
/// topic's, partition's, group's or resource's where Kafka answers per item.
fn count_errors(api_key: ApiKey, body: &ResponseKind) {
    crate::protocol::error_codes::each(body, &mut |code| {
        if code != 0 {
            METRICS.error(api_key, code);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error_codes::tests::erring;

    #[test]
    fn an_error_in_a_response_is_counted_under_its_api_and_name() {
        // NOT_COORDINATOR (16) in an OffsetDelete and a DescribeAcls: codes no other test
        // of this process produces for these APIs.
        for key in [ApiKey::OffsetDelete, ApiKey::DescribeAcls] {
            let before = METRICS.error_count(key, 16);
            let body = erring(key, 16).expect("served API");
            count_errors(key, &body);
            assert_eq!(METRICS.error_count(key, 16), before + 1, "{key:?}");
        }
        let ok = erring(ApiKey::Heartbeat, 0).expect("served API");
        let before = METRICS.error_count(ApiKey::Heartbeat, 0);
        count_errors(ApiKey::Heartbeat, &ok);
        assert_eq!(
            METRICS.error_count(ApiKey::Heartbeat, 0),
            before,
            "0 is no error"
        );
    }
}
