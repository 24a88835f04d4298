//! One client connection: 4-byte length-prefixed frames in, responses out in request order.
//!
//! Requests are handled one at a time, in order, as Kafka does (so appends from pipelined
//! produce requests keep their order); a response that waits for the disk is handed to the
//! writer as a future, so the next requests are handled while the fsync runs.
//!
//! What a connection may make the broker hold is bounded: the bytes of requests read and
//! not yet handled count against the broker-wide `queued.max.request.bytes` (`memory`),
//! and a connection whose answers are not being read stops being read. An idle connection
//! holds no buffers (`io`), and one that moves no bytes for `connections.max.idle.ms` while
//! the broker does nothing for it is closed.
//!
//! On a plaintext socket a Fetch answer's records go from the segment files to the socket
//! without passing through the broker's memory (`zero_copy`): the answer holds the open
//! files until it is written, and its bytes count as unsent answers meanwhile.
//!
//! Files: reads the segment files a Fetch answer carries; opens none.

use crate::broker::Broker;
use crate::clock;
use crate::handler::{self, Boxed, Reply};
use crate::metrics::{CloseReason, METRICS};
use crate::protocol::{self, FrameError};
use crate::security::sasl::{Authenticator, Gate, RawReply};
use crate::security::{Listener, Session};
use bytes::Bytes;
use io::{Activity, FrameReader, ReadError, Tracked};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, ResponseKind};
pub use memory::RequestMemory;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;
use zero_copy::{Piece, Sink};

pub mod io;
pub mod memory;
pub mod zero_copy;

/// Answers queued per connection before the reader waits for the writer.
const IN_FLIGHT: usize = 32;

/// Bytes of answers a connection may have waiting to be written before it stops reading
/// requests (beyond the one answer that crossed it): what a client that does not read its
/// answers can make the broker hold.
const QUEUED_ANSWER_BYTES: usize = 1 << 20;

/// Small answers ready together are written as one batch of up to this many bytes;
/// larger answers are written as they are.
const BATCH_BYTES: usize = 64 * 1024;

enum Outgoing {
    Ready(Bytes, Option<Served>),
    /// An answer with records still in segment files.
    Pieces(Vec<Piece>, Served),
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

/// An encoded answer.
enum Answer {
    Bytes(Bytes),
    Pieces(Vec<Piece>),
}

/// A Fetch answer with records in segment files: spliced around them, or — where the
/// splicing encoder does not place every field of the answer — read into memory and
/// encoded whole. Err: the connection is to be closed (a file no longer holds its range,
/// or the answer does not encode).
fn encode_spliced(
    version: i16,
    correlation_id: i32,
    mut body: Box<ResponseKind>,
    files: Vec<Option<crate::log::FileRange>>,
) -> Result<Answer, CloseReason> {
    if let ResponseKind::Fetch(resp) = &*body {
        match protocol::spliced::encode_fetch(version, correlation_id, resp, files.clone(), |r| {
            r.len
        }) {
            Ok(pieces) => return Ok(Answer::Pieces(pieces)),
            Err(e) => tracing::debug!(error = %e, "answer read into memory"),
        }
    }
    if let Err(e) = handler::fetch::fill_records(&mut body, files) {
        tracing::warn!(error = %e, "records no longer readable; closing the connection");
        return Err(CloseReason::Io);
    }
    encode(ApiKey::Fetch, version, correlation_id, &body)
        .map(Answer::Bytes)
        .ok_or(CloseReason::Client)
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
    memory: RequestMemory,
    shutdown: watch::Receiver<bool>,
) {
    let (rd, wr) = stream.into_split();
    serve(
        broker,
        rd,
        wr,
        Session::new(listener, peer),
        memory,
        shutdown,
    )
    .await
}

/// Serves one connection, whatever carries its bytes (TCP, or TLS over TCP).
pub async fn serve<R, W>(
    broker: Broker,
    rd: R,
    wr: W,
    session: Session,
    memory: RequestMemory,
    shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: Sink + Send + 'static,
{
    let span = tracing::info_span!("conn", peer = %session.peer, listener = %session.listener.name);
    // Boxed: the connection's task then stays small while the connection is idle, and the
    // state of the request being handled is allocated only while it is handled.
    Box::pin(serve_inner(broker, rd, wr, session, memory, shutdown))
        .instrument(span)
        .await
}

async fn serve_inner<R, W>(
    broker: Broker,
    rd: R,
    wr: W,
    session: Session,
    memory: RequestMemory,
    mut shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: Sink + Send + 'static,
{
    tracing::debug!("accepted");
    let max = broker.config.connections.socket_request_max_bytes;
    let max_idle = broker.config.connections.max_idle;
    // Before and during the first SASL authentication, frames are held to Kafka's
    // smaller bound, so that an unauthenticated client cannot make the broker buffer much.
    let max_unauthenticated = max.min(
        broker
            .config
            .props
            .int("sasl.server.max.receive.size")
            .max(0) as usize,
    );
    let activity = Arc::new(Activity::new());
    let mut rd = FrameReader::new(Tracked::new(rd, activity.clone()));
    let (tx, rx) = mpsc::channel::<Box<Outgoing>>(IN_FLIGHT);
    let writer = AbortOnDrop(tokio::spawn(
        write_answers(Tracked::new(wr, activity.clone()), rx, activity.clone()).in_current_span(),
    ));
    METRICS.connections_open.inc();
    METRICS.accepted(&session.listener.name);
    let sasl = if session.listener.protocol.uses_sasl() {
        match broker.sasl.listener(&session.listener.name) {
            Ok(l) => Some(Box::new(Authenticator::new(l))),
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
    let mut conn = Conn {
        broker,
        session,
        sasl,
        activity: activity.clone(),
    };
    let reason = loop {
        let limit = if conn.before_first_authentication() {
            max_unauthenticated
        } else {
            max
        };
        // Room for the answer, answers written, then the frame: a client that does not read
        // what it is sent is not read from either.
        let next = async {
            let permit = tx.reserve().await.ok()?;
            activity.until_written(QUEUED_ANSWER_BYTES).await;
            Some((permit, rd.read_frame(limit, &memory, &activity).await))
        };
        tokio::pin!(next);
        let next = loop {
            let deadline = max_idle.map(|idle| activity.idle_deadline(idle));
            tokio::select! {
                biased;
                _ = shutdown.changed() => break Err(CloseReason::Shutdown),
                next = &mut next => break Ok(next),
                _ = sleep_until(deadline) => {
                    if max_idle.is_some_and(|idle| activity.is_idle(idle)) {
                        tracing::debug!(
                            unsent = activity.unsent(),
                            "closing: idle for connections.max.idle.ms"
                        );
                        break Err(CloseReason::Idle);
                    }
                }
            }
        };
        let (permit, frame) = match next {
            Ok(Some(next)) => next,
            // The writer is gone: the socket failed.
            Ok(None) => break CloseReason::Client,
            Err(why) => break why,
        };
        let (frame, lease) = match frame {
            Ok(Some(f)) => f,
            Ok(None) => {
                tracing::debug!("closed by client");
                break CloseReason::Client;
            }
            Err(e) => break conn.read_failed(e),
        };
        // Boxed: the state of a request being handled is allocated while it is handled,
        // not kept in every connection's task.
        let closing = Box::pin(conn.handle(frame, permit)).await;
        drop(lease);
        conn.activity.touch();
        if let Some(reason) = closing {
            break reason;
        }
    };
    drop(tx);
    // The answers already queued are written, unless the client stops reading them (or
    // the connection was closed for that).
    let mut writer = writer;
    if reason == CloseReason::Idle {
        writer.0.abort();
    }
    loop {
        let deadline = max_idle.map(|idle| activity.idle_deadline(idle));
        tokio::select! {
            _ = &mut writer.0 => break,
            _ = sleep_until(deadline) => {
                if max_idle.is_some_and(|idle| activity.is_idle(idle)) {
                    writer.0.abort();
                }
            }
        }
    }
    METRICS.connections_open.dec();
    METRICS.closed(reason);
    tracing::debug!(reason = reason.as_str(), "connection done");
}

/// What the handling of one request needs of its connection.
struct Conn {
    broker: Broker,
    session: Session,
    /// On SASL listeners, the authentication's state (boxed: plaintext connections pay
    /// nothing for it).
    sasl: Option<Box<Authenticator>>,
    activity: Arc<Activity>,
}

impl Conn {
    fn before_first_authentication(&self) -> bool {
        self.sasl
            .as_ref()
            .is_some_and(|a| a.before_first_authentication())
    }

    /// Why a failed read closes the connection, logged as it deserves.
    fn read_failed(&self, e: ReadError) -> CloseReason {
        match e {
            // (UnexpectedEof: a TLS client that closed without close_notify, as most do)
            ReadError::Io(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                tracing::debug!(error = %e, "connection dropped by client");
                CloseReason::Client
            }
            // A client stopped while sending (killed, or its process ended): nothing of
            // the partial request was acted on, so it is no more than a drop.
            e @ ReadError::Torn { .. } => {
                tracing::debug!(error = %e, "connection dropped by client");
                CloseReason::Client
            }
            ReadError::TooLarge { len, max } if self.before_first_authentication() => {
                tracing::warn!(
                    client = %self.session.peer,
                    "failed authentication: a {len}-byte frame exceeds sasl.server.max.receive.size ({max}); closing"
                );
                CloseReason::Authentication
            }
            e => {
                tracing::warn!(error = %e, "closing connection");
                match e {
                    ReadError::TlsOnPlaintext => CloseReason::Tls,
                    ReadError::Io(_) => CloseReason::Io,
                    _ => CloseReason::BadRequest,
                }
            }
        }
    }

    /// Handles one request and queues its answer (through `permit`, reserved before the
    /// frame was read). Some(reason) when the connection is to be closed.
    async fn handle(
        &mut self,
        frame: Bytes,
        permit: mpsc::Permit<'_, Box<Outgoing>>,
    ) -> Option<CloseReason> {
        let activity = &self.activity;
        let send = |out: Outgoing| {
            match &out {
                Outgoing::Ready(bytes, _) => activity.queued(bytes.len()),
                Outgoing::Pieces(pieces, _) => activity.queued(zero_copy::len(pieces)),
                Outgoing::Later { .. } => {}
            }
            permit.send(Box::new(out));
        };
        let (started, frame_len) = (Instant::now(), frame.len());
        if let Some(auth) = self.sasl.as_mut().filter(|a| a.expects_raw_token()) {
            // Kafka's unframed exchange after SaslHandshake v0: raw tokens both ways.
            return match auth.on_raw_token(&frame, &mut self.session, clock::now_ms()) {
                RawReply::Token(token) => {
                    let mut out = Vec::with_capacity(4 + token.len());
                    out.extend_from_slice(&(token.len() as u32).to_be_bytes());
                    out.extend_from_slice(&token);
                    send(Outgoing::Ready(out.into(), None));
                    None
                }
                RawReply::Close => Some(CloseReason::Client),
            };
        }
        let authenticating = self.sasl.as_ref().is_some_and(|a| a.is_authenticating());
        let request = match protocol::decode_request(frame) {
            Ok(r) => r,
            Err(e) => {
                let reply = match &e {
                    FrameError::UnknownApiKey { correlation_id, .. } => {
                        unsupported(None, *correlation_id)
                    }
                    FrameError::UnsupportedVersion {
                        api_key,
                        correlation_id,
                        ..
                    } => unsupported(Some(*api_key), *correlation_id),
                    _ => None,
                };
                // Before authentication only ApiVersions is answered this way.
                let reply = reply.filter(|_| {
                    !authenticating
                        || matches!(
                            &e,
                            FrameError::UnsupportedVersion {
                                api_key: ApiKey::ApiVersions,
                                ..
                            }
                        )
                });
                return match reply {
                    Some(bytes) => {
                        tracing::warn!(error = %e, "answering UNSUPPORTED_VERSION");
                        send(Outgoing::Ready(bytes, None));
                        None
                    }
                    None => {
                        tracing::warn!(error = %e, "closing connection on a request that does not decode");
                        Some(CloseReason::BadRequest)
                    }
                };
            }
        };
        let (api_key, version) = (request.api_key, request.version);
        let correlation_id = request.header.correlation_id;
        let served = Served::new(api_key, started, frame_len);
        if let Some(auth) = self.sasl.as_mut() {
            let gate = auth.on_request(
                api_key,
                version,
                &request.body,
                &mut self.session,
                clock::now_ms(),
            );
            let (body, close) = match gate {
                Gate::Pass => (None, false),
                Gate::Reply(body) => (Some(body), false),
                Gate::ReplyAndClose(body) => (Some(body), true),
                Gate::Close => return Some(CloseReason::Authentication),
            };
            if let Some(body) = body {
                if close && api_key == ApiKey::SaslAuthenticate {
                    // Kafka holds a failed authentication's answer back, which slows
                    // password guessing without holding up anyone else: the writer sends
                    // it after the delay, and nothing more is read meanwhile.
                    let delay = self
                        .broker
                        .config
                        .props
                        .int("connection.failed.authentication.delay.ms")
                        .max(0) as u64;
                    send(Outgoing::Later {
                        api_key,
                        version,
                        correlation_id,
                        response: Box::pin(async move {
                            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                            body
                        }),
                        served,
                    });
                    return Some(CloseReason::Authentication);
                }
                count_errors(api_key, &body);
                // An answer that does not encode leaves nothing to send: the client would
                // wait for it forever, so the connection is closed (as before its answer).
                let Some(bytes) = encode(api_key, version, correlation_id, &body) else {
                    return Some(CloseReason::Client);
                };
                send(Outgoing::Ready(bytes, Some(served)));
                return close.then_some(CloseReason::Authentication);
            }
        }
        let span = tracing::debug_span!("request", api = ?api_key, version, correlation_id);
        let reply = handler::dispatch(&self.broker, request, &self.session)
            .instrument(span)
            .await;
        let out = match reply {
            Reply::Nothing => return None,
            Reply::Close => {
                tracing::info!(
                    client = %self.session.peer,
                    correlation_id,
                    "closing the connection: an acks=0 produce failed"
                );
                return Some(CloseReason::ProduceError);
            }
            Reply::Now(body) => {
                count_errors(api_key, &body);
                let Some(bytes) = encode(api_key, version, correlation_id, &body) else {
                    return Some(CloseReason::Client);
                };
                Outgoing::Ready(bytes, Some(served))
            }
            Reply::Spliced { body, files } => {
                count_errors(api_key, &body);
                match encode_spliced(version, correlation_id, body, files) {
                    Ok(Answer::Pieces(pieces)) => Outgoing::Pieces(pieces, served),
                    Ok(Answer::Bytes(bytes)) => Outgoing::Ready(bytes, Some(served)),
                    Err(reason) => return Some(reason),
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
        send(out);
        None
    }
}

/// Writes answers in request order. Small answers that are ready together go out in one
/// write; the batch buffer is dropped whenever the queue is empty, so an idle connection
/// keeps none.
async fn write_answers<W: Sink>(
    mut wr: W,
    mut rx: mpsc::Receiver<Box<Outgoing>>,
    activity: Arc<Activity>,
) {
    let mut batch: Vec<u8> = Vec::new();
    while let Some(out) = rx.recv().await {
        let (bytes, served) = match *out {
            Outgoing::Ready(b, served) => (Some(b), served),
            Outgoing::Pieces(pieces, served) => {
                // In order: what is batched goes first.
                if !write_batch(&mut wr, &mut batch, &activity).await {
                    return;
                }
                if let Err(e) = zero_copy::write_pieces(&mut wr, &pieces, &activity).await {
                    match e.kind() {
                        std::io::ErrorKind::UnexpectedEof => {
                            tracing::warn!(error = %e, "closing the connection in the middle of an answer")
                        }
                        _ => tracing::debug!(error = %e, "answer not written"),
                    }
                    return;
                }
                activity.written(zero_copy::len(&pieces));
                (None, Some(served))
            }
            Outgoing::Later {
                api_key,
                version,
                correlation_id,
                response,
                served,
            } => {
                let body = {
                    let _busy = activity.busy();
                    response.await
                };
                count_errors(api_key, &body);
                let bytes = encode(api_key, version, correlation_id, &body);
                if let Some(b) = &bytes {
                    activity.queued(b.len());
                }
                (bytes, Some(served))
            }
        };
        if let Some(b) = bytes {
            if b.len() >= BATCH_BYTES || (batch.is_empty() && rx.is_empty()) {
                if !write_batch(&mut wr, &mut batch, &activity).await
                    || wr.write_all(&b).await.is_err()
                {
                    return;
                }
                activity.written(b.len());
            } else {
                batch.extend_from_slice(&b);
            }
        }
        drop(served);
        if rx.is_empty() || batch.len() >= BATCH_BYTES {
            if !write_batch(&mut wr, &mut batch, &activity).await {
                return;
            }
            if rx.is_empty() {
                batch = Vec::new();
                if wr.flush().await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}

/// Writes and empties `batch`; false if the socket failed.
async fn write_batch<W: Sink>(wr: &mut W, batch: &mut Vec<u8>, activity: &Activity) -> bool {
    if batch.is_empty() {
        return true;
    }
    if wr.write_all(batch).await.is_err() {
        return false;
    }
    activity.written(batch.len());
    batch.clear();
    true
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The writer's task ends with the connection's, however that ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
mod tests;
