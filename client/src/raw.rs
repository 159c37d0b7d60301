//! All the unsafe code of coordmetrics: the shared mapping, atomic access into it, the
//! allocation of the file's blocks and the fork hook.
//!
//! The rest of the crate sees a [`Mapping`] that hands out `&AtomicU64`/`&AtomicU32` for
//! in-bounds, aligned offsets and nothing else: no `&[u8]` or `&T` into memory that other
//! processes write ever exists, because another process's plain write racing with a Rust
//! reference would be undefined behaviour. Every access is an atomic operation on an aligned
//! word; the memory model arguments of each protocol live next to the protocol (`names.rs`,
//! `writers.rs`, `ring.rs`).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Once;

use crate::sync::{AtomicU32, AtomicU64};

/// A read-write view of a whole segment: normally a `MAP_SHARED` mapping of its file.
#[derive(Debug)]
pub(crate) struct Mapping {
    storage: Storage,
    len: usize,
    /// `len - 7` (0 if smaller): an offset below it has 8 bytes of mapping from it on, so
    /// the hot path's bounds check is one compare with a stored value.
    u64_end: usize,
    /// `len - 3` (0 if smaller), the same for 4 bytes.
    u32_end: usize,
}

#[derive(Debug)]
enum Storage {
    /// The segment file, mapped shared: what every real process uses.
    #[cfg(not(loom))]
    File(memmap2::MmapRaw),
    /// Process-private words with the same layout, for unit tests under Miri, which cannot
    /// map files.
    #[cfg(all(test, not(loom)))]
    Heap(Box<[AtomicU64]>),
    /// loom's atomics cannot live in foreign memory: one model atomic per word, with the 64-
    /// and 32-bit views kept apart (every modelled protocol accesses a location with one width).
    #[cfg(loom)]
    Model { words: Box<[AtomicU64]>, halves: Box<[AtomicU32]> },
}

/// Where an out-of-range access lands instead of faulting: the offsets used by the crate are
/// derived from a validated layout, so this is only a seatbelt that keeps a logic error from
/// becoming memory corruption or a crash of the host program.
#[cfg(not(loom))]
static OUT_OF_RANGE_U64: AtomicU64 = AtomicU64::new(0);
#[cfg(not(loom))]
static OUT_OF_RANGE_U32: AtomicU32 = AtomicU32::new(0);

impl Mapping {
    /// Maps the first `len` bytes of `file`, shared and read-write.
    #[cfg(not(loom))]
    pub(crate) fn new(file: &File, len: usize) -> io::Result<Self> {
        let map = memmap2::MmapOptions::new().len(len).map_raw(file)?;
        Ok(Self::with_storage(Storage::File(map), len))
    }

    /// Under loom there are no files: segments are [`Mapping::anonymous`].
    #[cfg(loom)]
    pub(crate) fn new(_file: &File, _len: usize) -> io::Result<Self> {
        Err(io::Error::other("files are not mapped under loom"))
    }

    /// A zeroed, process-private segment of `len` bytes (a multiple of 8).
    #[cfg(any(test, loom))]
    pub(crate) fn anonymous(len: usize) -> Self {
        let words = (0..len / 8).map(|_| AtomicU64::new(0)).collect();
        #[cfg(not(loom))]
        let storage = Storage::Heap(words);
        #[cfg(loom)]
        let storage = Storage::Model { words, halves: (0..len / 4).map(|_| AtomicU32::new(0)).collect() };
        Self::with_storage(storage, len)
    }

    fn with_storage(storage: Storage, len: usize) -> Self {
        Self { storage, len, u64_end: len.saturating_sub(7), u32_end: len.saturating_sub(3) }
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first byte, for `from_ptr`.
    #[cfg(not(loom))]
    fn base(&self) -> *mut u8 {
        match &self.storage {
            Storage::File(map) => map.as_mut_ptr(),
            // Atomics have interior mutability: writing through a pointer derived from a
            // shared reference to them is allowed.
            #[cfg(test)]
            Storage::Heap(words) => words.as_ptr().cast::<u8>().cast_mut(),
        }
    }

    /// The 64-bit atomic at byte `offset`, a multiple of 8.
    #[inline]
    pub(crate) fn u64_at(&self, offset: usize) -> &AtomicU64 {
        #[cfg(loom)]
        {
            assert!(offset % 8 == 0 && offset < self.u64_end, "u64 access at {offset}");
            let Storage::Model { words, .. } = &self.storage;
            &words[offset / 8]
        }
        #[cfg(not(loom))]
        {
            if offset >= self.u64_end {
                return self.out_of_range(offset, &OUT_OF_RANGE_U64);
            }
            debug_assert!(offset % 8 == 0, "misaligned u64 access at {offset}");
            // Offsets come from the layout, whose fields are all aligned: a misaligned one is a
            // logic error (caught by the assertion above), rounded down to its word here.
            let offset = offset & !7;
            // SAFETY:
            // - `offset + 8 <= len` was checked above (rounding down only lowers it), so the 8
            //   bytes lie inside the mapping (or heap block), which lives as long as `self`
            //   (the returned reference borrows it);
            // - the base is page-aligned (mapping) or 8-aligned (heap words) and `offset` is a
            //   multiple of 8, so the pointer is aligned for `AtomicU64`;
            // - the memory is readable and writable, and every process that maps the segment
            //   reaches these bytes only through atomic operations, never plain reads or writes
            //   (`AtomicU64::from_ptr`'s requirement).
            unsafe { AtomicU64::from_ptr(self.base().add(offset).cast::<u64>()) }
        }
    }

    /// Where an out-of-range access lands; out of line, to keep the accessors small.
    #[cfg(not(loom))]
    #[cold]
    #[inline(never)]
    fn out_of_range<T>(&self, offset: usize, seatbelt: &'static T) -> &'static T {
        debug_assert!(false, "access at {offset} outside a {} byte mapping", self.len);
        seatbelt
    }

    /// The 32-bit atomic at byte `offset`, a multiple of 4.
    #[inline]
    pub(crate) fn u32_at(&self, offset: usize) -> &AtomicU32 {
        #[cfg(loom)]
        {
            assert!(offset % 4 == 0 && offset < self.u32_end, "u32 access at {offset}");
            let Storage::Model { halves, .. } = &self.storage;
            &halves[offset / 4]
        }
        #[cfg(not(loom))]
        {
            if offset >= self.u32_end {
                return self.out_of_range(offset, &OUT_OF_RANGE_U32);
            }
            debug_assert!(offset % 4 == 0, "misaligned u32 access at {offset}");
            let offset = offset & !3;
            // SAFETY: as in `u64_at`, with 4 bytes and 4-byte alignment.
            unsafe { AtomicU32::from_ptr(self.base().add(offset).cast::<u32>()) }
        }
    }
}

/// Allocates the blocks of `file` up to `len` bytes, so that touching any page of the mapping
/// later can never raise SIGBUS because the file system (often a tmpfs) is full: the failure
/// happens here, at creation, as an error.
pub(crate) fn allocate(file: &File, len: usize) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY:
    // - `posix_fallocate` only reads its integer arguments; the descriptor is valid because
    //   `file` is borrowed for the duration of the call.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    match rc {
        0 => Ok(()),
        // Some file systems cannot preallocate: fall back to a plain (sparse) size.
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(len as u64),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// Incremented in every child right after a `fork()`: a binding to a writer slot records the
/// generation it was made in, and a thread claims a new slot when they differ, so that a
/// forked child never writes into its parent's slot.
static FORK_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    crate::binding::forget_recent();
}

/// Installs the fork hook; idempotent. Called whenever a segment is opened, before any slot
/// can be cached.
pub(crate) fn install_fork_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY:
        // - `after_fork_in_child` is a plain `extern "C"` function that only performs an atomic
        //   add and a store to a const-initialised thread-local without destructor, both
        //   async-signal-safe as required in a child of a multi-threaded fork; it cannot
        //   unwind;
        // - the prepare and parent handlers are null, which `pthread_atfork` allows.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        // Without the hook a forked child would share its parent's slot; there is nothing
        // better to do than to carry on, and fork-and-record is rare.
        debug_assert_eq!(rc, 0);
    });
}

/// The current fork generation (see [`FORK_GENERATION`]).
#[inline]
pub(crate) fn fork_generation() -> u64 {
    FORK_GENERATION.load(std::sync::atomic::Ordering::Relaxed)
}

/// Bytes per page, the unit of `/proc/PID/stat`'s resident set size.
pub(crate) fn page_size() -> u64 {
    // SAFETY:
    // - `sysconf` only reads its integer argument and has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// Clock ticks per second, the unit of `/proc/PID/stat` times.
pub(crate) fn clock_ticks_per_second() -> u64 {
    // SAFETY:
    // - `sysconf` only reads its integer argument and has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}
