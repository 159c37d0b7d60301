//! Atomic file rewrites: a reader (node_exporter, a browser, a script) sees either the whole
//! previous file or the whole new one, never a torn or partial file.
//!
//! The content goes to a temporary file in the same directory, created with `O_EXCL` (a name
//! planted in advance makes the write fail rather than be followed) and named so that it never
//! ends in `.prom` (node_exporter would read a half-written file). It is made readable 0644,
//! written, fsynced, renamed over the target (rename replaces a symlink at the target instead
//! of following it), and the directory is fsynced so the rename survives a crash.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `path` atomically with what `render` produces.
///
/// # Errors
/// Any I/O error; the previous file at `path` is then left untouched and no temporary file
/// remains.
pub fn write_atomic(path: &Path, render: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let temp = temp_path(dir, path);
    let result = (|| {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)?;
        // The mode passed to open is reduced by the umask: set the final one explicitly.
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        let mut writer = BufWriter::new(file);
        render(&mut writer)?;
        let file = writer.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Removes temporary files that an earlier writer of `path` left behind when it was killed
/// mid-write (its pid no longer exists). Returns how many were removed.
pub fn remove_stale_temp_files(path: &Path) -> usize {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return 0 };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file_name.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".tmp")) else { continue };
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let owner_alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !owner_alive && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn temp_path(dir: &Path, target: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = target.file_name().map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{}.{unique}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replaces_the_file_whole_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.prom");
        write_atomic(&path, |w| w.write_all(b"first\n")).unwrap();
        write_atomic(&path, |w| w.write_all(b"second\n")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn a_failed_render_keeps_the_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.prom");
        write_atomic(&path, |w| w.write_all(b"good\n")).unwrap();
        let error = write_atomic(&path, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("render failed"))
        });
        assert!(error.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "good\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let path = dir.path().join("x.prom");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_atomic(&path, |w| w.write_all(b"new\n")).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(!std::fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
    }

    #[test]
    fn stale_temporary_files_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.prom");
        let dead = dir.path().join(format!(".x.prom.{}.3.tmp", u32::MAX - 1));
        let mine = dir.path().join(format!(".x.prom.{}.4.tmp", std::process::id()));
        let other = dir.path().join(".y.prom.1.tmp");
        for file in [&dead, &mine, &other] {
            std::fs::write(file, "partial").unwrap();
        }
        assert_eq!(remove_stale_temp_files(&path), 1);
        assert!(!dead.exists() && mine.exists() && other.exists());
    }

    #[test]
    fn temporary_names_are_not_prom_files() {
        let temp = temp_path(Path::new("/d"), Path::new("/d/a.prom"));
        assert!(!temp.to_string_lossy().ends_with(".prom"));
        assert!(temp.file_name().unwrap().to_string_lossy().starts_with('.'));
    }
}
