//! Idempotent producers: per partition, each producer's epoch and its last five batches,
//! so a retried batch is answered with its original offsets instead of written twice.
//! Rebuilt at start-up from the newest `<offset>.snapshot` in the partition directory (Kafka's
//! snapshot format, written at each roll, the newest three kept, deleted with the segments
//! below them) and the batches after it.
//!
//! Snapshots are written without fsync and checked when read: after a crash, one that is
//! damaged, or past the recovery point (its batches may have been cut by recovery), is
//! skipped, and the state is rebuilt from an older one or from the whole log.

use crate::log::record_batch::{self, RecordBatch};
pub use crate::log::txn_index::AbortedTxn;
use kafka_protocol::error::ResponseError;
use std::collections::{HashMap, VecDeque};
use std::path::Path;

/// Kafka keeps this many batches per producer (max.in.flight.requests.per.connection ≤ 5).
pub const BATCHES_REMEMBERED: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub timestamp: i64,
}

#[derive(Debug)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Write it.
    Append,
    /// Already written: answer with these offsets.
    Duplicate(BatchMeta),
}

#[derive(Default, Debug)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    /// First offset of each producer's open transaction in this partition.
    ongoing: HashMap<i64, i64>,
    /// Aborted transactions, in marker order.
    pub aborted: Vec<AbortedTxn>,
}

fn in_sequence(last_seq: i32, next_first: i32) -> bool {
    next_first as i64 == last_seq as i64 + 1 || (next_first == 0 && last_seq == i32::MAX)
}

impl ProducerStates {
    /// Records a data batch just written to the log: its producer's sequences, and the
    /// start of its transaction when it is transactional.
    pub fn record_batch(&mut self, b: &record_batch::BatchHeader<'_>) {
        let pid = b.producer_id();
        if pid < 0 {
            return;
        }
        if b.is_transactional() {
            self.begin(pid, b.base_offset());
        }
        self.update(
            pid,
            b.producer_epoch(),
            BatchMeta {
                first_seq: b.base_sequence(),
                last_seq: b.last_sequence(),
                first_offset: b.base_offset(),
                last_offset: b.last_offset(),
                timestamp: b.max_timestamp(),
            },
        );
    }

    /// Replays one batch of the log at start-up: data batches as `record_batch`, markers
    /// end their producer's transaction.
    pub fn replay(&mut self, b: &RecordBatch<'_>) {
        if !b.is_control() {
            return self.record_batch(b);
        }
        if let Some(commit) = record_batch::marker_type(b) {
            self.end(b.producer_id(), b.producer_epoch(), b.base_offset(), commit);
        }
    }

    /// Kafka's rules (ProducerStateManager): an older epoch is fenced; a new epoch starts at
    /// sequence 0; a batch seen before is a duplicate; anything else must follow the last
    /// sequence exactly.
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Result<SequenceCheck, ResponseError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            // A producer this partition does not know (new, or expired): Kafka (since
            // KIP-360) accepts whatever sequence it starts from.
            return Ok(SequenceCheck::Append);
        };
        if epoch < entry.epoch {
            return Err(ResponseError::InvalidProducerEpoch);
        }
        if epoch > entry.epoch {
            return if first_seq == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(ResponseError::OutOfOrderSequenceNumber)
            };
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(SequenceCheck::Duplicate(*dup));
        }
        match entry.batches.back() {
            Some(last) if !in_sequence(last.last_seq, first_seq) => {
                Err(ResponseError::OutOfOrderSequenceNumber)
            }
            None if first_seq != 0 => Err(ResponseError::OutOfOrderSequenceNumber),
            _ => Ok(SequenceCheck::Append),
        }
    }

    /// Records a written batch (also used when replaying the log at start-up).
    pub fn update(&mut self, producer_id: i64, epoch: i16, meta: BatchMeta) {
        let entry = self.producers.entry(producer_id).or_insert(ProducerEntry {
            epoch,
            batches: VecDeque::new(),
        });
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(meta);
        while entry.batches.len() > BATCHES_REMEMBERED {
            entry.batches.pop_front();
        }
    }

    /// A transactional batch at `offset`: opens the producer's transaction if none is open.
    pub fn begin(&mut self, producer_id: i64, offset: i64) {
        self.ongoing.entry(producer_id).or_insert(offset);
    }

    /// A marker at `offset` closes the producer's transaction; an abort is remembered so
    /// read_committed consumers can drop its records. Markers also carry the epoch forward.
    pub fn end(
        &mut self,
        producer_id: i64,
        epoch: i16,
        offset: i64,
        commit: bool,
    ) -> Option<AbortedTxn> {
        let entry = self.producers.entry(producer_id).or_insert(ProducerEntry {
            epoch,
            batches: VecDeque::new(),
        });
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        let aborted = self.abort_to_record(producer_id, offset, commit);
        self.ongoing.remove(&producer_id)?;
        if let Some(a) = aborted {
            self.aborted.push(a);
        }
        aborted
    }

    /// The aborted transaction `end` would record for a marker at `offset`, without
    /// recording it: the `.txnindex` entry is written before the marker (see
    /// `Log::append_recording_abort`), and the state moves only once both are.
    pub fn abort_to_record(
        &self,
        producer_id: i64,
        offset: i64,
        commit: bool,
    ) -> Option<AbortedTxn> {
        let first = *self.ongoing.get(&producer_id)?;
        if commit {
            return None;
        }
        let others_unstable = self
            .ongoing
            .iter()
            .filter(|(pid, _)| **pid != producer_id)
            .map(|(_, first)| *first)
            .min();
        Some(AbortedTxn {
            producer_id,
            first_offset: first,
            last_offset: offset,
            last_stable_offset: others_unstable.unwrap_or(offset + 1),
        })
    }

    /// Per producer: the last offset of its last data batch and its epoch. The cleaner keeps
    /// that batch (emptied if need be) so the producer's sequence survives compaction.
    pub fn last_records(&self) -> HashMap<i64, crate::log::cleaner::LastRecord> {
        self.producers
            .iter()
            .map(|(pid, e)| {
                (
                    *pid,
                    crate::log::cleaner::LastRecord {
                        last_data_offset: e.batches.back().map(|b| b.last_offset),
                        epoch: e.epoch,
                    },
                )
            })
            .collect()
    }

    /// The first offset of the oldest open transaction: the last stable offset.
    pub fn first_unstable(&self) -> Option<i64> {
        self.ongoing.values().min().copied()
    }

    /// Epoch a producer last wrote with here, and the open transaction's first offset.
    pub fn describe(&self) -> Vec<(i64, i16, i32, i64, Option<i64>)> {
        self.producers
            .iter()
            .map(|(pid, e)| {
                let last = e.batches.back();
                (
                    *pid,
                    e.epoch,
                    last.map(|b| b.last_seq).unwrap_or(-1),
                    last.map(|b| b.timestamp).unwrap_or(-1),
                    self.ongoing.get(pid).copied(),
                )
            })
            .collect()
    }

    /// Kafka's `.snapshot` layout (version 1): version i16, CRC-32C of the rest, then per
    /// producer: id, epoch, last sequence, last offset, offset delta of its last batch,
    /// timestamp, coordinator epoch, first offset of its open transaction (-1 if none).
    pub fn to_snapshot(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(4 + self.producers.len() * 50);
        body.extend_from_slice(&(self.producers.len() as i32).to_be_bytes());
        let mut pids: Vec<_> = self.producers.keys().copied().collect();
        pids.sort_unstable();
        for pid in pids {
            let e = &self.producers[&pid];
            let last = e.batches.back();
            body.extend_from_slice(&pid.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.extend_from_slice(&last.map_or(-1, |b| b.last_seq).to_be_bytes());
            body.extend_from_slice(&last.map_or(-1, |b| b.last_offset).to_be_bytes());
            let delta = last.map_or(0, |b| (b.last_offset - b.first_offset) as i32);
            body.extend_from_slice(&delta.to_be_bytes());
            body.extend_from_slice(&last.map_or(-1, |b| b.timestamp).to_be_bytes());
            body.extend_from_slice(&0i32.to_be_bytes());
            let open = self.ongoing.get(&pid).copied().unwrap_or(-1);
            body.extend_from_slice(&open.to_be_bytes());
        }
        let mut out = Vec::with_capacity(6 + body.len());
        out.extend_from_slice(&1i16.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Reads a snapshot written by `to_snapshot` (or Kafka); None if it is not whole.
    pub fn from_snapshot(bytes: &[u8]) -> Option<Self> {
        const ENTRY: usize = 8 + 2 + 4 + 8 + 4 + 8 + 4 + 8;
        let version = i16::from_be_bytes(bytes.get(0..2)?.try_into().ok()?);
        let crc = u32::from_be_bytes(bytes.get(2..6)?.try_into().ok()?);
        let body = bytes.get(6..)?;
        if version != 1 || crc32c::crc32c(body) != crc {
            return None;
        }
        let count = i32::from_be_bytes(body.get(0..4)?.try_into().ok()?);
        let entries = body.get(4..)?;
        if count < 0 || entries.len() != count as usize * ENTRY {
            return None;
        }
        let mut states = Self::default();
        for e in entries.chunks_exact(ENTRY) {
            let i64_at = |i: usize| i64::from_be_bytes(e[i..i + 8].try_into().unwrap_or([0; 8]));
            let i32_at = |i: usize| i32::from_be_bytes(e[i..i + 4].try_into().unwrap_or([0; 4]));
            let pid = i64_at(0);
            let epoch = i16::from_be_bytes([e[8], e[9]]);
            let (last_seq, last_offset, delta, ts) =
                (i32_at(10), i64_at(14), i32_at(22), i64_at(26));
            let open = i64_at(38);
            let mut batches = VecDeque::new();
            if last_offset >= 0 {
                batches.push_back(BatchMeta {
                    first_seq: last_seq.wrapping_sub(delta),
                    last_seq,
                    first_offset: last_offset - delta as i64,
                    last_offset,
                    timestamp: ts,
                });
            }
            states
                .producers
                .insert(pid, ProducerEntry { epoch, batches });
            if open >= 0 {
                states.ongoing.insert(pid, open);
            }
        }
        Some(states)
    }

    /// Forgets producers idle since before `cutoff` (ms) with no open transaction, as Kafka
    /// does after `producer.id.expiration.ms`.
    pub fn expire(&mut self, cutoff: i64) -> usize {
        let before = self.producers.len();
        let ongoing = &self.ongoing;
        self.producers.retain(|pid, e| {
            ongoing.contains_key(pid) || e.batches.back().is_none_or(|b| b.timestamp >= cutoff)
        });
        before - self.producers.len()
    }

    /// Aborted transactions overlapping [from, to).
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions wholly below the log start.
    pub fn trim_aborted(&mut self, log_start: i64) {
        self.aborted.retain(|a| a.last_offset >= log_start);
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

// ------------------------------------------------------------------ Kafka's .snapshot files

const SNAPSHOTS_KEPT: usize = 3;

/// A snapshot being written, renamed to `<base>.snapshot` once whole.
const SNAPSHOT_TEMPORARY: &str = ".snapshot.tmp";

/// Writes `<base>.snapshot`, the producer state as of `base`, and keeps the newest few.
/// Written under a temporary name and renamed, so a kill mid-write leaves no torn snapshot
/// behind, only a temporary that the next start-up removes. Best effort: a missing
/// snapshot only means a longer replay at start-up.
pub fn write_snapshot(dir: &Path, base: i64, producers: &ProducerStates) {
    let path = dir.join(crate::log::segment::file_name(base, ".snapshot"));
    let tmp = dir.join(crate::log::segment::file_name(base, SNAPSHOT_TEMPORARY));
    let written = crate::checkpoint::write_temporary(&tmp, &producers.to_snapshot(), false)
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(path = %path.display(), error = %e, "writing a producer snapshot failed");
        return;
    }
    let mut all = snapshot_offsets(dir);
    all.sort_unstable();
    let excess = all.len().saturating_sub(SNAPSHOTS_KEPT);
    for old in &all[..excess] {
        let _ = std::fs::remove_file(dir.join(crate::log::segment::file_name(*old, ".snapshot")));
    }
}

pub fn snapshot_offsets(dir: &Path) -> Vec<i64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".snapshot")?.parse().ok()
        })
        .collect()
}

/// The newest whole snapshot at or below `limit` (offsets past the recovery point may be
/// cut by recovery, so a snapshot there could describe batches that no longer exist).
/// Called when the partition opens: temporaries of writes a kill cut short go first.
pub fn latest_snapshot(dir: &Path, limit: i64) -> Option<(i64, ProducerStates)> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_name()
                .to_string_lossy()
                .ends_with(SNAPSHOT_TEMPORARY)
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let mut offsets = snapshot_offsets(dir);
    offsets.sort_unstable_by(|a, b| b.cmp(a));
    offsets.into_iter().filter(|o| *o <= limit).find_map(|o| {
        let bytes = std::fs::read(dir.join(crate::log::segment::file_name(o, ".snapshot"))).ok()?;
        ProducerStates::from_snapshot(&bytes).map(|s| (o, s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(first_seq: i32, last_seq: i32, first_offset: i64) -> BatchMeta {
        BatchMeta {
            first_seq,
            last_seq,
            first_offset,
            last_offset: first_offset + (last_seq - first_seq) as i64,
            timestamp: 0,
        }
    }

    #[test]
    fn a_retried_batch_is_a_duplicate_with_its_original_offsets() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(7, 0, 0, 9), Ok(SequenceCheck::Append));
        s.update(7, 0, meta(0, 9, 100));
        assert_eq!(s.check(7, 0, 10, 19), Ok(SequenceCheck::Append));
        s.update(7, 0, meta(10, 19, 110));
        assert_eq!(
            s.check(7, 0, 0, 9),
            Ok(SequenceCheck::Duplicate(meta(0, 9, 100)))
        );
    }

    #[test]
    fn a_gap_is_out_of_order_and_an_old_epoch_is_fenced() {
        let mut s = ProducerStates::default();
        s.update(7, 3, meta(0, 4, 0));
        assert_eq!(
            s.check(7, 3, 6, 8),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            s.check(7, 2, 5, 8),
            Err(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(s.check(7, 4, 0, 1), Ok(SequenceCheck::Append));
        assert_eq!(
            s.check(7, 4, 3, 4),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(s.check(8, 0, 5, 6), Ok(SequenceCheck::Append));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.update(1, 0, meta(i * 10, i * 10 + 9, i as i64 * 10));
        }
        assert_eq!(
            s.check(1, 0, 0, 9),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
        assert!(matches!(
            s.check(1, 0, 20, 29),
            Ok(SequenceCheck::Duplicate(_))
        ));
        assert_eq!(s.check(1, 0, 70, 79), Ok(SequenceCheck::Append));
    }

    #[test]
    fn a_snapshot_round_trips_and_a_damaged_one_is_refused() {
        let mut s = ProducerStates::default();
        s.update(7, 2, meta(0, 9, 100));
        s.update(7, 2, meta(10, 19, 110));
        s.update(9, 0, meta(0, 0, 120));
        s.begin(9, 120);
        let bytes = s.to_snapshot();
        let back = ProducerStates::from_snapshot(&bytes).expect("whole");
        assert_eq!(
            back.check(7, 2, 10, 19),
            Ok(SequenceCheck::Duplicate(meta(10, 19, 110)))
        );
        assert_eq!(back.check(7, 2, 20, 29), Ok(SequenceCheck::Append));
        assert_eq!(back.first_unstable(), Some(120));
        let mut torn = bytes.clone();
        torn.truncate(bytes.len() - 3);
        assert!(ProducerStates::from_snapshot(&torn).is_none());
        let mut flipped = bytes;
        flipped[12] ^= 1;
        assert!(ProducerStates::from_snapshot(&flipped).is_none());
    }

    #[test]
    fn a_snapshot_is_renamed_into_place_and_a_cut_short_one_is_swept_away() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = ProducerStates::default();
        s.update(7, 0, meta(0, 9, 0));
        write_snapshot(dir.path(), 10, &s);
        // What a kill in the middle of writing the snapshot at 20 leaves.
        let cut = dir
            .path()
            .join(crate::log::segment::file_name(20, SNAPSHOT_TEMPORARY));
        std::fs::write(&cut, &s.to_snapshot()[..5]).expect("write");
        assert_eq!(snapshot_offsets(dir.path()), vec![10]);
        let (at, loaded) = latest_snapshot(dir.path(), 100).expect("a whole snapshot");
        assert_eq!(at, 10);
        assert_eq!(
            loaded.check(7, 0, 0, 9),
            Ok(SequenceCheck::Duplicate(meta(0, 9, 0)))
        );
        assert!(!cut.exists(), "the temporary is removed at start-up");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("00000000000000000010.snapshot")]
        );
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut s = ProducerStates::default();
        s.update(1, 0, meta(i32::MAX - 1, i32::MAX, 0));
        assert_eq!(s.check(1, 0, 0, 3), Ok(SequenceCheck::Append));
    }
}
