//! A bounded set of open segment files, shared by every partition.
//!
//! Each segment has a `.log`, an `.index` and a `.timeindex`; holding all three open for
//! every segment made the number of partitions a broker can keep a function of the process's
//! open-file limit (three files each: about 6,600 partitions under a limit of 20,000). Files
//! are instead opened when a read, an append or an fsync needs them and kept in a
//! least-recently-used cache whose size comes from that limit; the least recently used is
//! closed when another has to open. A reader holding a handle keeps it open (and readable
//! after a deletion or rename) until it is done, as before.

use lru::LruCache;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Open-file budget left for sockets, the archive's files, state files and the like when
/// the cache takes its share of the limit.
const RESERVED: u64 = 1024;

/// The cache never holds fewer files than this, whatever the limit says.
const MIN_CAPACITY: usize = 32;

struct Cache {
    open: Mutex<LruCache<u64, Arc<File>>>,
    capacity: AtomicUsize,
}

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Cache {
        open: Mutex::new(LruCache::unbounded()),
        capacity: AtomicUsize::new(default_capacity()),
    })
}

/// A quarter of the soft open-file limit (after a reserve): the rest stays for client
/// connections, which Kafka users expect to count in the thousands.
fn default_capacity() -> usize {
    let limit = open_file_limit().unwrap_or(1024);
    (limit.saturating_sub(RESERVED) / 4).max(MIN_CAPACITY as u64) as usize
}

/// The soft `RLIMIT_NOFILE`.
pub fn open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct passed and reads nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0).then_some(lim.rlim_cur)
}

/// Raises the soft open-file limit to the hard one (as most servers do at start-up: the
/// soft limit is often 1,024 while the hard one is far higher), then sizes the cache from
/// it. Returns (limit, cache capacity).
pub fn init_from_limits() -> (u64, usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                tracing::debug!("could not raise the open-file limit");
            }
        }
    }
    let capacity = default_capacity();
    set_capacity(capacity);
    (open_file_limit().unwrap_or(0), capacity)
}

/// Sets how many files stay open (closing the least recently used beyond it).
pub fn set_capacity(capacity: usize) {
    let c = cache();
    c.capacity
        .store(capacity.max(MIN_CAPACITY), Ordering::Relaxed);
    let evicted = {
        let mut open = c.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut evicted = Vec::new();
        while open.len() > capacity.max(MIN_CAPACITY) {
            match open.pop_lru() {
                Some((_, f)) => evicted.push(f),
                None => break,
            }
        }
        evicted
    };
    drop(evicted);
}

/// (files open, capacity).
pub fn stats() -> (usize, usize) {
    let c = cache();
    let open = c.open.lock().map(|o| o.len()).unwrap_or(0);
    (open, c.capacity.load(Ordering::Relaxed))
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One file of a segment: where it is, and the key of its handle in the cache. Opened for
/// reading and appending (appends land at the end whatever the readers do, and `pread`
/// reads anywhere). Dropping it closes the handle the cache holds.
#[derive(Debug)]
pub struct CachedFile {
    id: u64,
    path: PathBuf,
}

impl CachedFile {
    /// Opens (or, with `create`, creates) the file now, so that a missing file or a failed
    /// creation shows at once, and keeps the handle in the cache.
    pub fn open(path: &Path, create: bool) -> io::Result<(Self, Arc<File>)> {
        let f = Self {
            id: next_id(),
            path: path.to_path_buf(),
        };
        let file = f.open_uncached(create)?;
        let file = f.insert(file);
        Ok((f, file))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file was renamed: a handle already open follows it, a later open uses the name.
    pub fn renamed(&mut self, path: PathBuf) {
        self.path = path;
    }

    /// An open handle, from the cache or opened now.
    pub fn get(&self) -> io::Result<Arc<File>> {
        let c = cache();
        if let Some(f) = c
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&self.id)
        {
            return Ok(f.clone());
        }
        let file = self.open_uncached(false)?;
        Ok(self.insert(file))
    }

    fn open_uncached(&self, create: bool) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(create)
            .open(&self.path)
    }

    /// Keeps `file` as this file's handle (or the one another thread opened meanwhile),
    /// closing the least recently used beyond the capacity, outside the lock.
    fn insert(&self, file: File) -> Arc<File> {
        let c = cache();
        let capacity = c.capacity.load(Ordering::Relaxed);
        let mut evicted = Vec::new();
        let handle = {
            let mut open = c.open.lock().unwrap_or_else(|p| p.into_inner());
            let handle = match open.get(&self.id) {
                Some(existing) => existing.clone(),
                None => {
                    let handle = Arc::new(file);
                    open.put(self.id, handle.clone());
                    handle
                }
            };
            while open.len() > capacity {
                match open.pop_lru() {
                    Some((_, f)) => evicted.push(f),
                    None => break,
                }
            }
            handle
        };
        drop(evicted);
        handle
    }
}

impl Drop for CachedFile {
    fn drop(&mut self) {
        let removed = cache()
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop(&self.id);
        drop(removed);
    }
}

/// Answers on their way out hold segment files open past the cache (a zero-copy fetch sends
/// from the file). Their number is bounded too, by the cache's capacity, so that fetches of
/// many partitions cannot take the process past its open-file limit; beyond it, answers
/// carry their records in memory.
static PINNED: AtomicUsize = AtomicUsize::new(0);

/// One answer's hold on a segment file, counted until dropped.
#[derive(Debug)]
pub struct Pinned(());

impl Drop for Pinned {
    fn drop(&mut self) {
        PINNED.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A hold on one more file, if the bound allows it.
pub fn pin() -> Option<Pinned> {
    let cap = cache().capacity.load(Ordering::Relaxed);
    PINNED
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < cap).then_some(n + 1)
        })
        .ok()
        .map(|_| Pinned(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    #[test]
    fn files_beyond_the_capacity_are_closed_and_reopened_on_use() {
        let dir = tempfile::tempdir().expect("tmp");
        set_capacity(MIN_CAPACITY);
        let files: Vec<CachedFile> = (0..200)
            .map(|i| {
                let (f, h) =
                    CachedFile::open(&dir.path().join(format!("{i}.log")), true).expect("create");
                (&*h).write_all(&[i as u8; 3]).expect("write");
                f
            })
            .collect();
        // Other tests share the cache: only bound what this one adds.
        let (open, capacity) = stats();
        assert!(open <= capacity, "{open} > {capacity}");
        for (i, f) in files.iter().enumerate() {
            let h = f.get().expect("reopen");
            let mut b = [0u8; 3];
            h.read_exact_at(&mut b, 0).expect("read");
            assert_eq!(b, [i as u8; 3]);
        }
        set_capacity(default_capacity());
    }

    #[test]
    fn a_renamed_file_is_reopened_by_its_new_name() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut f, h) = CachedFile::open(&dir.path().join("a.swap"), true).expect("create");
        (&*h).write_all(b"abc").expect("write");
        drop(h);
        std::fs::rename(dir.path().join("a.swap"), dir.path().join("a.log")).expect("rename");
        f.renamed(dir.path().join("a.log"));
        // Forget the handle as an eviction would.
        drop(cache().open.lock().expect("lock").pop(&f.id));
        let h = f.get().expect("reopen");
        let mut b = [0u8; 3];
        h.read_exact_at(&mut b, 0).expect("read");
        assert_eq!(&b, b"abc");
    }
}
