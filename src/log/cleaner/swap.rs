//! The cleaner's file protocol (Kafka's `.cleaned` and `.swap` suffixes): committing a
//! cleaned group, swapping it in, and start-up recovery of a swap a crash interrupted. See
//! the parent module's "Files and crash safety".

use super::segment;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

pub(super) const CLEANED: &str = ".cleaned";
pub(super) const SWAP: &str = ".swap";
pub(super) const REPLACES: &str = ".replaces";
/// Data files of a cleaned segment, renamed in this order (the `.log` last: once it is in
/// place the swap can only go forward).
pub(super) const DATA_FILES: [&str; 4] = [".index", ".timeindex", ".txnindex", ".log"];

pub(super) fn file_with(dir: &Path, base: i64, ext: &str, suffix: &str) -> PathBuf {
    dir.join(format!("{}{suffix}", segment::file_name(base, ext)))
}

/// Commits a cleaned group whose `.log`, `.index` and `.timeindex` are written and fsynced
/// as `.cleaned`: writes its `.txnindex` (always, possibly empty, so that every data file of
/// a swap has its `.swap`) and the list of segments it replaces, renames the data files to
/// `.swap`, then renames the list to `.replaces.swap`: the commit point.
pub(super) fn commit(dir: &Path, base: i64, txn_index: &[u8], replaces: &[i64]) -> io::Result<()> {
    write_synced(&file_with(dir, base, ".txnindex", CLEANED), txn_index)?;
    let listing: String = replaces.iter().map(|b| format!("{b}\n")).collect();
    write_synced(&file_with(dir, base, REPLACES, CLEANED), listing.as_bytes())?;
    for ext in DATA_FILES {
        std::fs::rename(
            file_with(dir, base, ext, CLEANED),
            file_with(dir, base, ext, SWAP),
        )?;
    }
    sync_dir(dir)?;
    std::fs::rename(
        file_with(dir, base, REPLACES, CLEANED),
        file_with(dir, base, REPLACES, SWAP),
    )?;
    sync_dir(dir)
}

pub(super) fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(super) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Undoes an uncommitted or refused swap of the group at `base`: the commit file first, then
/// the new segment's files. The old segments were never touched.
pub fn roll_back(dir: &Path, base: i64) -> io::Result<()> {
    remove_if_exists(&file_with(dir, base, REPLACES, SWAP))?;
    remove_if_exists(&file_with(dir, base, REPLACES, CLEANED))?;
    for ext in DATA_FILES {
        remove_if_exists(&file_with(dir, base, ext, SWAP))?;
        remove_if_exists(&file_with(dir, base, ext, CLEANED))?;
    }
    Ok(())
}

/// Puts a committed group's new segment in place of the old ones: the `.swap` files renamed
/// over the first old segment's files (the `.log` last), then the other old segments deleted.
/// Idempotent, so that recovery can run it again after a crash part-way. Leaves the
/// `.replaces.swap` file, removed by the caller once the directory is synced.
pub fn finish_swap(dir: &Path, base: i64, replaces: &[i64]) -> io::Result<()> {
    for ext in DATA_FILES {
        let swap = file_with(dir, base, ext, SWAP);
        if swap.exists() {
            std::fs::rename(&swap, file_with(dir, base, ext, ""))?;
        }
    }
    for &old in replaces.iter().filter(|&&o| o != base) {
        for ext in DATA_FILES {
            remove_if_exists(&file_with(dir, old, ext, ""))?;
        }
    }
    Ok(())
}

/// Whether the group at `base` may still swap: every old segment it replaces is there.
pub fn old_segments_present(dir: &Path, replaces: &[i64]) -> bool {
    replaces
        .iter()
        .all(|&old| file_with(dir, old, ".log", "").exists())
}

fn parse_replaces(text: &str) -> Option<Vec<i64>> {
    let list: Option<Vec<i64>> = text.lines().map(|l| l.trim().parse().ok()).collect();
    list.filter(|l| !l.is_empty())
}

/// Start-up recovery of interrupted cleanings, before the segments are loaded: committed
/// swaps are finished (or, when an old segment is gone and the new `.log` is not yet in
/// place, undone), everything uncommitted is deleted. Returns how many swaps were finished.
pub fn recover(dir: &Path) -> io::Result<usize> {
    let mut finished = 0;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    let commit_suffix = format!("{REPLACES}{SWAP}");
    for name in &names {
        let Some(base) = segment::parse_base_offset(name, &commit_suffix) else {
            continue;
        };
        let path = dir.join(name);
        let replaces = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| parse_replaces(&t))
            .filter(|r| r.first() == Some(&base));
        let Some(replaces) = replaces else {
            // A commit file is written and fsynced before its rename: one that does not
            // parse was never committed.
            roll_back(dir, base)?;
            continue;
        };
        let log_in_place = !file_with(dir, base, ".log", SWAP).exists();
        if log_in_place || old_segments_present(dir, &replaces) {
            finish_swap(dir, base, &replaces)?;
            sync_dir(dir)?;
            remove_if_exists(&path)?;
            finished += 1;
            tracing::info!(dir = %dir.display(), base, "finished an interrupted compaction swap");
        } else {
            roll_back(dir, base)?;
            tracing::info!(dir = %dir.display(), base, "rolled back a compaction swap whose segments were deleted");
        }
    }
    // Whatever is left with either suffix was never committed.
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(CLEANED) || name.ends_with(SWAP) {
            remove_if_exists(&entry.path())?;
        }
    }
    Ok(finished)
}
