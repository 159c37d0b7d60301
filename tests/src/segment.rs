//! Private segments for tests: one per test, in its own temporary directory, never the
//! system-wide `/dev/shm/coordmetrics`.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use coordmetrics::{Capacities, Collector, CoordinatorTotals, SegmentOptions, SegmentReader, Snapshot};

/// A segment path in a temporary directory that is removed when this is dropped.
#[derive(Debug)]
pub struct TempSegment {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl TempSegment {
    /// A path where no segment exists yet.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("segment");
        Self { dir, path }
    }

    /// The segment path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary directory holding it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A collector on this segment, creating it with `capacities` if it does not exist yet.
    pub fn collector(&self, capacities: Capacities) -> Collector {
        Collector::open_with(&self.path, &options(capacities, Duration::from_secs(5)))
            .unwrap_or_else(|error| panic!("opening the test segment: {error}"))
    }

    /// Reads every counter through a fresh read-only [`SegmentReader`], as the exporter does.
    pub fn snapshot(&self) -> Snapshot {
        SegmentReader::open(&self.path, &SegmentOptions::default())
            .unwrap_or_else(|error| panic!("opening the test segment: {error}"))
            .snapshot()
    }
}

impl Default for TempSegment {
    fn default() -> Self {
        Self::new()
    }
}

/// The totals of coordinator `name` in `snapshot`; panics if it is not there.
#[track_caller]
pub fn coordinator_totals<'a>(snapshot: &'a Snapshot, name: &str) -> &'a CoordinatorTotals {
    snapshot.coordinators.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("{name} missing from the snapshot"))
}

/// Capacities in the order of the header: coordinators, events, writers, errors.
pub fn capacities(coordinators: u32, events: u32, writers: u32, errors: u32) -> Capacities {
    Capacities { coordinators, events, writers, errors }
}

/// Options that create a segment with `capacities`, waiting at most `open_timeout` for a
/// segment that another process is still creating.
pub fn options(capacities: Capacities, open_timeout: Duration) -> SegmentOptions {
    SegmentOptions { capacities, open_timeout, ..SegmentOptions::default() }
}

/// Capacities as the `cm-writer` command line takes them: `coordinators,events,writers,errors`.
pub fn capacities_arg(capacities: &Capacities) -> String {
    format!("{},{},{},{}", capacities.coordinators, capacities.events, capacities.writers, capacities.errors)
}

/// The inverse of [`capacities_arg`].
pub fn parse_capacities(text: &str) -> Option<Capacities> {
    let numbers: Vec<u32> = text.split(',').map(str::parse).collect::<Result<_, _>>().ok()?;
    match numbers[..] {
        [coordinators, events, writers, errors] => Some(capacities(coordinators, events, writers, errors)),
        _ => None,
    }
}

/// Overwrites the bytes at `offset` of the file at `path`, as a corrupting process would.
pub fn patch(path: &Path, offset: usize, bytes: &[u8]) {
    let mut file = OpenOptions::new().write(true).open(path).expect("open segment to patch");
    file.seek(SeekFrom::Start(offset as u64)).expect("seek");
    file.write_all(bytes).expect("patch");
}

/// A tmpfs of a given size mounted on a temporary directory (as Docker's default `/dev/shm` or
/// a Kubernetes `emptyDir` with `medium: Memory` and a `sizeLimit`), unmounted when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it, e.g. `16m`); `None` if mounting
    /// is not allowed here (not root). Under `CI=true` that is a failure, not a skip.
    pub fn mount(size: &str, test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !mounted {
            crate::process::skip_unless_ci(test, "mounting a tmpfs");
            return None;
        }
        Some(Self { dir })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("--lazy").arg(self.dir.path()).status();
    }
}

/// Bytes of storage a file really takes (its allocated blocks), as `du` counts them: a sparse
/// segment's untouched pool costs nothing.
pub fn allocated_bytes(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(path).expect("file to measure")) * 512
}
