//! Creating, opening and validating a segment file.
//!
//! Creation follows the iceoryx2 protocol: the creator makes the file with `O_EXCL` and mode
//! 0600 so nobody else can open it half-made, allocates its blocks, writes the header and every
//! table (a fresh file is zero, which is a valid empty table), release-stores the layout version
//! last and only then gives the file its final mode. An opener that finds the version still zero
//! waits, with a deadline, for the creator to finish.

use crate::sync::Ordering;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coordmetrics_proto::{histogram, Capacities, Header, Layout, LayoutError, HEADER_SIZE, LAYOUT_VERSION, MAGIC};
use coordmetrics_proto::{ERROR_MESSAGE_BYTES, NAME_BYTES};

use crate::raw::{self, Mapping};

/// Default path of the segment.
pub const DEFAULT_SEGMENT_PATH: &str = "/dev/shm/coordmetrics";
/// Environment variable naming the segment path.
pub const SEGMENT_ENV: &str = "COORDMETRICS_SEGMENT";

/// Which owners of an existing segment file are trusted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OwnerPolicy {
    /// This process's effective user, root, and the `coordmetrics` system user.
    #[default]
    Default,
    /// These user ids (root and this process's user are always trusted).
    Users(Vec<u32>),
    /// Any owner.
    Any,
}

/// How to create a segment that does not exist yet, and how to open one.
#[derive(Clone, Debug)]
pub struct SegmentOptions {
    /// Capacities of a segment this call creates (ignored when it already exists).
    pub capacities: Capacities,
    /// Final permission bits of a created segment; never world-writable (0o002 is cleared).
    pub mode: u32,
    /// Group given to a created segment.
    pub group: Option<u32>,
    /// How long to wait for another process to finish creating the segment.
    pub open_timeout: Duration,
    /// Which owners of an existing segment are accepted.
    pub owners: OwnerPolicy,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self {
            capacities: Capacities::default(),
            mode: 0o660,
            group: None,
            open_timeout: Duration::from_secs(2),
            owners: OwnerPolicy::Default,
        }
    }
}

/// Why a segment could not be opened or created.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// An I/O error, with the path.
    #[error("failed to open segment {path}: {source}")]
    Io {
        /// The segment path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// No file at the path (and creation was not asked for).
    #[error("segment {0} does not exist: start a coordinator process or `coordmetrics run --create`")]
    NotFound(PathBuf),
    /// The path is a symbolic link, which is refused.
    #[error("segment {0} is a symbolic link, which is refused")]
    Symlink(PathBuf),
    /// The file does not start with the coordmetrics magic.
    #[error("{path} is not a coordmetrics segment (magic {found:#018x}): check the path")]
    BadMagic {
        /// The segment path.
        path: PathBuf,
        /// The first eight bytes.
        found: u64,
    },
    /// The file was written by another version of the layout.
    #[error("segment {path} has layout version {found}, this program reads version {expected}: upgrade the older side or remove the segment with `coordmetrics cleanup`")]
    VersionMismatch {
        /// The segment path.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version of this program.
        expected: u32,
    },
    /// The file is shorter than its header says.
    #[error("segment {path} is truncated: {size} bytes, expected {expected}; remove it with `coordmetrics cleanup`")]
    Truncated {
        /// The segment path.
        path: PathBuf,
        /// Actual size.
        size: u64,
        /// Size the header (or the header's own size) requires.
        expected: u64,
    },
    /// The creator never finished initialising the segment.
    #[error(
        "segment {0} is not initialised (its creator died or is still starting); remove it with `coordmetrics cleanup`"
    )]
    Uninitialised(PathBuf),
    /// A header field is inconsistent.
    #[error("segment {path} is corrupt: {what}; remove it with `coordmetrics cleanup`")]
    Corrupt {
        /// The segment path.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The file is owned by an untrusted user, or writable by everyone.
    #[error("segment {path} is refused: {why}")]
    Untrusted {
        /// The segment path.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The requested capacities are invalid.
    #[error("cannot create segment {path}: {source}")]
    Layout {
        /// The segment path.
        path: PathBuf,
        /// The layout error.
        #[source]
        source: LayoutError,
    },
}

/// What the immutable part of a validated header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment path.
    pub path: PathBuf,
    /// Layout version.
    pub layout_version: u32,
    /// Random id (a new id means the segment was recreated).
    pub segment_id: u64,
    /// Creation time.
    pub created: SystemTime,
    /// Capacities.
    pub capacities: Capacities,
    /// Size in bytes.
    pub size: u64,
}

/// A mapped, validated segment.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) mapping: Mapping,
    pub(crate) layout: Layout,
    pub(crate) info: SegmentInfo,
}

impl Segment {
    /// Opens the segment at `path`, creating it when `create` is set and it does not exist.
    pub(crate) fn open(path: &Path, options: &SegmentOptions, create: bool) -> Result<Self, OpenError> {
        raw::install_fork_hook();
        if create {
            match Self::create(path, options) {
                Ok(segment) => return Ok(segment),
                Err(OpenError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {}
                Err(other) => return Err(other),
            }
        }
        Self::open_existing(path, options)
    }

    fn create(path: &Path, options: &SegmentOptions) -> Result<Self, OpenError> {
        let io_error = |source| OpenError::Io { path: path.to_owned(), source };
        let layout =
            Layout::new(options.capacities).map_err(|source| OpenError::Layout { path: path.to_owned(), source })?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(io_error)?;
        let initialised = (|| {
            raw::allocate(&file, layout.total_size())?;
            let mapping = Mapping::new(&file, layout.total_size())?;
            let created_unix_ns = unix_nanos(SystemTime::now());
            write_header(&mapping, &layout.header(random_id()?, created_unix_ns));
            // Publishing the version last, with release ordering, makes every store above
            // visible to an opener that acquire-loads a non-zero version.
            mapping.u32_at(core::mem::offset_of!(Header, layout_version)).store(LAYOUT_VERSION, Ordering::Release);
            if let Some(gid) = options.group {
                std::os::unix::fs::fchown(&file, None, Some(gid))?;
            }
            file.set_permissions(std::fs::Permissions::from_mode(options.mode & 0o775))?;
            Ok(mapping)
        })();
        match initialised {
            Ok(mapping) => {
                let info = read_info(&mapping, path)?;
                Ok(Self { mapping, layout, info })
            }
            Err(source) => {
                // Leave no half-made file behind for others to wait on.
                let _ = std::fs::remove_file(path);
                Err(io_error(source))
            }
        }
    }

    fn open_existing(path: &Path, options: &SegmentOptions) -> Result<Self, OpenError> {
        let deadline = Instant::now() + options.open_timeout;
        loop {
            match Self::try_open_existing(path, options) {
                Err(error @ (OpenError::Uninitialised(_) | OpenError::Truncated { .. })) => {
                    if Instant::now() >= deadline {
                        return Err(error);
                    }
                }
                Err(OpenError::Io { source, .. })
                    if source.kind() == io::ErrorKind::PermissionDenied && Instant::now() < deadline =>
                {
                    // The creator sets the final mode only after initialising: wait for it.
                }
                other => return other,
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn try_open_existing(path: &Path, options: &SegmentOptions) -> Result<Self, OpenError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => OpenError::NotFound(path.to_owned()),
                _ if source.raw_os_error() == Some(libc::ELOOP) => OpenError::Symlink(path.to_owned()),
                _ => OpenError::Io { path: path.to_owned(), source },
            })?;
        let metadata = file.metadata().map_err(|source| OpenError::Io { path: path.to_owned(), source })?;
        check_owner(path, &metadata, &options.owners)?;
        let size = metadata.len();
        if size < HEADER_SIZE as u64 {
            return Err(OpenError::Truncated { path: path.to_owned(), size, expected: HEADER_SIZE as u64 });
        }
        let size = usize::try_from(size).map_err(|_| OpenError::Corrupt {
            path: path.to_owned(),
            what: format!("size {size} does not fit in memory"),
        })?;
        let mapping = Mapping::new(&file, size).map_err(|source| OpenError::Io { path: path.to_owned(), source })?;
        let info = read_info(&mapping, path)?;
        let layout = Layout::new(info.capacities)
            .map_err(|error| OpenError::Corrupt { path: path.to_owned(), what: error.to_string() })?;
        Ok(Self { mapping, layout, info })
    }
}

/// Stores every field of `header` except the version, each with an atomic store of its own
/// width (the same width readers load it with). The rest of a new file is already zero.
fn write_header(mapping: &Mapping, header: &Header) {
    use core::mem::offset_of;
    let u64_fields = [
        (offset_of!(Header, magic), header.magic),
        (offset_of!(Header, total_size), header.total_size),
        (offset_of!(Header, segment_id), header.segment_id),
        (offset_of!(Header, created_unix_ns), header.created_unix_ns),
    ];
    for (offset, value) in u64_fields {
        mapping.u64_at(offset).store(value, Ordering::Relaxed);
    }
    let u32_fields = [
        (offset_of!(Header, header_size), header.header_size),
        (offset_of!(Header, coordinators), header.coordinators),
        (offset_of!(Header, events), header.events),
        (offset_of!(Header, writers), header.writers),
        (offset_of!(Header, errors), header.errors),
        (offset_of!(Header, histogram_schema), header.histogram_schema as u32),
        (offset_of!(Header, histogram_min_index), header.histogram_min_index as u32),
        (offset_of!(Header, histogram_buckets), header.histogram_buckets),
        (offset_of!(Header, name_bytes), header.name_bytes),
        (offset_of!(Header, message_bytes), header.message_bytes),
    ];
    for (offset, value) in u32_fields {
        mapping.u32_at(offset).store(value, Ordering::Relaxed);
    }
}

/// Reads and validates the header of a mapped segment.
fn read_info(mapping: &Mapping, path: &Path) -> Result<SegmentInfo, OpenError> {
    let u64_field = |offset: usize| mapping.u64_at(offset).load(Ordering::Relaxed);
    let u32_field = |offset: usize| mapping.u32_at(offset).load(Ordering::Relaxed);
    use core::mem::offset_of;
    let magic = u64_field(offset_of!(Header, magic));
    if magic == 0 {
        // The creator has sized the file (it reads as zeros) but not written the header yet:
        // the opener waits for it like for a zero version.
        return Err(OpenError::Uninitialised(path.to_owned()));
    }
    if magic != MAGIC {
        return Err(OpenError::BadMagic { path: path.to_owned(), found: magic });
    }
    // Acquire pairs with the creator's release store: every header field read below was
    // written before it.
    let version = mapping.u32_at(offset_of!(Header, layout_version)).load(Ordering::Acquire);
    if version == 0 {
        return Err(OpenError::Uninitialised(path.to_owned()));
    }
    if version != LAYOUT_VERSION {
        return Err(OpenError::VersionMismatch { path: path.to_owned(), found: version, expected: LAYOUT_VERSION });
    }
    let corrupt = |what: String| OpenError::Corrupt { path: path.to_owned(), what };
    let expect = |name: &str, found: u64, expected: u64| {
        if found == expected {
            Ok(())
        } else {
            Err(corrupt(format!("{name} is {found}, expected {expected}")))
        }
    };
    expect("header size", u32_field(offset_of!(Header, header_size)).into(), HEADER_SIZE as u64)?;
    expect(
        "histogram schema",
        u32_field(offset_of!(Header, histogram_schema)).into(),
        histogram::SCHEMA as u32 as u64,
    )?;
    expect(
        "histogram minimum index",
        u32_field(offset_of!(Header, histogram_min_index)).into(),
        histogram::MIN_INDEX as u32 as u64,
    )?;
    expect("histogram buckets", u32_field(offset_of!(Header, histogram_buckets)).into(), histogram::BUCKETS as u64)?;
    expect("name size", u32_field(offset_of!(Header, name_bytes)).into(), NAME_BYTES as u64)?;
    expect("message size", u32_field(offset_of!(Header, message_bytes)).into(), ERROR_MESSAGE_BYTES as u64)?;
    let capacities = Capacities {
        coordinators: u32_field(offset_of!(Header, coordinators)),
        events: u32_field(offset_of!(Header, events)),
        writers: u32_field(offset_of!(Header, writers)),
        errors: u32_field(offset_of!(Header, errors)),
    };
    let layout = Layout::new(capacities).map_err(|error| corrupt(error.to_string()))?;
    let total_size = u64_field(offset_of!(Header, total_size));
    expect("total size", total_size, layout.total_size() as u64)?;
    if (mapping.len() as u64) < total_size {
        return Err(OpenError::Truncated { path: path.to_owned(), size: mapping.len() as u64, expected: total_size });
    }
    let created_unix_ns = u64_field(offset_of!(Header, created_unix_ns));
    Ok(SegmentInfo {
        path: path.to_owned(),
        layout_version: version,
        segment_id: u64_field(offset_of!(Header, segment_id)),
        created: UNIX_EPOCH + Duration::from_nanos(created_unix_ns),
        capacities,
        size: total_size,
    })
}

fn check_owner(path: &Path, metadata: &std::fs::Metadata, policy: &OwnerPolicy) -> Result<(), OpenError> {
    let untrusted = |why: String| Err(OpenError::Untrusted { path: path.to_owned(), why });
    if metadata.mode() & 0o002 != 0 {
        return untrusted("it is writable by every user".into());
    }
    let owner = metadata.uid();
    let me = effective_uid();
    let trusted = match policy {
        OwnerPolicy::Any => true,
        OwnerPolicy::Default => owner == 0 || owner == me || Some(owner) == system_user_uid("coordmetrics"),
        OwnerPolicy::Users(users) => owner == 0 || owner == me || users.contains(&owner),
    };
    if trusted {
        Ok(())
    } else {
        untrusted(format!("it is owned by uid {owner}, which is not trusted (see the trusted owners option)"))
    }
}

fn effective_uid() -> u32 {
    // The owner of a file this process creates is its effective uid; /proc/self is owned by it.
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX)
}

/// The uid of a user from /etc/passwd.
pub fn system_user_uid(name: &str) -> Option<u32> {
    passwd_field(name, 2)
}

/// The primary gid of a user, or the gid of a group, from /etc/passwd and /etc/group.
pub fn group_gid(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some(name)).then(|| fields.nth(1)?.parse().ok()).flatten()
    })
}

fn passwd_field(name: &str, index: usize) -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name)).then(|| fields.get(index)?.parse().ok()).flatten()
    })
}

fn random_id() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    // Zero is reserved for "no segment".
    Ok(u64::from_le_bytes(bytes).max(1))
}

/// Nanoseconds since the Unix epoch (0 before it).
pub(crate) fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos().min(u64::MAX as u128) as u64)
}

/// Removes the segment file at `path` (a symbolic link is refused, not followed).
///
/// # Errors
/// The file does not exist, is a symbolic link or cannot be removed.
pub fn remove_segment(path: impl AsRef<Path>) -> Result<(), OpenError> {
    let path = path.as_ref();
    let metadata = std::fs::symlink_metadata(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => OpenError::NotFound(path.to_owned()),
        _ => OpenError::Io { path: path.to_owned(), source },
    })?;
    if metadata.file_type().is_symlink() {
        return Err(OpenError::Symlink(path.to_owned()));
    }
    std::fs::remove_file(path).map_err(|source| OpenError::Io { path: path.to_owned(), source })
}
