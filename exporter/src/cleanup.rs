//! `coordmetrics cleanup`: removes a segment that nobody writes any more, and never a file
//! that is not a segment.
//!
//! The path is looked at without following it (`symlink_metadata`): only a regular file can be
//! a segment, and a FIFO is never opened (opening one can block). A regular file is then opened
//! as a segment, with no wait for a creator and whoever owns it (identifying a file does not
//! trust its contents). What it turns out to be decides:
//!
//! - a segment of this layout version with no live writer: removed;
//! - with live writers, of another layout version, or starting with the coordmetrics magic but
//!   unreadable (truncated, half-initialised, corrupt): removed only with `--force`, since its
//!   writers cannot be ruled out;
//! - anything else: never removed.
//!
//! Just before the removal the path must still name the file that was examined, so a file
//! swapped in meanwhile is not removed in its place.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use coordmetrics::{OpenError, OwnerPolicy, SegmentOptions, SegmentReader};

/// The exit statuses, for `cleanup --help`.
const EXIT_STATUS: &str = "\
Exit status:
  0  removed
  1  an error (permission, I/O): nothing removed
  2  invalid arguments
  3  nothing at PATH
  4  not a coordmetrics segment (a text file, other bytes, a FIFO, a directory, a device,
     a socket, a symbolic link): never removed, even with --force
  5  a segment with live writers: removed only with --force
  6  a segment of another layout version: removed only with --force
  7  a damaged segment (coordmetrics magic, but truncated, half-initialised or corrupt):
     removed only with --force";

#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_STATUS)]
pub struct CleanupArgs {
    /// Segment to remove.
    #[arg(long, env = "COORDMETRICS_SEGMENT", default_value = coordmetrics::DEFAULT_SEGMENT_PATH, value_name = "PATH")]
    segment: PathBuf,
    /// Also remove a segment with live writers (their later updates are lost), of another
    /// layout version, or damaged. Never a file that is not a segment.
    #[arg(long)]
    force: bool,
}

/// Why nothing was removed, when it is a decision rather than an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing at the path.
    Missing = 3,
    /// Not a coordmetrics segment.
    NotASegment = 4,
    /// Live writers, and no `--force`.
    LiveWriters = 5,
    /// Another layout version, and no `--force`.
    OtherVersion = 6,
    /// Damaged, and no `--force`.
    Damaged = 7,
}

/// A [`Refusal`] and its message.
#[derive(Debug)]
pub struct Refused {
    refusal: Refusal,
    message: String,
}

impl Refused {
    /// The exit status documented in [`EXIT_STATUS`].
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.refusal as u8)
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

/// What the path holds.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// A segment this program reads.
    Segment { version: u32, live_writers: usize },
    /// A segment of another layout version.
    OtherVersion { found: u32, expected: u32 },
    /// The coordmetrics magic, but not readable as a segment: why.
    Damaged(String),
    /// Not a segment: what it is.
    NotASegment(String),
}

/// Removes the segment at `args.segment` if its verdict allows it (see the module's header).
///
/// # Errors
/// A [`Refused`] for a verdict that keeps the file, or an I/O error.
pub fn cleanup(args: &CleanupArgs) -> anyhow::Result<()> {
    let path = &args.segment;
    let refuse = |refusal, message: String| Err(Refused { refusal, message }.into());
    let Some((found, identity)) = examine(path)? else {
        return refuse(Refusal::Missing, format!("nothing at {}: nothing removed", path.display()));
    };
    let shown = path.display();
    let removed = match found {
        Found::NotASegment(what) => {
            return refuse(
                Refusal::NotASegment,
                format!("{shown} is not a coordmetrics segment ({what}): not removed, even with --force"),
            )
        }
        Found::Segment { version, live_writers: 0 } => {
            format!("removed {shown} (a coordmetrics segment, layout version {version}, no live writer)")
        }
        Found::Segment { live_writers, .. } if !args.force => {
            return refuse(
                Refusal::LiveWriters,
                format!(
                    "{shown} is a coordmetrics segment in use (live writer slots: {live_writers}): not removed \
                     (stop its writers first, or use --force)"
                ),
            )
        }
        Found::Segment { live_writers, .. } => {
            format!(
                "removed {shown} (--force) while in use (live writer slots: {live_writers}): their later \
                 updates are lost"
            )
        }
        Found::OtherVersion { found, expected } if !args.force => {
            return refuse(
                Refusal::OtherVersion,
                format!(
                    "{shown} is a coordmetrics segment of layout version {found} (this program reads version \
                     {expected}), whose writers it cannot check: not removed without --force"
                ),
            )
        }
        Found::OtherVersion { found, .. } => {
            format!("removed {shown} (--force), a coordmetrics segment of layout version {found}")
        }
        Found::Damaged(why) if !args.force => {
            return refuse(
                Refusal::Damaged,
                format!(
                    "{shown} is a damaged coordmetrics segment ({why}), whose writers cannot be checked: \
                     not removed without --force"
                ),
            )
        }
        Found::Damaged(why) => format!("removed {shown} (--force), a damaged coordmetrics segment ({why})"),
    };
    if file_identity(path)? != Some(identity) {
        anyhow::bail!("{shown} changed while it was examined: nothing removed");
    }
    std::fs::remove_file(path).with_context(|| format!("cannot remove {shown}"))?;
    println!("{removed}");
    Ok(())
}

/// A file's device and inode.
type Identity = (u64, u64);

/// What is at `path` and which file it is, or `None` if nothing is there.
fn examine(path: &Path) -> anyhow::Result<Option<(Found, Identity)>> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("cannot examine {}", path.display())),
    };
    let identity = (metadata.dev(), metadata.ino());
    if !metadata.file_type().is_file() {
        let what = format!("it is {}", coordmetrics::describe_file_type(metadata.file_type()));
        return Ok(Some((Found::NotASegment(what), identity)));
    }
    // Identify, do not wait: a creator still initialising gets the damaged verdict.
    let options =
        SegmentOptions { open_timeout: Duration::ZERO, owners: OwnerPolicy::Any, ..SegmentOptions::default() };
    let found = match SegmentReader::open(path, &options) {
        Ok(reader) => {
            Found::Segment { version: reader.info().layout_version, live_writers: reader.snapshot().live_writers() }
        }
        Err(OpenError::VersionMismatch { found, expected, .. }) => Found::OtherVersion { found, expected },
        Err(OpenError::NotFound(_)) => return Ok(None),
        Err(error @ OpenError::Io { .. }) => {
            return Err(error).with_context(|| format!("cannot examine {}: nothing removed", path.display()))
        }
        Err(error) => match leading_magic(path, metadata.len())? {
            Ok(()) => Found::Damaged(damage(&error)),
            Err(what) => Found::NotASegment(what),
        },
    };
    Ok(Some((found, identity)))
}

/// Whether the regular file at `path` starts with the coordmetrics magic; if not, what it
/// starts with instead.
fn leading_magic(path: &Path, len: u64) -> anyhow::Result<Result<(), String>> {
    if len == 0 {
        return Ok(Err("it is empty".into()));
    }
    // O_NONBLOCK: should a FIFO have replaced the file since it was looked at, the open does
    // not wait for a writer.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("cannot examine {}", path.display()))?;
    let mut first = [0u8; 8];
    let mut read = 0;
    while read < first.len() {
        match file.read(&mut first[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
        }
    }
    // The creator stores the magic as a native-endian u64, as the reader loads it.
    Ok(match u64::from_ne_bytes(first) {
        _ if read < first.len() => Err(format!("it is {read} bytes long")),
        coordmetrics_proto::MAGIC => Ok(()),
        0 => Err("it starts with zeros, not the coordmetrics magic".into()),
        _ => Err("it does not start with the coordmetrics magic".into()),
    })
}

/// What is wrong with a segment that has the magic, without the error's path and advice.
fn damage(error: &OpenError) -> String {
    match error {
        OpenError::Truncated { size, expected, .. } => format!("truncated: {size} bytes, expected {expected}"),
        OpenError::Uninitialised(_) => "not initialised: its creator died or is still starting".into(),
        OpenError::Corrupt { what, .. } => format!("corrupt: {what}"),
        OpenError::Untrusted { why, .. } => format!("untrusted: {why}"),
        other => other.to_string(),
    }
}

/// The identity of the regular file at `path`, `None` if there is none.
fn file_identity(path: &Path) -> anyhow::Result<Option<Identity>> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_file() => Ok(Some((metadata.dev(), metadata.ino()))),
        Ok(_) => Ok(None),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot examine {}", path.display())),
    }
}
