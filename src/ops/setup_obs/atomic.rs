//! Atomic file replacement: write a temporary file in the target's directory, fsync it, rename
//! it over the target, fsync the directory. A reader (the collector, compose) sees either the old
//! file or the new one, never a half-written one, and a crash leaves the old file in place.
//!
//! A file whose bytes are already the wanted ones is not rewritten at all (same inode, same
//! mtime), which is what makes a second `gwctl setup obs` change nothing.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What [`replace`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The file did not exist or had other bytes: it was replaced.
    Replaced,
    /// The bytes were the same; only the mode was corrected.
    ModeFixed,
    /// The bytes and the mode were already right: nothing was touched.
    Unchanged,
}

/// The path to write through: a symlink is followed (its target is replaced, the link stays).
pub fn resolve(path: &Path) -> io::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(path),
        _ => Ok(path.to_owned()),
    }
}

/// Replace `path` with `contents`, atomically. `mode` is the new file's permission bits; `None`
/// keeps the current file's mode (0644 for a new file). The owner of an existing file is kept
/// when this process may set it.
pub fn replace(path: &Path, contents: &[u8], mode: Option<u32>) -> io::Result<Written> {
    let path = resolve(path)?;
    let existing = match fs::metadata(&path) {
        Ok(meta) => Some(meta),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => return Err(err),
    };
    if let Some(meta) = &existing {
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let current_mode = meta.permissions().mode() & 0o7777;
        if fs::read(&path)? == contents {
            return match mode {
                Some(want) if current_mode != want => {
                    fs::set_permissions(&path, Permissions::from_mode(want))?;
                    Ok(Written::ModeFixed)
                }
                _ => Ok(Written::Unchanged),
            };
        }
    }
    let mode = mode
        .or_else(|| existing.as_ref().map(|m| m.permissions().mode() & 0o7777))
        .unwrap_or(0o644);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!(
        ".{}.gwctl-{}-{:08x}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = write_then_rename(&tmp, &path, contents, mode, existing.as_ref());
    if result.is_err() {
        // Best effort: the temporary file must not be left behind; the original is untouched.
        let _ = fs::remove_file(&tmp);
    }
    result?;
    // The rename is durable once the directory entry is.
    File::open(&dir)?.sync_all()?;
    Ok(Written::Replaced)
}

fn write_then_rename(
    tmp: &Path,
    path: &Path,
    contents: &[u8],
    mode: u32,
    existing: Option<&fs::Metadata>,
) -> io::Result<()> {
    // create_new: never follow or reuse something already at the temporary name.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)?;
    // The umask may have cleared bits of `mode`; set them exactly.
    file.set_permissions(Permissions::from_mode(mode))?;
    if let Some(meta) = existing {
        // Keep the owner (e.g. the collector's user) when we are allowed to; not being allowed
        // (we are not root) leaves the file ours, which is still correct for our own files.
        if let Err(err) = std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid())) {
            tracing::debug!(error = %err, "keeping the owner of the replaced file");
        }
    }
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "gwctl-atomic-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn replaces_keeps_equal_and_fixes_mode() {
        let d = dir();
        let p = d.join("f");
        assert_eq!(replace(&p, b"a\n", Some(0o600)).unwrap(), Written::Replaced);
        assert_eq!(fs::read(&p).unwrap(), b"a\n");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let ino = fs::metadata(&p).unwrap().ino();
        assert_eq!(
            replace(&p, b"a\n", Some(0o600)).unwrap(),
            Written::Unchanged
        );
        assert_eq!(fs::metadata(&p).unwrap().ino(), ino);
        fs::set_permissions(&p, Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            replace(&p, b"a\n", Some(0o600)).unwrap(),
            Written::ModeFixed
        );
        assert_eq!(fs::metadata(&p).unwrap().ino(), ino);
        assert_eq!(replace(&p, b"b\n", Some(0o600)).unwrap(), Written::Replaced);
        assert_ne!(fs::metadata(&p).unwrap().ino(), ino);
        // Nothing but the file is left in the directory.
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn keeps_the_mode_when_asked_and_follows_symlinks() {
        let d = dir();
        let p = d.join("conf.yaml");
        fs::write(&p, "x").unwrap();
        fs::set_permissions(&p, Permissions::from_mode(0o640)).unwrap();
        let link = d.join("link.yaml");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert_eq!(replace(&link, b"y", None).unwrap(), Written::Replaced);
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&p).unwrap(), b"y");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        fs::remove_dir_all(&d).unwrap();
    }
}
