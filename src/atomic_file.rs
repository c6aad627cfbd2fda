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
/// is untouched.
pub fn write(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // The pid keeps two processes writing the same file from sharing a temporary one.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
