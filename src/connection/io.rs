//! The socket side of a connection: frames read without a buffer kept per idle
//! connection, and the activity both halves report, from which idleness
//! (`connections.max.idle.ms`) and the backlog of unsent answers are judged.
//!
//! No files.

use super::memory::{Lease, RequestMemory};
use crate::protocol;
use bytes::{Buf, Bytes, BytesMut};
use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Bytes asked of the socket at a time for small frames. The buffer lives on the stack of
/// one poll only; a frame larger than what arrived is read straight into its own buffer.
const READ_CHUNK: usize = 8 * 1024;

/// The origin of the activity clock.
static START: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    START.elapsed().as_millis() as u64
}

/// What the reader and the writer of one connection tell each other.
#[derive(Debug, Default)]
pub struct Activity {
    /// When bytes last moved either way, or the broker last finished work for the
    /// connection (milliseconds on the `START` clock).
    last_ms: AtomicU64,
    /// Work the broker is doing for the connection (an answer waiting for the disk, a frame
    /// waiting for request memory): it is not idle meanwhile.
    busy: AtomicUsize,
    /// Bytes of answers queued and not yet written to the socket.
    unsent: AtomicUsize,
    /// Signalled whenever answers are written.
    written: Notify,
}

impl Activity {
    pub fn new() -> Self {
        let a = Activity::default();
        a.touch();
        a
    }

    pub fn touch(&self) {
        self.last_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Marks the connection busy until the guard is dropped.
    pub fn busy(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self)
    }

    /// True when nothing moved for `idle` and the broker is doing nothing for it.
    pub fn is_idle(&self, idle: Duration) -> bool {
        self.busy.load(Ordering::Acquire) == 0
            && now_ms().saturating_sub(self.last_ms.load(Ordering::Relaxed))
                >= idle.as_millis() as u64
    }

    /// When to look again whether the connection is idle: `idle` after it last did
    /// something, or, if that is past (it is busy), `idle` from now.
    pub fn idle_deadline(&self, idle: Duration) -> tokio::time::Instant {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        let at = *START + last + idle;
        let now = Instant::now();
        tokio::time::Instant::from_std(if at > now { at } else { now + idle })
    }

    /// An answer of `bytes` is queued for the writer.
    pub fn queued(&self, bytes: usize) {
        self.unsent.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Answers of `bytes` were written to the socket.
    pub fn written(&self, bytes: usize) {
        self.unsent.fetch_sub(bytes, Ordering::AcqRel);
        self.written.notify_one();
    }

    pub fn unsent(&self) -> usize {
        self.unsent.load(Ordering::Acquire)
    }

    /// Waits until at most `limit` bytes of answers wait to be written: a client that does
    /// not read its answers is not read from either.
    pub async fn until_written(&self, limit: usize) {
        loop {
            let written = self.written.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            if self.unsent() <= limit {
                return;
            }
            written.await;
        }
    }
}

/// See `Activity::busy`.
pub struct Busy<'a>(&'a Activity);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A socket half that reports every byte it moves to the connection's `Activity`.
pub struct Tracked<T> {
    inner: T,
    activity: std::sync::Arc<Activity>,
}

impl<T> Tracked<T> {
    pub fn new(inner: T, activity: std::sync::Arc<Activity>) -> Self {
        Tracked { inner, activity }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.activity.touch();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        if n > 0 {
            self.activity.touch();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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

/// Reads 4-byte length-prefixed frames. Between frames it holds no buffer: an idle
/// connection costs its task and its socket, nothing more.
pub struct FrameReader<R> {
    rd: R,
    /// Bytes read past the end of the last frame.
    pending: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(rd: R) -> Self {
        FrameReader {
            rd,
            pending: BytesMut::new(),
        }
    }

    /// Appends what the socket has (up to `READ_CHUNK` bytes) to `pending`; 0 at the end.
    async fn fill(&mut self) -> io::Result<usize> {
        let (rd, pending) = (&mut self.rd, &mut self.pending);
        poll_fn(|cx| {
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut chunk);
            ready!(Pin::new(&mut *rd).poll_read(cx, &mut buf))?;
            pending.extend_from_slice(buf.filled());
            Poll::Ready(Ok(buf.filled().len()))
        })
        .await
    }

    /// The next frame and the request memory it holds; `Ok(None)` on a clean close between
    /// frames. The length is checked against `max`, and the frame's size taken from
    /// `memory` (waiting, not reading, while it cannot be spared), before anything is
    /// allocated for it.
    pub async fn read_frame(
        &mut self,
        max: usize,
        memory: &RequestMemory,
        activity: &Activity,
    ) -> Result<Option<(Bytes, Lease)>, ReadError> {
        while self.pending.len() < 4 {
            if self.fill().await? == 0 {
                return if self.pending.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::Torn {
                        expected: 4,
                        got: self.pending.len(),
                    })
                };
            }
        }
        let prefix = [
            self.pending[0],
            self.pending[1],
            self.pending[2],
            self.pending[3],
        ];
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
        let lease = match memory.try_take(len) {
            Some(lease) => lease,
            None => {
                let _busy = activity.busy();
                memory.take(len).await
            }
        };
        self.pending.advance(4);
        if self.pending.len() >= len {
            let frame = self.pending.split_to(len).freeze();
            if self.pending.is_empty() {
                // Let the frame own the buffer alone; nothing is kept while idle.
                self.pending = BytesMut::new();
            }
            return Ok(Some((frame, lease)));
        }
        let mut buf = Vec::with_capacity(len);
        buf.extend_from_slice(&self.pending);
        self.pending = BytesMut::new();
        while buf.len() < len {
            let want = (len - buf.len()) as u64;
            if (&mut self.rd).take(want).read_buf(&mut buf).await? == 0 {
                return Err(ReadError::Torn {
                    expected: len,
                    got: buf.len(),
                });
            }
        }
        Ok(Some((Bytes::from(buf), lease)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            out.extend_from_slice(&(p.len() as u32).to_be_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    #[tokio::test]
    async fn frames_come_out_whole_however_the_bytes_arrive() {
        let big = vec![7u8; 100_000];
        let bytes = framed(&[b"one", &big, b"three"]);
        let (mut client, server) = tokio::io::duplex(1000);
        let writer = tokio::spawn(async move {
            for piece in bytes.chunks(333) {
                client.write_all(piece).await.expect("write");
            }
        });
        let memory = RequestMemory::new(Some(1 << 20), 1 << 20);
        let activity = Activity::new();
        let mut rd = FrameReader::new(server);
        let mut got = Vec::new();
        while let Some((frame, lease)) = rd
            .read_frame(1 << 20, &memory, &activity)
            .await
            .expect("frame")
        {
            assert_eq!(lease.bytes(), frame.len());
            got.push(frame);
        }
        writer.await.expect("writer");
        assert_eq!(got.len(), 3);
        assert_eq!(&got[0][..], b"one");
        assert_eq!(got[1], big);
        assert_eq!(&got[2][..], b"three");
    }

    #[tokio::test]
    async fn a_frame_is_not_read_before_its_memory_is_free() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        client
            .write_all(&framed(&[&[1u8; 600], &[2u8; 600]]))
            .await
            .expect("write");
        let memory = RequestMemory::new(Some(1000), 1000);
        let activity = Activity::new();
        let mut rd = FrameReader::new(server);
        let (first, lease) = rd
            .read_frame(1000, &memory, &activity)
            .await
            .expect("read")
            .expect("frame");
        assert_eq!(first.len(), 600);
        let second = tokio::time::timeout(
            Duration::from_millis(50),
            rd.read_frame(1000, &memory, &activity),
        )
        .await;
        assert!(second.is_err(), "read while the memory was held");
        drop(lease);
        let (second, _) = rd
            .read_frame(1000, &memory, &activity)
            .await
            .expect("read")
            .expect("frame");
        assert_eq!(&second[..], &[2u8; 600][..]);
    }

    #[tokio::test]
    async fn oversized_negative_and_torn_frames_are_errors() {
        let memory = RequestMemory::new(None, 0);
        let activity = Activity::new();
        let read = |bytes: Vec<u8>| {
            let memory = memory.clone();
            async move {
                let (mut client, server) = tokio::io::duplex(1 << 16);
                client.write_all(&bytes).await.expect("write");
                drop(client);
                FrameReader::new(server)
                    .read_frame(100, &memory, &Activity::new())
                    .await
            }
        };
        assert!(matches!(
            read(1000u32.to_be_bytes().to_vec()).await,
            Err(ReadError::TooLarge {
                len: 1000,
                max: 100
            })
        ));
        assert!(matches!(
            read((-5i32).to_be_bytes().to_vec()).await,
            Err(ReadError::Negative(-5))
        ));
        assert!(matches!(
            read(vec![0x16, 0x03, 0x01, 0x02]).await,
            Err(ReadError::TlsOnPlaintext)
        ));
        assert!(matches!(
            read(vec![0, 0, 0, 10, 1, 2]).await,
            Err(ReadError::Torn {
                expected: 10,
                got: 2
            })
        ));
        assert!(matches!(
            read(vec![0, 0]).await,
            Err(ReadError::Torn {
                expected: 4,
                got: 2
            })
        ));
        assert!(matches!(read(vec![]).await, Ok(None)));
        assert!(activity.is_idle(Duration::ZERO));
    }

    #[test]
    fn busy_work_is_not_idleness() {
        let activity = Activity::new();
        assert!(activity.is_idle(Duration::ZERO));
        let busy = activity.busy();
        assert!(!activity.is_idle(Duration::ZERO));
        drop(busy);
        assert!(activity.is_idle(Duration::ZERO));
        assert!(!activity.is_idle(Duration::from_secs(3600)));
    }
}
