//! Creating, opening and validating a segment file.
//!
//! Creation follows the iceoryx2 protocol: the creator makes the file with `O_EXCL` and mode
//! 0600 so nobody else can open it half-made, sizes it (sparse: the block pool is allocated a
//! block at a time, see `pool.rs`), allocates every table before the pool, writes the header (a
//! fresh file is zero, which is a valid empty table), release-stores the layout version last
//! and only then gives the file its final mode. An opener that finds the version still zero
//! waits, with a deadline, for the creator to finish; a file too short or uninitialised that
//! nobody has touched for a while is refused at once.

use crate::sync::Ordering;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coordmetrics_proto::{histogram, Capacities, Header, Layout, LayoutError, HEADER_SIZE, LAYOUT_VERSION, MAGIC};
use coordmetrics_proto::{BLOCK_SIZE, ERROR_MESSAGE_BYTES, NAME_BYTES};

use crate::liveness::Locks;
use crate::raw::{self, Mapping};
use crate::view::HeaderRef;

/// How recently a short or uninitialised file must have changed for an opener to wait for its
/// creator: creating a segment takes milliseconds, so an older one is left over, not in making.
const CREATION_GRACE: Duration = Duration::from_secs(1);

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
    /// The path names something other than a regular file (a directory, FIFO, device, socket).
    #[error("segment {path} is {kind}, not a regular file: check the path")]
    NotRegularFile {
        /// The segment path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// The segment was truncated or removed under this process, which then stopped using it.
    #[error("segment {0} was truncated or removed while in use; it is read again once recreated")]
    Lost(PathBuf),
    /// The file does not start with the coordmetrics magic.
    #[error("{path} is not a coordmetrics segment (magic {found:#018x}): check the path")]
    BadMagic {
        /// The segment path.
        path: PathBuf,
        /// The first eight bytes.
        found: u64,
    },
    /// The file was written by another version of the layout.
    #[error("segment {path} has layout version {found}, this program reads version {expected}: stop the processes that write it, remove it with `coordmetrics cleanup --force {path}` and restart them (the exporter recreates it), or upgrade the older side")]
    VersionMismatch {
        /// The segment path.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version of this program.
        expected: u32,
    },
    /// The file is shorter than its header says.
    #[error(
        "segment {path} is truncated: {size} bytes, expected {expected}; remove it with `coordmetrics cleanup --force`"
    )]
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
        "segment {0} is not initialised (its creator died or is still starting); remove it with `coordmetrics cleanup --force`"
    )]
    Uninitialised(PathBuf),
    /// A header field is inconsistent.
    #[error("segment {path} is corrupt: {what}; remove it with `coordmetrics cleanup --force`")]
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
    /// The file, open read-write: blocks of the pool are allocated through it.
    pub(crate) file: File,
    /// Locks of the file's first open file description, which never takes any: through it a
    /// reader sees every other description's locks, its own process's collectors' included.
    pub(crate) probe: Locks,
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
            file.set_len(layout.total_size() as u64)?;
            raw::allocate(&file, 0, layout.fixed_size())?;
            let mapping = Mapping::new(&file, layout.total_size())?;
            let created_unix_ns = unix_nanos(SystemTime::now());
            write_header(&mapping, &layout.header(random_id()?, created_unix_ns));
            // Publishing the version last, with release ordering, makes every store above
            // visible to an opener that acquire-loads a non-zero version.
            HeaderRef::at(&mapping, 0).layout_version().store(LAYOUT_VERSION, Ordering::Release);
            if let Some(gid) = options.group {
                std::os::unix::fs::fchown(&file, None, Some(gid))?;
            }
            file.set_permissions(std::fs::Permissions::from_mode(options.mode & 0o775))?;
            Ok(mapping)
        })();
        match initialised {
            Ok(mapping) => Self::assemble(path, mapping, layout, file),
            Err(source) => {
                // Leave no half-made file behind for others to wait on.
                let _ = std::fs::remove_file(path);
                Err(io_error(source))
            }
        }
    }

    fn assemble(path: &Path, mapping: Mapping, layout: Layout, file: File) -> Result<Self, OpenError> {
        let info = read_info(&mapping, path)?;
        let probe = file.try_clone().and_then(Locks::open_probe);
        let probe = probe.map_err(|source| OpenError::Io { path: path.to_owned(), source })?;
        Ok(Self { mapping, layout, info, file, probe })
    }

    /// A new set of locks of its own on this segment (a new open file description).
    pub(crate) fn new_locks(&self) -> io::Result<Locks> {
        Locks::open(&self.file)
    }

    /// Whether the file was shrunk below the layout's size or removed: using it any further
    /// would fault or write into a file nobody reads.
    pub(crate) fn file_is_gone(&self) -> bool {
        match raw::file_size_and_links(std::os::fd::AsRawFd::as_raw_fd(&self.file)) {
            Ok((size, links)) => size < self.info.size || links == 0,
            Err(_) => false,
        }
    }

    fn open_existing(path: &Path, options: &SegmentOptions) -> Result<Self, OpenError> {
        let deadline = Instant::now() + options.open_timeout;
        loop {
            match Self::try_open_existing(path, options) {
                Err(error @ (OpenError::Uninitialised(_) | OpenError::Truncated { .. })) => {
                    if Instant::now() >= deadline || !recently_changed(path) {
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
        // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => OpenError::NotFound(path.to_owned()),
                _ if source.raw_os_error() == Some(libc::ELOOP) => OpenError::Symlink(path.to_owned()),
                _ if source.raw_os_error() == Some(libc::EISDIR) => {
                    OpenError::NotRegularFile { path: path.to_owned(), kind: "a directory" }
                }
                _ => OpenError::Io { path: path.to_owned(), source },
            })?;
        let metadata = file.metadata().map_err(|source| OpenError::Io { path: path.to_owned(), source })?;
        if !metadata.is_file() {
            return Err(OpenError::NotRegularFile {
                path: path.to_owned(),
                kind: describe_file_type(metadata.file_type()),
            });
        }
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
        Self::assemble(path, mapping, layout, file)
    }
}

/// Whether the file at `path` changed within [`CREATION_GRACE`]: a creator may still be
/// working on it.
fn recently_changed(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .map(|metadata| {
            let changed = UNIX_EPOCH
                + Duration::new(metadata.ctime().max(0) as u64, metadata.ctime_nsec().clamp(0, 999_999_999) as u32);
            SystemTime::now().duration_since(changed).map_or(true, |age| age < CREATION_GRACE)
        })
        .unwrap_or(false)
}

/// How a kind of file is named in messages ("a FIFO").
pub fn describe_file_type(kind: std::fs::FileType) -> &'static str {
    use std::fs::FileType;
    use std::os::unix::fs::FileTypeExt;
    type Test = fn(&FileType) -> bool;
    const KINDS: [(Test, &str); 7] = [
        (FileType::is_file, "a regular file"),
        (FileType::is_symlink, "a symbolic link"),
        (FileType::is_dir, "a directory"),
        (FileType::is_fifo, "a FIFO"),
        (FileType::is_socket, "a socket"),
        (FileType::is_char_device, "a character device"),
        (FileType::is_block_device, "a block device"),
    ];
    KINDS.iter().find(|(is, _)| is(&kind)).map_or("a special file", |(_, name)| name)
}

/// Stores every word of `header` with an atomic store; the version is still zero in it and is
/// published afterwards. Nobody else can open the file yet (it is 0600 and its creator's).
fn write_header(mapping: &Mapping, header: &Header) {
    for (index, word) in crate::view::words_of(bytemuck::bytes_of(header)).enumerate() {
        mapping.u64_at(index * 8).store(word, Ordering::Relaxed);
    }
}

/// Reads and validates the header of a mapped segment.
fn read_info(mapping: &Mapping, path: &Path) -> Result<SegmentInfo, OpenError> {
    let header = HeaderRef::at(mapping, 0);
    let magic = header.magic().load(Ordering::Relaxed);
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
    let version = header.layout_version().load(Ordering::Acquire);
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
    let u32_field = |field: &crate::sync::AtomicU32| u64::from(field.load(Ordering::Relaxed));
    expect("header size", u32_field(header.header_size()), HEADER_SIZE as u64)?;
    expect("histogram schema", u32_field(header.histogram_schema()), u64::from(histogram::SCHEMA as u32))?;
    expect("histogram minimum index", u32_field(header.histogram_min_index()), u64::from(histogram::MIN_INDEX as u32))?;
    expect("histogram buckets", u32_field(header.histogram_buckets()), histogram::BUCKETS as u64)?;
    expect("name size", u32_field(header.name_bytes()), NAME_BYTES as u64)?;
    expect("message size", u32_field(header.message_bytes()), ERROR_MESSAGE_BYTES as u64)?;
    expect("block size", u32_field(header.block_size()), BLOCK_SIZE as u64)?;
    let capacities = Capacities {
        coordinators: header.coordinators().load(Ordering::Relaxed),
        events: header.events().load(Ordering::Relaxed),
        writers: header.writers().load(Ordering::Relaxed),
        errors: header.errors().load(Ordering::Relaxed),
    };
    let layout = Layout::new(capacities).map_err(|error| corrupt(error.to_string()))?;
    expect("block pool", u32_field(header.blocks()), u64::from(layout.blocks()))?;
    let total_size = header.total_size().load(Ordering::Relaxed);
    expect("total size", total_size, layout.total_size() as u64)?;
    if (mapping.len() as u64) < total_size {
        return Err(OpenError::Truncated { path: path.to_owned(), size: mapping.len() as u64, expected: total_size });
    }
    let created_unix_ns = header.created_unix_ns().load(Ordering::Relaxed);
    Ok(SegmentInfo {
        path: path.to_owned(),
        layout_version: version,
        segment_id: header.segment_id().load(Ordering::Relaxed),
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
    let me = crate::raw::effective_uid();
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

/// A random non-zero 64-bit id, from `/dev/urandom`.
pub(crate) fn random_id() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    // Zero is reserved: "no segment", "no process".
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
