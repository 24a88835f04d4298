//! Small files replaced whole: topic metadata, producer-id blocks, recovery points, group
//! and transaction state. A new file is written beside the old one and renamed over it, so a
//! reader, or a restart after a kill, sees the old or the new contents, never a mix. With
//! `sync` the file and its directory are fsynced too, which also covers a power loss; on a
//! crash without it, the rename may be lost and the old contents come back.

use std::io::Write;
use std::path::Path;

/// Writes out everything dirty on the file system holding `path`, data and metadata
/// (`syncfs(2)`): one call instead of an fsync per file when thousands of files changed.
pub fn sync_file_system(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(path)?;
    // SAFETY: syncfs only reads the descriptor, which stays open for the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Replaces `path` with `contents`, fsyncing file and directory.
pub fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_replacing(path, contents, true)
}

/// Replaces `path` with `contents` through a rename; fsyncs only with `sync`.
pub fn write_replacing(path: &Path, contents: &[u8], sync: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    if let Err(e) = write_temporary(&tmp, contents, sync).and_then(|()| std::fs::rename(&tmp, path))
    {
        // A full disk fails the write part-way: the old file stays, the partial one goes.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if sync {
        if let Some(parent) = path.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    Ok(())
}

/// The first half of a replacement, for writers that decide only afterwards whether to
/// rename (see `broker::state_files`): the complete new contents under a temporary name,
/// fsynced with `sync`.
pub fn write_temporary(tmp: &Path, contents: &[u8], sync: bool) -> std::io::Result<()> {
    let mut f = std::fs::File::create(tmp)?;
    f.write_all(contents)?;
    if sync {
        f.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_holds_the_new_contents_and_no_temporary_stays() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("state.yaml");
        write_atomically(&path, b"one").expect("write");
        write_replacing(&path, b"two", false).expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.yaml")]);
    }

    #[test]
    fn a_failed_replacement_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tmp");
        // The rename fails: a non-empty directory holds the name.
        let path = dir.path().join("state");
        std::fs::create_dir(&path).expect("dir");
        std::fs::write(path.join("inside"), b"x").expect("write");
        write_replacing(&path, b"new", false).expect_err("rename over a directory");
        assert!(!dir.path().join("state.tmp").exists());
    }
}
