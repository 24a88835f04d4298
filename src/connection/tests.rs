//! Tests of the connection: the answer writer on real TCP sockets (file ranges count as
//! unsent answers until written; a file cut under an answer closes the connection), and the
//! per-API error counts.

use super::*;
use crate::log::FileRange;
use crate::protocol::error_codes::tests::erring;
use tokio::io::AsyncReadExt;
use zero_copy::tests::{segment_file, tcp_pair};

/// A writer on a plaintext socket, and what the connection's reader would hold of it.
async fn writer() -> (
    tokio::net::TcpStream,
    mpsc::Sender<Box<Outgoing>>,
    Arc<Activity>,
    tokio::task::JoinHandle<()>,
) {
    let (client, server) = tcp_pair().await;
    let (_rd, wr) = server.into_split();
    let activity = Arc::new(Activity::new());
    let (tx, rx) = mpsc::channel::<Box<Outgoing>>(IN_FLIGHT);
    let task = tokio::spawn(write_answers(
        Tracked::new(wr, activity.clone()),
        rx,
        activity.clone(),
    ));
    (client, tx, activity, task)
}

fn fetch_served() -> Served {
    Served::new(ApiKey::Fetch, Instant::now(), 0)
}

#[tokio::test]
async fn file_ranges_count_as_unsent_answers_until_written() {
    let (mut client, tx, activity, _task) = writer().await;
    let (file, bytes) = segment_file(16 << 20);
    let pieces = vec![
        Piece::Bytes(Bytes::from_static(b"x")),
        Piece::Records(FileRange {
            file,
            offset: 0,
            len: bytes.len() as u64,
            pin: None,
        }),
    ];
    let len = zero_copy::len(&pieces);
    activity.queued(len);
    let small = Bytes::from_static(b"small answer");
    activity.queued(small.len());
    tx.send(Box::new(Outgoing::Ready(small.clone(), None)))
        .await
        .expect("queued");
    tx.send(Box::new(Outgoing::Pieces(pieces, fetch_served())))
        .await
        .expect("queued");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // The client reads nothing: what the socket does not hold is still unsent, so the
    // reader stops reading requests.
    assert!(
        activity.unsent() > QUEUED_ANSWER_BYTES,
        "unsent {}",
        activity.unsent()
    );
    let mut got = vec![0u8; small.len() + len];
    client.read_exact(&mut got).await.expect("read");
    assert!(
        got[..small.len()] == small[..],
        "the small answer goes first"
    );
    assert!(got[small.len() + 1..] == bytes[..], "the records");
    tokio::time::timeout(std::time::Duration::from_secs(5), activity.until_written(0))
        .await
        .expect("all written");
}

#[tokio::test]
async fn an_answer_whose_file_was_cut_closes_the_connection_before_anything_else_is_sent() {
    let (mut client, tx, _activity, task) = writer().await;
    let (file, bytes) = segment_file(1 << 20);
    let pieces = vec![
        Piece::Bytes(Bytes::from_static(b"head")),
        Piece::Records(FileRange {
            file: file.clone(),
            offset: 0,
            len: 1 << 20,
            pin: None,
        }),
        Piece::Bytes(Bytes::from_static(b"tail")),
    ];
    // The file shrinks after the fetch found the range.
    file.set_len(300_000).expect("cut");
    tx.send(Box::new(Outgoing::Pieces(pieces, fetch_served())))
        .await
        .expect("queued");
    let _ = tx
        .send(Box::new(Outgoing::Ready(
            Bytes::from_static(b"next answer"),
            None,
        )))
        .await;
    tokio::time::timeout(std::time::Duration::from_secs(5), task)
        .await
        .expect("the writer stops")
        .expect("join");
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.expect("read");
    let mut expected = b"head".to_vec();
    expected.extend_from_slice(&bytes[..300_000]);
    assert!(
        got == expected,
        "{} bytes: not the answer's bytes up to the cut, then the end",
        got.len()
    );
}

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
