//! Idempotent producers: per partition, each producer's epoch and its last five batches,
//! so a retried batch is answered with its original offsets instead of written twice.
//! Rebuilt at start-up from the batch headers in the log.

use kafka_protocol::error::ResponseError;
use std::collections::{HashMap, VecDeque};

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
}

fn in_sequence(last_seq: i32, next_first: i32) -> bool {
    next_first as i64 == last_seq as i64 + 1 || (next_first == 0 && last_seq == i32::MAX)
}

impl ProducerStates {
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
            return if first_seq == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(ResponseError::OutOfOrderSequenceNumber)
            };
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

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
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
        assert_eq!(
            s.check(8, 0, 5, 6),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
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
    fn sequences_wrap_at_i32_max() {
        let mut s = ProducerStates::default();
        s.update(1, 0, meta(i32::MAX - 1, i32::MAX, 0));
        assert_eq!(s.check(1, 0, 0, 3), Ok(SequenceCheck::Append));
    }
}
