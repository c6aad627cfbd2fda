//! Files replaced whole: a reader (or a restart after a crash) sees the old contents or
//! the new, never a part. Used for the node id and the gateway's state.

// No unsafe code here: the compiler holds this module to the promise in lib.rs.
#![forbid(unsafe_code)]

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `contents` to a temporary file beside `path` (created with `mode`, whatever
/// the umask allows), fsyncs it, renames it over `path` and fsyncs the directory, so the
/// rename itself survives a crash. On failure the temporary file is removed and `path`
/// is untouched: when the directory's fsync fails after the rename, the previous file
/// (kept under a second name, a hard link, until then) is renamed back, so a write
/// reported as failed never shows up later.
pub fn write(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    write_fenced(path, contents, mode, || Ok(()))
}

/// [`write()`], asking `may_rename` once the temporary file is on disk, just before the
/// rename: an error from it leaves `path` untouched (the temporary file is removed) and
/// is returned. A writer that may have been superseded during a slow write checks there
/// that it is still the one allowed to replace the file.
pub fn write_fenced(
    path: &Path,
    contents: &[u8],
    mode: u32,
    may_rename: impl FnOnce() -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = parent(path);
    let name = file_name(path);
    // Temporary files of writers that died before their rename (each up to the
    // size of the file) would otherwise stay for good.
    remove_stale(path);
    // The pid keeps two processes writing the same file from sharing a temporary one.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let prev = dir.join(format!(".{name}.{}.old", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        may_rename()?;
        // The previous file, under a second name until the rename is durable.
        let _ = std::fs::remove_file(&prev);
        let kept = match std::fs::hard_link(path, &prev) {
            Ok(()) => Some(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(false),
            // A file system without hard links: no way back after the rename.
            Err(_) => None,
        };
        std::fs::rename(&tmp, path)?;
        if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            match kept {
                Some(true) => {
                    let _ = std::fs::rename(&prev, path);
                }
                Some(false) => {
                    let _ = std::fs::remove_file(path);
                }
                None => {}
            }
            return Err(e);
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let _ = std::fs::remove_file(&prev);
    result
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Removes the temporary files (and second names of the previous file) that [`write()`]
/// left beside `path` in processes that no longer exist (killed between creating and
/// renaming them); those of live processes, which may be writing right now, stay. Returns how many were removed. Does nothing
/// where /proc cannot tell which processes live.
pub fn remove_stale(path: &Path) -> usize {
    if !Path::new("/proc/self").exists() {
        return 0;
    }
    let prefix = format!(".{}.", file_name(path));
    let Ok(entries) = std::fs::read_dir(parent(path)) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let entry_name = entry.file_name();
        let Some(pid) = entry_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".tmp").or_else(|| n.strip_suffix(".old")))
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("atomic-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn replaces_whole_with_the_mode_and_leaves_nothing_beside() {
        let d = scratch("replace");
        let p = d.join("state.json");
        write(&p, b"old", 0o600).unwrap();
        write(&p, b"new contents", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new contents");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_refused_rename_leaves_the_old_file_and_no_temporary() {
        let d = scratch("fenced");
        let p = d.join("state.json");
        write(&p, b"old", 0o600).unwrap();
        let e = write_fenced(&p, b"new", 0o600, || {
            Err(std::io::Error::other("superseded"))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "superseded");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn temporaries_of_dead_writers_go_those_of_live_ones_stay() {
        let d = scratch("stale");
        let p = d.join("state.json");
        // No pid is this large (pid_max is at most 2^22).
        let dead = d.join(".state.json.99999999.tmp");
        let live = d.join(format!(".state.json.{}.tmp", std::process::id()));
        let other = d.join(".other.json.99999999.tmp");
        for f in [&dead, &live, &other] {
            std::fs::write(f, b"partial").unwrap();
        }
        assert_eq!(remove_stale(&p), 1);
        assert!(!dead.exists());
        assert!(live.exists() && other.exists());
        // A write removes them too (and replaces its own).
        std::fs::write(&dead, b"partial").unwrap();
        write(&p, b"new", 0o600).unwrap();
        assert!(!dead.exists() && !live.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let d = scratch("fail");
        let p = d.join("id");
        write(&p, b"kept", 0o644).unwrap();
        // A directory where the file should go: the rename fails.
        let blocked = d.join("sub");
        std::fs::create_dir_all(blocked.join("x")).unwrap();
        assert!(write(&blocked, b"lost", 0o644).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"kept");
        assert!(blocked.join("x").is_dir());
        let stray = std::fs::read_dir(&d)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count();
        assert_eq!(stray, 0);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
