use super::*;
use crate::log::record_batch::set_base_offset;
use crate::log::record_batch::tests::make_batch;
use std::fs::OpenOptions;

fn batch_at(offset: i64, values: &[&[u8]]) -> Vec<u8> {
    let mut b = make_batch(1_000 + offset, values);
    set_base_offset(&mut b, offset);
    b
}

#[test]
fn names_are_twenty_digit_base_offsets() {
    assert_eq!(file_name(42, ".log"), "00000000000000000042.log");
    assert_eq!(
        parse_base_offset("00000000000000000042.index", ".index"),
        Some(42)
    );
    assert_eq!(parse_base_offset("42.log", ".log"), None);
}

#[test]
fn appended_batches_are_found_by_offset() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut seg = LogSegment::create(dir.path(), 0, 1).expect("create");
    let mut positions = Vec::new();
    let mut off = 0;
    for i in 0..50 {
        let vals: Vec<Vec<u8>> = (0..(i % 4 + 1)).map(|j| vec![j as u8; 10]).collect();
        let refs: Vec<&[u8]> = vals.iter().map(|v| v.as_slice()).collect();
        let b = batch_at(off, &refs);
        positions.push((off, seg.size(), b.len() as u64));
        seg.append(&b).expect("append");
        off += refs.len() as i64;
    }
    assert_eq!(seg.next_offset(), off);
    for &(o, pos, len) in &positions {
        let found = seg
            .find_position(o, seg.size())
            .expect("io")
            .expect("found");
        assert_eq!((found.position, found.size()), (pos, len));
        let mut header = [0u8; HEADER_SIZE];
        seg.file()
            .expect("file")
            .read_exact_at(&mut header, pos)
            .expect("read");
        assert_eq!(found.header, header, "the header it read");
    }
    assert_eq!(seg.find_position(off, seg.size()).expect("io"), None);
}

#[test]
fn a_batch_appended_in_two_parts_is_stored_as_one_and_a_wrong_length_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut seg = LogSegment::create(dir.path(), 0, 1).expect("create");
    let mut whole = Vec::new();
    let mut off = 0;
    for split in [HEADER_SIZE, HEADER_SIZE + 1, usize::MAX] {
        let b = batch_at(off, &[b"first", b"second"]);
        let at = split.min(b.len());
        seg.append_parts(&b[..at], &b[at..]).expect("append");
        whole.extend_from_slice(&b);
        off += 2;
    }
    // Header and records that do not add up to the length field: nothing is written.
    let b = batch_at(off, &[b"x"]);
    let err = seg
        .append_parts(&b[..HEADER_SIZE], &b[HEADER_SIZE + 1..])
        .expect_err("short");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(seg.append_parts(&b[..10], &b[10..]).is_err());
    assert_eq!(seg.next_offset(), off);
    let on_disk = std::fs::read(seg.log_path()).expect("read");
    assert_eq!(on_disk, whole);
    assert_eq!(seg.size(), whole.len() as u64);
}

#[test]
fn recovery_truncates_a_torn_tail_and_rebuilds_indexes() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut seg = LogSegment::create(dir.path(), 0, 1).expect("create");
    for i in 0..10 {
        seg.append(&batch_at(i, &[b"value"])).expect("append");
    }
    let good = seg.size();
    drop(seg);
    // A torn write: half a batch at the end, and a garbage index.
    let torn = batch_at(10, &[b"this one is cut"]);
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.path().join(file_name(0, ".log")))
        .expect("open");
    f.write_all(&torn[..torn.len() / 2]).expect("write");
    std::fs::write(dir.path().join(file_name(0, ".index")), [0xffu8; 13]).expect("idx");
    let mut seen = 0;
    let (seg, rec) =
        LogSegment::open(dir.path(), 0, 1, true, None, &mut |_| seen += 1).expect("open");
    assert_eq!(rec.batches, 10);
    assert!(rec.rebuilt_index);
    assert_eq!(rec.truncated_bytes, (torn.len() / 2) as u64);
    assert_eq!(seg.size(), good);
    assert_eq!(seg.next_offset(), 10);
    assert_eq!(seen, 10);
    assert!(seg.find_position(9, seg.size()).expect("io").is_some());
}

#[test]
fn recovery_stops_at_a_corrupt_batch_in_the_middle() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut seg = LogSegment::create(dir.path(), 0, 4096).expect("create");
    let mut sizes = Vec::new();
    for i in 0..5 {
        seg.append(&batch_at(i, &[b"abc"])).expect("append");
        sizes.push(seg.size());
    }
    drop(seg);
    let path = dir.path().join(file_name(0, ".log"));
    let mut bytes = std::fs::read(&path).expect("read");
    let flip = sizes[2] as usize + 70;
    bytes[flip] ^= 0x55;
    std::fs::write(&path, &bytes).expect("write");
    let (seg, rec) = LogSegment::open(dir.path(), 0, 4096, true, None, &mut |_| {}).expect("open");
    assert_eq!(rec.batches, 3);
    assert_eq!(seg.next_offset(), 3);
    assert_eq!(seg.size(), sizes[2]);
}

/// A file at `path` (a link to a memfd) whose growth a test can stop, as a full disk
/// stops it: writes that would extend it then fail, truncating still works.
pub(crate) struct StoppableFile(std::os::fd::OwnedFd);

impl StoppableFile {
    pub(crate) fn at(path: &Path) -> Self {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: memfd_create takes a NUL-terminated name and returns a new descriptor
        // (or -1), which the OwnedFd then owns alone.
        let fd = unsafe { libc::memfd_create(c"segment".as_ptr(), libc::MFD_ALLOW_SEALING) };
        assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        std::os::unix::fs::symlink(format!("/proc/self/fd/{}", fd.as_raw_fd()), path)
            .expect("link");
        Self(fd)
    }

    pub(crate) fn stop_growth(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a descriptor this value owns.
        let r = unsafe { libc::fcntl(self.0.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_GROW) };
        assert_eq!(r, 0, "F_SEAL_GROW: {}", io::Error::last_os_error());
    }

    /// Truncating it fails from now on (as it may on a failing disk); writes still work.
    pub(crate) fn stop_shrinking(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a descriptor this value owns.
        let r = unsafe { libc::fcntl(self.0.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) };
        assert_eq!(r, 0, "F_SEAL_SHRINK: {}", io::Error::last_os_error());
    }
}

fn file_len(dir: &Path, ext: &str) -> u64 {
    std::fs::metadata(dir.join(file_name(0, ext)))
        .expect("stat")
        .len()
}

/// Segment 0 of `dir` opened with full recovery from copies of its files (recovery
/// rewrites the indexes, which a sealed file may not allow); the copies' directory
/// lives as long as the first value.
fn recover_a_copy(dir: &Path) -> (tempfile::TempDir, LogSegment, Recovered) {
    let copy = tempfile::tempdir().expect("tmp");
    for ext in [".log", ".index", ".timeindex"] {
        let name = file_name(0, ext);
        std::fs::copy(dir.join(&name), copy.path().join(&name)).expect("copy");
    }
    let (seg, rec) = LogSegment::open(copy.path(), 0, 1, true, None, &mut |_| {}).expect("open");
    (copy, seg, rec)
}

/// Appends that fail once `stopped` cannot grow any more: each leaves the three files
/// and the segment as they were, and recovery then finds nothing to cut.
fn failed_appends_change_nothing(stopped: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let file = StoppableFile::at(&dir.path().join(file_name(0, stopped)));
    let mut seg = LogSegment::create(dir.path(), 0, 1).expect("create");
    for i in 0..5 {
        seg.append(&batch_at(i, &[b"fits"])).expect("append");
    }
    let lens = [".log", ".index", ".timeindex"].map(|ext| file_len(dir.path(), ext));
    let (size, max_ts) = (seg.size(), seg.max_timestamp());
    file.stop_growth();
    for i in 5..8 {
        let err = seg
            .append(&batch_at(i, &[b"does not fit"]))
            .expect_err("the disk is full");
        assert!(!err.to_string().contains("cut back"), "{err}");
        assert_eq!(seg.size(), size);
        assert_eq!(seg.next_offset(), 5);
        assert_eq!(seg.max_timestamp(), max_ts);
        assert_eq!(
            [".log", ".index", ".timeindex"].map(|ext| file_len(dir.path(), ext)),
            lens,
            "no byte of the failed append stays"
        );
    }
    for o in 0..5 {
        assert!(seg.find_position(o, seg.size()).expect("io").is_some());
    }
    assert_eq!(seg.find_timestamp(1_004).expect("io"), Some((4, 1_004)));
    drop(seg);
    let (_copy, seg, rec) = recover_a_copy(dir.path());
    assert_eq!((rec.batches, rec.truncated_bytes), (5, 0));
    assert_eq!(seg.next_offset(), 5);
}

/// The `.log` took the batch, its index entry did not fit, and cutting the `.log` back
/// failed too: the segment refuses appends (each tries the cut again first) while what
/// it held stays readable, and a restart's recovery leaves it ending at a whole batch.
#[test]
fn an_append_that_cannot_be_cut_back_refuses_the_next_ones_and_recovery_ends_at_a_whole_batch() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = StoppableFile::at(&dir.path().join(file_name(0, ".log")));
    let index = StoppableFile::at(&dir.path().join(file_name(0, ".index")));
    let mut seg = LogSegment::create(dir.path(), 0, 1).expect("create");
    for i in 0..3 {
        seg.append(&batch_at(i, &[b"fits"])).expect("append");
    }
    let size = seg.size();
    log.stop_shrinking();
    index.stop_growth();
    seg.append(&batch_at(3, &[b"no index room"]))
        .expect_err("the index is full");
    assert!(
        file_len(dir.path(), ".log") > size,
        "the .log kept the batch"
    );
    for _ in 0..2 {
        seg.append(&batch_at(3, &[b"refused"]))
            .expect_err("appends wait for the cut");
        assert_eq!((seg.size(), seg.next_offset()), (size, 3));
    }
    for o in 0..3 {
        assert!(seg.find_position(o, seg.size()).expect("io").is_some());
    }
    drop(seg);
    let (_copy, mut seg, rec) = recover_a_copy(dir.path());
    // The batch reached the .log whole, so recovery keeps it (as Kafka's does: its
    // producer was told it failed, and a retry of an idempotent one is a duplicate the
    // producer state recognises); the indexes are rebuilt to cover it.
    assert_eq!((rec.batches, rec.truncated_bytes), (4, 0));
    assert_eq!(seg.next_offset(), 4);
    assert!(seg.find_position(3, seg.size()).expect("io").is_some());
    seg.append(&batch_at(4, &[b"after recovery"]))
        .expect("append");
}

#[test]
fn a_failed_log_write_changes_nothing() {
    failed_appends_change_nothing(".log");
}

#[test]
fn a_failed_offset_index_write_takes_the_batch_back() {
    failed_appends_change_nothing(".index");
}

#[test]
fn a_failed_time_index_write_takes_the_batch_and_its_offset_entry_back() {
    failed_appends_change_nothing(".timeindex");
}

#[test]
fn timestamp_lookup_uses_the_time_index() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut seg = LogSegment::create(dir.path(), 0, 1).expect("create");
    for i in 0..20 {
        seg.append(&batch_at(i, &[b"v"])).expect("append");
    }
    assert_eq!(seg.find_timestamp(1_007).expect("io"), Some((7, 1_007)));
    assert_eq!(seg.find_timestamp(5_000).expect("io"), None);
}
