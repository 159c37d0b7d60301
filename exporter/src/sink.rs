//! Atomic file rewrites: a reader (node_exporter, a browser, a script) sees either the whole
//! previous file or the whole new one, never a torn or partial file.
//!
//! The content goes to a temporary file in the same directory, created with `O_EXCL` (a name
//! planted in advance makes the write fail rather than be followed) and named so that it never
//! ends in `.prom` (node_exporter would read a half-written file). It is made readable 0644,
//! written, fsynced, renamed over the target, and the directory is fsynced so the rename
//! survives a crash.
//!
//! What is at the output path decides what is replaced (see [`resolve`]):
//! - nothing or a regular file: that path;
//! - a symbolic link: it is followed, link after link, to the file it names, and that file is
//!   replaced in its own directory, so the link stays a link (an administrator who points
//!   `coordmetrics.prom` elsewhere keeps that choice). A rename over the link itself would
//!   replace the link with a regular file;
//! - a directory, FIFO, socket or device: nothing is replaced and the write fails, since no
//!   reader of such a file expects a regular file in its place;
//! - `-` and `/dev/stdout`: the content goes to standard output, with no temporary file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Links followed before giving up, as the kernel's own limit (`MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// Where an output path sends its content.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// Standard output (`-` or `/dev/stdout`).
    Stdout,
    /// This regular file, absent or present, in a directory named without symbolic links.
    File(PathBuf),
}

/// Resolves an output path: standard output, or the regular file to replace after following
/// symbolic links (as the kernel does: a relative link is relative to the directory holding
/// it). The file's directory is made canonical so that the temporary file is created beside
/// the file itself.
///
/// # Errors
/// A directory, FIFO, socket or device at the path or at the end of its links, a loop of
/// links, or an I/O error (such as a missing directory).
pub fn resolve(path: &Path) -> io::Result<Target> {
    if path == Path::new("-") || path == Path::new("/dev/stdout") {
        return Ok(Target::Stdout);
    }
    let mut current = path.to_path_buf();
    for _ in 0..MAX_SYMLINKS {
        let kind = match std::fs::symlink_metadata(&current) {
            Ok(metadata) => metadata.file_type(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return in_canonical_directory(&current),
            Err(error) => return Err(error),
        };
        if kind.is_symlink() {
            current = directory_of(&current).join(std::fs::read_link(&current)?);
        } else if kind.is_file() {
            return in_canonical_directory(&current);
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is {}, not a regular file: refusing to replace it (`-` writes to standard output)",
                    current.display(),
                    coordmetrics::describe_file_type(kind)
                ),
            ));
        }
    }
    Err(io::Error::from_raw_os_error(libc::ELOOP))
}

/// Writes `path` atomically with what `render` produces (or writes it to standard output, see
/// [`resolve`]).
///
/// # Errors
/// Any I/O error, or a path that is not to be replaced; the previous file at `path` is then
/// left untouched and no temporary file remains. Nothing is written to standard output when
/// `render` fails.
pub fn write_atomic(path: &Path, render: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    match resolve(path)? {
        Target::Stdout => {
            let mut text = Vec::new();
            render(&mut text)?;
            write_stdout(&text)
        }
        Target::File(file) => replace(&file, render),
    }
}

/// Writes `text` to standard output; a closed pipe (`coordmetrics snapshot | head`) is not an
/// error worth a message: whoever wanted the output has gone.
///
/// # Errors
/// Other I/O errors.
pub fn write_stdout(text: &[u8]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(text).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Replaces the regular file `path` (whose directory is canonical) atomically.
fn replace(path: &Path, render: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let dir = directory_of(path);
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

fn in_canonical_directory(file: &Path) -> io::Result<Target> {
    let name = file.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{} does not name a file", file.display()))
    })?;
    Ok(Target::File(std::fs::canonicalize(directory_of(file))?.join(name)))
}

fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Removes temporary files that an earlier writer of `path` left behind when it was killed
/// mid-write (its pid no longer exists). Returns how many were removed.
pub fn remove_stale_temp_files(path: &Path) -> usize {
    let Ok(Target::File(path)) = resolve(path) else { return 0 };
    let (dir, Some(name)) = (directory_of(&path), path.file_name()) else { return 0 };
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
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

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

    /// The names in `dir`, sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn a_symlink_is_followed_and_stays_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let real = elsewhere.path().join("real.prom");
        std::fs::write(&real, "old\n").unwrap();
        // A relative link to a second, absolute one: both are followed.
        let absolute = dir.path().join("absolute");
        std::os::unix::fs::symlink(&real, &absolute).unwrap();
        let path = dir.path().join("x.prom");
        std::os::unix::fs::symlink("absolute", &path).unwrap();

        assert_eq!(resolve(&path).unwrap(), Target::File(std::fs::canonicalize(&real).unwrap()));
        write_atomic(&path, |w| w.write_all(b"new\n")).unwrap();
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new\n");
        assert_eq!(std::fs::read_link(&path).unwrap(), Path::new("absolute"));
        assert_eq!(std::fs::read_link(&absolute).unwrap(), real);
        assert_eq!(listing(dir.path()), ["absolute", "x.prom"]);
        assert_eq!(listing(elsewhere.path()), ["real.prom"], "the temporary file was beside the target");
    }

    #[test]
    fn a_dangling_symlink_gets_its_target_created() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let path = dir.path().join("x.prom");
        std::os::unix::fs::symlink("sub/later.prom", &path).unwrap();
        write_atomic(&path, |w| w.write_all(b"first\n")).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("sub/later.prom")).unwrap(), "first\n");
        assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
    }

    #[test]
    fn special_files_are_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let directory = dir.path().join("directory");
        std::fs::create_dir(&directory).unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let link_to_fifo = dir.path().join("link");
        std::os::unix::fs::symlink(&fifo, &link_to_fifo).unwrap();
        for (path, kind) in
            [(&directory, "a directory"), (&fifo, "a FIFO"), (&socket, "a socket"), (&link_to_fifo, "a FIFO")]
        {
            let error = write_atomic(path, |w| w.write_all(b"x")).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
            assert!(error.to_string().contains(&format!("is {kind}, not a regular file")), "{error}");
        }
        assert!(directory.is_dir());
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert!(std::fs::symlink_metadata(&socket).unwrap().file_type().is_socket());
        assert_eq!(listing(dir.path()), ["directory", "fifo", "link", "socket"], "no temporary file left");
        // Devices are only resolved here, never written: this test must not touch /dev/null.
        let link_to_device = dir.path().join("null");
        std::os::unix::fs::symlink("/dev/null", &link_to_device).unwrap();
        for path in [Path::new("/dev/null"), &link_to_device] {
            let error = resolve(path).unwrap_err().to_string();
            assert!(error.contains("/dev/null is a character device"), "{error}");
        }
    }

    #[test]
    fn a_loop_of_links_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("b", dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("b")).unwrap();
        assert_eq!(resolve(&dir.path().join("a")).unwrap_err().raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn dash_and_dev_stdout_mean_standard_output() {
        assert_eq!(resolve(Path::new("-")).unwrap(), Target::Stdout);
        assert_eq!(resolve(Path::new("/dev/stdout")).unwrap(), Target::Stdout);
        assert_eq!(resolve(Path::new("./-")).unwrap(), Target::File(std::env::current_dir().unwrap().join("-")));
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
