//! Kafka's `.txnindex`: one 34-byte entry per aborted transaction whose abort marker is in
//! the segment (version i16, producer id, first offset, last offset, last stable offset), so
//! read_committed consumers learn which records to drop. Appended beside the segment's
//! `.log`; a torn last entry after a crash is ignored when read.

use std::path::Path;

/// Bytes of one entry.
pub const ENTRY: usize = 34;

/// An aborted transaction's span in one partition, as a `.txnindex` entry holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The abort marker's offset.
    pub last_offset: i64,
    /// The last stable offset once the abort was written.
    pub last_stable_offset: i64,
}

/// One entry as the file holds it.
pub fn encode(a: &AbortedTxn) -> [u8; ENTRY] {
    let mut e = [0u8; ENTRY];
    for (i, v) in [
        a.producer_id,
        a.first_offset,
        a.last_offset,
        a.last_stable_offset,
    ]
    .into_iter()
    .enumerate()
    {
        e[2 + 8 * i..10 + 8 * i].copy_from_slice(&v.to_be_bytes());
    }
    e
}

/// Entries of a `.txnindex` file; a torn last entry is ignored.
pub fn parse(body: &[u8]) -> Vec<AbortedTxn> {
    body.chunks_exact(ENTRY)
        .map(|e| {
            let at = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&e[i..i + 8]);
                i64::from_be_bytes(b)
            };
            AbortedTxn {
                producer_id: at(2),
                first_offset: at(10),
                last_offset: at(18),
                last_stable_offset: at(26),
            }
        })
        .collect()
}

/// Every aborted transaction in a partition directory's `.txnindex` files, in marker order.
pub fn read_all(dir: &Path) -> Vec<AbortedTxn> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut all: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".txnindex"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .flat_map(|b| parse(&b))
        .collect();
    all.sort_by_key(|a| a.last_offset);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_entry_is_ignored() {
        let mut body = vec![0u8; ENTRY];
        body[2..10].copy_from_slice(&7i64.to_be_bytes());
        body[18..26].copy_from_slice(&42i64.to_be_bytes());
        body.extend_from_slice(&[1, 2, 3]);
        let all = parse(&body);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].producer_id, 7);
        assert_eq!(all[0].last_offset, 42);
    }
}
