//! Producer ids for InitProducerId, never handed out twice.
//!
//! Files: `<data_dir>/.strata/producer-id-block`, the end of the last block of ids handed
//! out. It is replaced atomically (and fsynced) before any id of a new block is used, so
//! after a crash the broker starts at the next block and never reuses an id.

use std::path::PathBuf;
use std::sync::Mutex;

/// Hands out producer ids that are never reused: ids come in blocks, and a block's end is
/// persisted before any id from it is handed out.
pub struct ProducerIds {
    path: PathBuf,
    /// (next id, end of the persisted block).
    state: Mutex<(i64, i64)>,
}

const PRODUCER_ID_BLOCK: i64 = 1000;

impl ProducerIds {
    pub fn open(path: PathBuf) -> std::io::Result<Self> {
        let start = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<i64>().unwrap_or(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(Self {
            path,
            state: Mutex::new((start, start)),
        })
    }

    pub fn next(&self) -> std::io::Result<i64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (next, end) = &mut *state;
        if *next >= *end {
            let new_end = *end + PRODUCER_ID_BLOCK;
            crate::checkpoint::write_atomically(&self.path, new_end.to_string().as_bytes())?;
            *end = new_end;
        }
        let id = *next;
        *next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_not_handed_out_again_after_a_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("producer-id-block");
        let ids = ProducerIds::open(path.clone()).expect("open");
        let first: Vec<i64> = (0..3).map(|_| ids.next().expect("id")).collect();
        assert_eq!(first, vec![0, 1, 2]);
        let reopened = ProducerIds::open(path).expect("reopen");
        assert_eq!(reopened.next().expect("id"), PRODUCER_ID_BLOCK);
    }
}
