//! Kafka's two sparse segment indexes.
//!
//! `.index`: entries of a 4-byte offset relative to the segment's base offset and a 4-byte
//! position in the `.log`, big-endian, one every `index.interval.bytes` of log.
//! `.timeindex`: entries of an 8-byte timestamp and a 4-byte relative offset, appended only
//! when the segment's max timestamp grows, so both columns are monotonic.
//! Neither is checksummed: on recovery an index that does not match its log is rebuilt.

use super::file_cache::CachedFile;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub const OFFSET_ENTRY: usize = 8;
pub const TIME_ENTRY: usize = 12;

/// Sparse map from offset to file position.
pub struct OffsetIndex {
    file: CachedFile,
    base_offset: i64,
    entries: Vec<(u32, u32)>,
}

/// Sparse map from timestamp to the first offset that may hold it.
pub struct TimeIndex {
    file: CachedFile,
    base_offset: i64,
    entries: Vec<(i64, u32)>,
}

/// Opens (creating if missing) the index file and reads it whole.
fn open_and_read(path: &Path) -> io::Result<(CachedFile, Vec<u8>)> {
    let (file, handle) = CachedFile::open(path, true)?;
    let mut buf = Vec::new();
    (&*handle).read_to_end(&mut buf)?;
    Ok((file, buf))
}

impl OffsetIndex {
    /// Opens the index as it is on disk. Returns `None` for entries when the file is not a
    /// whole number of well-ordered entries, so the caller rebuilds it.
    pub fn open(path: &Path, base_offset: i64, log_size: u64) -> io::Result<(Self, bool)> {
        let (file, raw) = open_and_read(path)?;
        let mut entries = Vec::with_capacity(raw.len() / OFFSET_ENTRY);
        let mut sane = raw.len() % OFFSET_ENTRY == 0;
        for e in raw.chunks_exact(OFFSET_ENTRY) {
            let rel = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            let pos = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
            if let Some(&(lr, lp)) = entries.last() {
                if rel <= lr || pos <= lp {
                    sane = false;
                }
            }
            if pos as u64 >= log_size {
                sane = false;
            }
            entries.push((rel, pos));
        }
        Ok((
            Self {
                file,
                base_offset,
                entries,
            },
            sane,
        ))
    }

    pub fn append(&mut self, offset: i64, position: u32) -> io::Result<()> {
        let rel = (offset - self.base_offset) as u32;
        if let Some(&(lr, _)) = self.entries.last() {
            if rel <= lr {
                return Ok(());
            }
        }
        let mut e = [0u8; OFFSET_ENTRY];
        e[..4].copy_from_slice(&rel.to_be_bytes());
        e[4..].copy_from_slice(&position.to_be_bytes());
        (&*self.file.get()?).write_all(&e)?;
        self.entries.push((rel, position));
        Ok(())
    }

    /// Position of the last entry at or before `offset`; 0 (the segment start) when none is.
    pub fn lookup(&self, offset: i64) -> (i64, u32) {
        let rel = offset - self.base_offset;
        if rel < 0 {
            return (self.base_offset, 0);
        }
        let idx = self.entries.partition_point(|&(r, _)| (r as i64) <= rel);
        if idx == 0 {
            (self.base_offset, 0)
        } else {
            let (r, p) = self.entries[idx - 1];
            (self.base_offset + r as i64, p)
        }
    }

    pub fn last_offset(&self) -> Option<i64> {
        self.entries
            .last()
            .map(|&(r, _)| self.base_offset + r as i64)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Empties the index on disk and in memory, before a rebuild.
    pub fn reset(&mut self) -> io::Result<()> {
        self.file.get()?.set_len(0)?;
        self.entries.clear();
        Ok(())
    }

    /// Keeps the first `n` entries, on disk too: also cuts a partial entry a failed write
    /// left past them. Memory first, so a failed truncate is retried by the same call.
    pub fn truncate_entries(&mut self, n: usize) -> io::Result<()> {
        self.entries.truncate(n);
        self.file
            .get()?
            .set_len((self.entries.len() * OFFSET_ENTRY) as u64)
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.get()?.sync_data()
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The file now has this name (the cleaner renames it).
    pub fn renamed(&mut self, path: PathBuf) {
        self.file.renamed(path);
    }
}

impl TimeIndex {
    pub fn open(path: &Path, base_offset: i64) -> io::Result<(Self, bool)> {
        let (file, raw) = open_and_read(path)?;
        let mut entries = Vec::with_capacity(raw.len() / TIME_ENTRY);
        let mut sane = raw.len() % TIME_ENTRY == 0;
        for e in raw.chunks_exact(TIME_ENTRY) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&e[..8]);
            let ts = i64::from_be_bytes(ts);
            let rel = u32::from_be_bytes([e[8], e[9], e[10], e[11]]);
            if let Some(&(lt, lr)) = entries.last() {
                if ts <= lt || rel < lr {
                    sane = false;
                }
            }
            entries.push((ts, rel));
        }
        Ok((
            Self {
                file,
                base_offset,
                entries,
            },
            sane,
        ))
    }

    /// Appends only when `timestamp` is greater than the last entry's, as Kafka does.
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) -> io::Result<()> {
        if let Some(&(lt, _)) = self.entries.last() {
            if timestamp <= lt {
                return Ok(());
            }
        }
        let rel = (offset - self.base_offset) as u32;
        let mut e = [0u8; TIME_ENTRY];
        e[..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..].copy_from_slice(&rel.to_be_bytes());
        (&*self.file.get()?).write_all(&e)?;
        self.entries.push((timestamp, rel));
        Ok(())
    }

    /// The offset to start a timestamp search from: that of the last entry whose timestamp is
    /// below `timestamp` (every record before it is older), or the segment's base offset.
    pub fn lookup(&self, timestamp: i64) -> i64 {
        let idx = self.entries.partition_point(|&(t, _)| t < timestamp);
        if idx == 0 {
            self.base_offset
        } else {
            self.base_offset + self.entries[idx - 1].1 as i64
        }
    }

    pub fn last_entry(&self) -> Option<(i64, i64)> {
        self.entries
            .last()
            .map(|&(t, r)| (t, self.base_offset + r as i64))
    }

    pub fn reset(&mut self) -> io::Result<()> {
        self.file.get()?.set_len(0)?;
        self.entries.clear();
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// As `OffsetIndex::truncate_entries`.
    pub fn truncate_entries(&mut self, n: usize) -> io::Result<()> {
        self.entries.truncate(n);
        self.file
            .get()?
            .set_len((self.entries.len() * TIME_ENTRY) as u64)
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.get()?.sync_data()
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The file now has this name (the cleaner renames it).
    pub fn renamed(&mut self, path: PathBuf) {
        self.file.renamed(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    #[test]
    fn lookup_before_first_entry_returns_base_offset() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut idx, sane) = OffsetIndex::open(&dir.path().join("a.index"), 100, 0).expect("open");
        assert!(sane);
        idx.append(150, 4096).expect("append");
        assert_eq!(idx.lookup(120), (100, 0));
        assert_eq!(idx.lookup(99), (100, 0));
        assert_eq!(idx.lookup(150), (150, 4096));
        assert_eq!(idx.lookup(10_000), (150, 4096));
    }

    #[test]
    fn offset_index_agrees_with_a_sorted_map_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("00000000000000001000.index");
        let (mut idx, _) = OffsetIndex::open(&path, 1000, 0).expect("open");
        let mut model = BTreeMap::new();
        let mut rng = Lcg(7);
        let (mut off, mut pos) = (1000i64, 0u32);
        for _ in 0..500 {
            off += 1 + (rng.next() % 50) as i64;
            pos += 1 + (rng.next() % 5000) as u32;
            idx.append(off, pos).expect("append");
            model.insert(off, pos);
        }
        let check = |idx: &OffsetIndex| {
            let mut rng = Lcg(99);
            for _ in 0..2000 {
                let q = 900 + (rng.next() % 30_000) as i64;
                let want = model
                    .range(..=q)
                    .next_back()
                    .map(|(&o, &p)| (o, p))
                    .unwrap_or((1000, 0));
                assert_eq!(idx.lookup(q), want, "lookup {q}");
            }
        };
        check(&idx);
        drop(idx);
        let (idx, sane) = OffsetIndex::open(&path, 1000, pos as u64 + 1).expect("reopen");
        assert!(sane);
        assert_eq!(idx.len(), model.len());
        check(&idx);
    }

    #[test]
    fn an_index_pointing_past_the_log_is_not_sane() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("x.index");
        let (mut idx, _) = OffsetIndex::open(&path, 0, 0).expect("open");
        idx.append(5, 100_000).expect("append");
        drop(idx);
        let (_, sane) = OffsetIndex::open(&path, 0, 50_000).expect("reopen");
        assert!(!sane);
    }

    #[test]
    fn a_torn_index_entry_is_not_sane() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("x.index");
        std::fs::write(&path, [0u8; 11]).expect("write");
        let (_, sane) = OffsetIndex::open(&path, 0, 1 << 20).expect("open");
        assert!(!sane);
    }

    #[test]
    fn time_index_agrees_with_a_sorted_map() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("t.timeindex");
        let (mut idx, _) = TimeIndex::open(&path, 0).expect("open");
        let mut model = BTreeMap::new();
        let mut rng = Lcg(3);
        let (mut ts, mut off) = (1_000_000i64, 0i64);
        for _ in 0..300 {
            // Timestamps may go backwards; only growth is indexed.
            let step = (rng.next() % 100) as i64 - 20;
            ts += step;
            off += 1 + (rng.next() % 10) as i64;
            let grew = model.keys().next_back().is_none_or(|&last| ts > last);
            idx.maybe_append(ts, off).expect("append");
            if grew {
                model.insert(ts, off);
            }
        }
        drop(idx);
        let (idx, sane) = TimeIndex::open(&path, 0).expect("reopen");
        assert!(sane);
        let mut rng = Lcg(11);
        for _ in 0..1000 {
            let q = 999_000 + (rng.next() % 40_000) as i64;
            let want = model.range(..q).next_back().map(|(_, &o)| o).unwrap_or(0);
            assert_eq!(idx.lookup(q), want, "lookup {q}");
        }
    }
}
