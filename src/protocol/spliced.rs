//! A Fetch response whose records the connection writes from elsewhere (segment files,
//! sent from the page cache): the answer becomes a list of pieces, bytes encoded here and
//! the records in between, byte for byte what kafka-protocol encodes with the records in
//! place.
//!
//! Only the frame around the partitions is written here (the response and topic fields, as
//! kafka-protocol's generated code writes them); each partition is encoded by
//! kafka-protocol with no records, and its trailing null records field replaced by the
//! length of the records that follow. That keeps this encoder small: a partition with a
//! tagged field set, or a response or topic with tagged fields, is refused (`Err`), and the
//! caller encodes the whole answer with its records in memory instead.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;

/// A part of an answer: bytes, or records the writer takes from `F`.
#[derive(Debug)]
pub enum Piece<F> {
    Bytes(Bytes),
    Records(F),
}

/// The frame (length prefix, header, body) of a Fetch response at `version`. `records`
/// holds one entry per partition in the order of the response; where it holds `Some`,
/// that partition's `records` must be None and `len` of it is the records' size: the
/// answer then carries it as a `Piece::Records` in the records field's place.
pub fn encode_fetch<F>(
    version: i16,
    correlation_id: i32,
    body: &FetchResponse,
    records: Vec<Option<F>>,
    len: impl Fn(&F) -> u64,
) -> anyhow::Result<Vec<Piece<F>>> {
    anyhow::ensure!(
        body.unknown_tagged_fields.is_empty() && body.node_endpoints.is_empty(),
        "the response has tagged fields"
    );
    let mut out = Pieces {
        pieces: Vec::new(),
        buf: BytesMut::with_capacity(256),
        total: 0,
    };
    let buf = &mut out.buf;
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(buf, ApiKey::Fetch.response_header_version(version))?;
    let compact = version >= 12;
    buf.put_i32(body.throttle_time_ms);
    if version >= 7 {
        buf.put_i16(body.error_code);
        buf.put_i32(body.session_id);
    } else {
        anyhow::ensure!(body.session_id == 0, "session id before v7");
    }
    array_len(buf, compact, body.responses.len())?;
    let mut records = records.into_iter();
    for topic in &body.responses {
        anyhow::ensure!(
            topic.unknown_tagged_fields.is_empty(),
            "a topic has tagged fields"
        );
        let buf = &mut out.buf;
        if version <= 12 {
            let name = topic.topic.as_bytes();
            if compact {
                let n = u32::try_from(name.len() + 1)?;
                put_unsigned_varint(buf, n);
            } else {
                buf.put_i16(i16::try_from(name.len())?);
            }
            buf.put_slice(name);
        }
        if version >= 13 {
            buf.put_slice(topic.topic_id.as_bytes());
        }
        array_len(buf, compact, topic.partitions.len())?;
        for partition in &topic.partitions {
            match records.next().flatten() {
                None => partition.encode(&mut out.buf, version)?,
                Some(r) => {
                    let n = len(&r);
                    out.partition_with(partition, version, n)?;
                    out.push(Piece::Records(r), n);
                    if compact {
                        // The partition's tagged fields: none (checked above).
                        out.buf.put_u8(0);
                    }
                }
            }
        }
        if compact {
            out.buf.put_u8(0);
        }
    }
    if compact {
        out.buf.put_u8(0);
    }
    out.finish()
}

/// The pieces so far, and the bytes after the last of them.
struct Pieces<F> {
    pieces: Vec<Piece<F>>,
    buf: BytesMut,
    /// Bytes in `pieces`.
    total: u64,
}

impl<F> Pieces<F> {
    fn push(&mut self, piece: Piece<F>, len: u64) {
        let bytes = std::mem::take(&mut self.buf);
        self.total += bytes.len() as u64;
        if !bytes.is_empty() {
            self.pieces.push(Piece::Bytes(bytes.freeze()));
        }
        self.pieces.push(piece);
        self.total += len;
    }

    /// Encodes `p` (whose records are None) up to where its records go, and the length of
    /// the `n` bytes of records that are to follow.
    fn partition_with(&mut self, p: &PartitionData, version: i16, n: u64) -> anyhow::Result<()> {
        anyhow::ensure!(
            p.records.is_none(),
            "a partition has records in both places"
        );
        anyhow::ensure!(
            p.unknown_tagged_fields.is_empty()
                && p.diverging_epoch == Default::default()
                && p.current_leader == Default::default()
                && p.snapshot_id == Default::default(),
            "a partition has tagged fields"
        );
        let start = self.buf.len();
        p.encode(&mut self.buf, version)?;
        // What kafka-protocol wrote last: the null records field, then (v12+) the count of
        // tagged fields, 0.
        let tail: &[u8] = if version >= 12 {
            &[0, 0]
        } else {
            &[0xff, 0xff, 0xff, 0xff]
        };
        anyhow::ensure!(
            self.buf.len() >= start + tail.len() && self.buf.ends_with(tail),
            "unexpected encoding of a partition without records"
        );
        self.buf.truncate(self.buf.len() - tail.len());
        if version >= 12 {
            let n = u32::try_from(n + 1).map_err(|_| anyhow::anyhow!("records too large"))?;
            put_unsigned_varint(&mut self.buf, n);
        } else {
            let n = i32::try_from(n).map_err(|_| anyhow::anyhow!("records too large"))?;
            self.buf.put_i32(n);
        }
        Ok(())
    }

    /// The pieces, the frame's length written in front.
    fn finish(mut self) -> anyhow::Result<Vec<Piece<F>>> {
        let total = self.total + self.buf.len() as u64;
        let len = i32::try_from(total - 4).map_err(|_| anyhow::anyhow!("response too large"))?;
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf).freeze();
            self.pieces.push(Piece::Bytes(rest));
        }
        let Some(Piece::Bytes(first)) = self.pieces.first_mut() else {
            anyhow::bail!("the response starts with no header");
        };
        let mut head = BytesMut::from(&first[..]);
        head[..4].copy_from_slice(&len.to_be_bytes());
        *first = head.freeze();
        Ok(self.pieces)
    }
}

/// An array's length: unsigned varint of length + 1 (compact, v12+), or i32.
fn array_len(buf: &mut BytesMut, compact: bool, n: usize) -> anyhow::Result<()> {
    if compact {
        let n = u32::try_from(n + 1).map_err(|_| anyhow::anyhow!("array too long"))?;
        put_unsigned_varint(buf, n);
    } else {
        let n = i32::try_from(n).map_err(|_| anyhow::anyhow!("array too long"))?;
        buf.put_i32(n);
    }
    Ok(())
}

/// Kafka's unsigned varint: 7 bits a byte, low bits first.
fn put_unsigned_varint(buf: &mut BytesMut, mut n: u32) {
    while n >= 0x80 {
        buf.put_u8((n as u8) | 0x80);
        n >>= 7;
    }
    buf.put_u8(n as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode_response;
    use crate::protocol::versions::SUPPORTED;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch,
    };
    use kafka_protocol::messages::{BrokerId, ProducerId, ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn fetch_versions() -> std::ops::RangeInclusive<i16> {
        let (_, min, max) = SUPPORTED
            .iter()
            .find(|(k, _, _)| *k == ApiKey::Fetch)
            .copied()
            .expect("Fetch is served");
        min..=max
    }

    fn records(n: usize, seed: u8) -> Bytes {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    /// A response as the fetch handler builds it: several topics and partitions, one with an
    /// error, one with no records, one with aborted transactions, large and small records.
    fn response(version: i16) -> FetchResponse {
        let partition = |index: i32, records: Option<Bytes>| {
            PartitionData::default()
                .with_partition_index(index)
                .with_high_watermark(1000 + index as i64)
                .with_last_stable_offset(900)
                .with_log_start_offset(if version >= 5 { 7 } else { 0 })
                .with_preferred_read_replica(BrokerId(-1))
                .with_records(records)
        };
        let topic = |name: &str, id: u128, parts: Vec<PartitionData>| {
            let t = FetchableTopicResponse::default().with_partitions(parts);
            if version >= 13 {
                t.with_topic_id(uuid::Uuid::from_u128(id))
            } else {
                t.with_topic(TopicName(StrBytes::from_string(name.to_string())))
            }
        };
        let aborted = Some(vec![
            AbortedTransaction::default()
                .with_producer_id(ProducerId(5))
                .with_first_offset(12),
            AbortedTransaction::default()
                .with_producer_id(ProducerId(6))
                .with_first_offset(40),
        ]);
        let r = FetchResponse::default().with_responses(vec![
            topic(
                "orders",
                1,
                vec![
                    partition(0, Some(records(70_000, 1))),
                    partition(1, Some(Bytes::new())),
                    partition(2, Some(records(200, 2))).with_aborted_transactions(aborted),
                    partition(3, Some(Bytes::new())).with_error_code(1),
                ],
            ),
            topic("empty", 2, vec![]),
            topic(
                "clicks",
                3,
                vec![
                    partition(0, Some(records(1, 3))),
                    partition(5, Some(records(300, 4))),
                ],
            ),
        ]);
        if version >= 7 {
            r.with_session_id(0)
                .with_error_code(0)
                .with_throttle_time_ms(3)
        } else {
            r
        }
    }

    /// `body` with every partition's records taken out, as the handler leaves them.
    fn split(
        body: &FetchResponse,
        keep: impl Fn(usize) -> bool,
    ) -> (FetchResponse, Vec<Option<Bytes>>) {
        let mut out = body.clone();
        let mut taken = Vec::new();
        for (i, p) in out
            .responses
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
            .enumerate()
        {
            if keep(i) {
                taken.push(None);
            } else {
                taken.push(p.records.take());
            }
        }
        (out, taken)
    }

    fn joined(pieces: Vec<Piece<Bytes>>) -> Vec<u8> {
        let mut out = Vec::new();
        for p in pieces {
            match p {
                Piece::Bytes(b) | Piece::Records(b) => out.extend_from_slice(&b),
            }
        }
        out
    }

    #[test]
    fn spliced_answers_are_byte_for_byte_what_kafka_protocol_encodes() {
        for version in fetch_versions() {
            let body = response(version);
            let whole = encode_response(
                ApiKey::Fetch,
                version,
                42,
                &ResponseKind::Fetch(body.clone()),
            )
            .expect("encodes");
            // Every partition's records spliced, then only some of them (the others in
            // memory as on an archive read).
            for keep in [|_| false, |i: usize| i % 2 == 1] as [fn(usize) -> bool; 2] {
                let (left, taken) = split(&body, keep);
                let pieces = encode_fetch(version, 42, &left, taken, |b: &Bytes| b.len() as u64)
                    .unwrap_or_else(|e| panic!("v{version}: {e:#}"));
                assert!(matches!(pieces.first(), Some(Piece::Bytes(_))));
                assert_eq!(joined(pieces), whole.to_vec(), "Fetch v{version}");
            }
        }
    }

    #[test]
    fn an_answer_with_nothing_to_splice_is_the_plain_encoding() {
        for version in fetch_versions() {
            let body = response(version);
            let whole = encode_response(
                ApiKey::Fetch,
                version,
                9,
                &ResponseKind::Fetch(body.clone()),
            )
            .expect("encodes");
            let n = body.responses.iter().map(|t| t.partitions.len()).sum();
            let pieces = encode_fetch(version, 9, &body, vec![None::<Bytes>; n], |b| {
                b.len() as u64
            })
            .expect("encodes");
            assert_eq!(pieces.len(), 1);
            assert_eq!(joined(pieces), whole.to_vec(), "Fetch v{version}");
        }
    }

    #[test]
    fn tagged_fields_it_does_not_place_are_refused() {
        let version = 12;
        let (mut left, taken) = split(&response(version), |_| false);
        left.responses[0].partitions[0].current_leader =
            LeaderIdAndEpoch::default().with_leader_id(BrokerId(1));
        assert!(encode_fetch(version, 1, &left, taken.clone(), |b| b.len() as u64).is_err());
        left.responses[0].partitions[0].current_leader = Default::default();
        left.responses[0].partitions[0].diverging_epoch = EpochEndOffset::default().with_epoch(3);
        assert!(encode_fetch(version, 1, &left, taken, |b| b.len() as u64).is_err());
    }
}
