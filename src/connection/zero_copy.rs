//! Answers whose records are still in segment files (see `protocol::spliced`): on a
//! plaintext TCP socket the records go from the page cache to the socket with sendfile(2),
//! never through the broker's memory, as Kafka's `FileRecords.writeTo` does; any other
//! writer (TLS, which encrypts the bytes) gets them read into memory.
//!
//! Files: reads the segment files it is handed, open already; opens none.

use super::io::{Activity, Tracked};
use crate::log::FileRange;
use crate::protocol::spliced;
use std::io;
use std::os::fd::AsRawFd;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::io::{Interest, WriteHalf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

/// A part of an answer: bytes, or a range of a segment file.
pub type Piece = spliced::Piece<FileRange>;

/// At most this much is asked of one sendfile call (Linux sends at most 0x7ffff000 bytes
/// per call anyway).
const SENDFILE_MAX: u64 = 1 << 30;

/// The write half of a connection.
pub trait Sink: AsyncWrite + Unpin {
    /// The plaintext TCP socket this writes to, if it is one: file ranges are then sent
    /// from the page cache.
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
}

impl Sink for OwnedWriteHalf {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

/// TLS (and anything else split by tokio): bytes only.
impl<T: AsyncWrite> Sink for WriteHalf<T> {}

impl Sink for tokio::io::DuplexStream {}

impl<T: Sink> Sink for Tracked<T> {
    fn tcp(&self) -> Option<&TcpStream> {
        self.get_ref().tcp()
    }
}

/// The bytes of an answer made of `pieces`.
pub fn len(pieces: &[Piece]) -> usize {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Bytes(b) => b.len(),
            Piece::Records(r) => r.len as usize,
        })
        .sum()
}

/// Writes one answer. An error ends the connection: among others, a segment file that no
/// longer holds a range (cut since the fetch found it, which a failed append can do to the
/// bytes past the high watermark) — the answer's length is already announced, so the
/// connection is closed rather than sent other bytes, as Kafka does.
pub async fn write_pieces<W: Sink>(
    wr: &mut W,
    pieces: &[Piece],
    activity: &Activity,
) -> io::Result<()> {
    if let Some(sock) = wr.tcp() {
        return send_pieces(sock, pieces, activity).await;
    }
    for piece in pieces {
        match piece {
            Piece::Bytes(b) => wr.write_all(b).await?,
            Piece::Records(r) => wr.write_all(&r.read()?).await?,
        }
    }
    Ok(())
}

/// Writes the pieces straight to the socket: bytes with send(2), file ranges with
/// sendfile(2), each call made when the socket is writable and repeated until the piece is
/// out (the socket is non-blocking: a full send buffer is `WouldBlock`, and tokio waits for
/// room).
async fn send_pieces(sock: &TcpStream, pieces: &[Piece], activity: &Activity) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    for (i, piece) in pieces.iter().enumerate() {
        match piece {
            Piece::Bytes(b) => {
                // More of the answer follows: the kernel may hold a short segment back
                // for it instead of sending the header alone.
                let more = if i + 1 < pieces.len() {
                    libc::MSG_MORE
                } else {
                    0
                };
                let flags = libc::MSG_NOSIGNAL | more;
                let mut sent = 0;
                while sent < b.len() {
                    let rest = &b[sent..];
                    let n = when_writable(sock, || {
                        // SAFETY: `rest` is valid for `rest.len()` bytes for the call.
                        let n = unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), flags) };
                        result(n)
                    })
                    .await?;
                    if n == 0 {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                    sent += n;
                    activity.touch();
                }
            }
            Piece::Records(r) => {
                let file = r.file.as_raw_fd();
                let mut sent = 0u64;
                while sent < r.len {
                    let at = r.offset + sent;
                    let count = (r.len - sent).min(SENDFILE_MAX) as usize;
                    let n = when_writable(sock, || {
                        let mut offset = libc::off_t::try_from(at).map_err(|_| {
                            io::Error::new(io::ErrorKind::InvalidInput, "file offset too large")
                        })?;
                        // SAFETY: both descriptors are open (the socket borrowed, the file
                        // held by its Arc) and `offset` is a valid off_t for the call.
                        let n = unsafe { libc::sendfile(fd, file, &mut offset, count) };
                        result(n)
                    })
                    .await?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "segment file ends before the {} bytes announced at position {}",
                                r.len, r.offset
                            ),
                        ));
                    }
                    sent += n as u64;
                    activity.touch();
                }
            }
        }
    }
    Ok(())
}

/// Runs `op` once the socket is writable, again after `WouldBlock` (tokio then waits for
/// the socket's next writable readiness) or `Interrupted`.
async fn when_writable(
    sock: &TcpStream,
    mut op: impl FnMut() -> io::Result<usize>,
) -> io::Result<usize> {
    loop {
        match sock.async_io(Interest::WRITABLE, &mut op).await {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn result(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::Bytes;
    use std::io::Write;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A connected pair of sockets: (client, server).
    pub(crate) async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.expect("connect"), server.expect("accept").0)
    }

    /// A file holding `len` bytes of a pattern, and those bytes.
    pub(crate) fn segment_file(len: usize) -> (Arc<std::fs::File>, Vec<u8>) {
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
            .collect();
        let mut file = tempfile::tempfile().expect("tmp");
        file.write_all(&bytes).expect("write");
        (Arc::new(file), bytes)
    }

    fn range(file: &Arc<std::fs::File>, offset: u64, len: u64) -> Piece {
        Piece::Records(FileRange {
            file: file.clone(),
            offset,
            len,
            pin: None,
        })
    }

    #[tokio::test]
    async fn pieces_go_out_whole_however_slowly_the_client_reads() {
        let (mut client, server) = tcp_pair().await;
        let (file, bytes) = segment_file(6 << 20);
        let pieces = vec![
            Piece::Bytes(Bytes::from_static(b"head")),
            range(&file, 1000, 5 << 20),
            Piece::Bytes(Bytes::from_static(b"-")),
            range(&file, 7, 3),
            Piece::Bytes(Bytes::from_static(b"end")),
        ];
        let mut expected = b"head".to_vec();
        expected.extend_from_slice(&bytes[1000..1000 + (5 << 20)]);
        expected.extend_from_slice(b"-");
        expected.extend_from_slice(&bytes[7..10]);
        expected.extend_from_slice(b"end");
        assert_eq!(len(&pieces), expected.len());
        let (_rd, mut wr) = server.into_split();
        assert!(wr.tcp().is_some(), "a plaintext socket takes file ranges");
        let writer = tokio::spawn(async move {
            let activity = Activity::new();
            write_pieces(&mut wr, &pieces, &activity).await
        });
        // The client reads nothing for a while, then little at a time: the socket's buffer
        // fills, so the sends are partial and wait for room.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 7000];
        while got.len() < expected.len() {
            let n = client.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed after {} bytes", got.len());
            got.extend_from_slice(&chunk[..n]);
        }
        writer.await.expect("join").expect("written");
        assert!(got == expected, "the bytes differ");
    }

    #[tokio::test]
    async fn a_file_cut_under_its_range_is_an_error_after_the_bytes_it_still_holds() {
        let (file, bytes) = segment_file(1 << 20);
        let pieces = vec![
            Piece::Bytes(Bytes::from_static(b"head")),
            range(&file, 0, 1 << 20),
            Piece::Bytes(Bytes::from_static(b"tail")),
        ];
        file.set_len(300_000).expect("cut");
        // Over TCP (sendfile) and over any other writer (read into memory).
        let (mut client, server) = tcp_pair().await;
        let (_rd, mut wr) = server.into_split();
        let activity = Activity::new();
        let sent = write_pieces(&mut wr, &pieces, &activity).await;
        assert_eq!(
            sent.expect_err("a short file").kind(),
            io::ErrorKind::UnexpectedEof
        );
        drop(wr);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        let mut prefix = b"head".to_vec();
        prefix.extend_from_slice(&bytes[..300_000]);
        assert!(
            got == prefix,
            "{} bytes, not what the file still held",
            got.len()
        );

        let (mut client, mut server) = tokio::io::duplex(1 << 21);
        let sent = write_pieces(&mut server, &pieces, &activity).await;
        assert_eq!(
            sent.expect_err("a short file").kind(),
            io::ErrorKind::UnexpectedEof
        );
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"head", "nothing of a range that cannot be read whole");
    }
}
