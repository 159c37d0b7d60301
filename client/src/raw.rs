//! All the unsafe code of coordmetrics: the shared mapping, atomic access into it, the
//! allocation of the file's blocks, the kernel's byte locks, the fork hook and the SIGBUS
//! guard that keeps a truncated segment from killing its host.
//!
//! The rest of the crate sees a [`Mapping`] that hands out `&AtomicU64`/`&AtomicU32` for
//! in-bounds, aligned offsets, directly or through a [`Window`] onto one of its structs
//! (checked once, so that the hot path's field accesses need no check of their own, and kept
//! across calls as a [`KeptWindow`]), and nothing else: no `&[u8]` or `&T` into memory that other
//! processes write ever exists, because another process's plain write racing with a Rust
//! reference would be undefined behaviour. Every access is an atomic operation on an aligned
//! word; the memory model arguments of each protocol live next to the protocol (`names.rs`,
//! `writers.rs`, `pool.rs`, `ring.rs`).
//!
//! # A truncated segment
//!
//! A file mapped `MAP_SHARED` that somebody shrinks (`truncate -s 0`, `: > segment`) raises
//! SIGBUS on the next access past its new end, and SIGBUS kills. Every file mapping is
//! registered (start, length) in a fixed table that a SIGBUS handler reads: a fault inside a
//! registered mapping replaces the whole mapping with private zero pages of the same size
//! (`mmap` with `MAP_FIXED`), marks it lost and returns, so the faulting instruction runs again
//! on the zero page. Nothing written there reaches anybody; the collector sees the segment lost
//! and counts what follows as dropped, the exporter discards the snapshot it was taking. A fault
//! anywhere else goes to the handler that was installed before ours (Rust's stack-overflow
//! handler, Python's faulthandler, ...) or, if there was none, to the default action.

use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize};
use std::sync::Once;

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Declares [`Mapping`]'s accessor of one atomic width.
macro_rules! mapping_accessor {
    ($(#[$doc:meta])* $name:ident -> $atomic:ident of $int:ty, checked by $end:ident, modelled by $model:ident,
     else $seatbelt:ident) => {
        $(#[$doc])*
        #[inline]
        pub(crate) fn $name(&self, offset: usize) -> &$atomic {
            const SIZE: usize = size_of::<$int>();
            #[cfg(loom)]
            {
                assert!(offset % SIZE == 0 && offset < self.$end, "access at {offset}");
                let Storage::Model { $model, .. } = &self.storage;
                &$model[offset / SIZE]
            }
            #[cfg(not(loom))]
            {
                if offset >= self.$end {
                    return self.out_of_range(offset, &$seatbelt);
                }
                debug_assert!(offset % SIZE == 0, "misaligned access at {offset}");
                // Offsets come from the layout, whose fields are all aligned: a misaligned one
                // is a logic error (caught by the assertion above), rounded down here.
                let offset = offset & !(SIZE - 1);
                // SAFETY:
                // - `offset + SIZE <= len` was checked above (`$end` is `len - SIZE + 1`;
                //   rounding down only lowers it), so the bytes lie inside the mapping (or heap
                //   block), which lives as long as `self` (the returned reference borrows it);
                //   the SIGBUS guard may replace the pages under it, never unmap them;
                // - the base is page-aligned (mapping) or 8-aligned (heap words) and `offset`
                //   is a multiple of SIZE, so the pointer is aligned for the atomic;
                // - the memory is readable and writable, and every process that maps the
                //   segment reaches these bytes only through atomic operations, never plain
                //   reads or writes (`from_ptr`'s requirement).
                unsafe { $atomic::from_ptr(self.base().add(offset).cast::<$int>()) }
            }
        }
    };
}

/// Declares [`Window`]'s accessor of one atomic width.
macro_rules! window_accessor {
    ($(#[$doc:meta])* $name:ident -> $atomic:ident of $int:ty, else $seatbelt:ident) => {
        $(#[$doc])*
        #[inline(always)]
        pub(crate) fn $name(self, field: usize) -> &'a $atomic {
            const SIZE: usize = size_of::<$int>();
            #[cfg(loom)]
            {
                assert!(field + SIZE <= size_of::<T>(), "field at {field}");
                self.mapping.$name(self.offset + field)
            }
            #[cfg(not(loom))]
            {
                // Constant for a named field, so the compiler folds the check away.
                if field + SIZE > size_of::<T>() {
                    return &$seatbelt;
                }
                debug_assert!(field % SIZE == 0, "misaligned field at {field}");
                // SAFETY:
                // - `field + SIZE <= size_of::<T>()` (checked above; rounding down only lowers
                //   it), and the window's `size_of::<T>()` bytes lie inside the mapping or
                //   `SCRATCH` (`Mapping::window`), which live at least as long as `'a`; the
                //   SIGBUS guard may replace the mapping's pages, never unmap them;
                // - `start` is 8-aligned and `field` is rounded down to a multiple of SIZE, so
                //   the pointer is aligned for the atomic;
                // - every process reaches these bytes only through atomic operations (as in
                //   `Mapping`'s accessors).
                unsafe { $atomic::from_ptr(self.start.add(field & !(SIZE - 1)).cast::<$int>().cast_mut()) }
            }
        }
    };
}

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
    /// The entry of [`GUARDED`] that protects this mapping, if any.
    guard: Option<&'static Guarded>,
    /// This mapping's id, shifted above a [`KeptWindow`]'s key.
    key_base: u64,
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

/// Where an out-of-range access lands instead of faulting: a block reference read from a
/// corrupt segment, which the hot path does not validate, or a logic error; either way it must
/// not become memory corruption or a crash of the host program.
#[cfg(not(loom))]
static OUT_OF_RANGE_U64: AtomicU64 = AtomicU64::new(0);
#[cfg(not(loom))]
static OUT_OF_RANGE_U32: AtomicU32 = AtomicU32::new(0);

impl Mapping {
    /// Maps the first `len` bytes of `file`, shared and read-write, guarded against SIGBUS.
    #[cfg(not(loom))]
    pub(crate) fn new(file: &File, len: usize) -> io::Result<Self> {
        install_sigbus_guard();
        let map = memmap2::MmapOptions::new().len(len).map_raw(file)?;
        let guard = Guarded::register(map.as_mut_ptr() as usize, len);
        let mut mapping = Self::with_storage(Storage::File(map), len);
        mapping.guard = guard;
        Ok(mapping)
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
        Self {
            storage,
            len,
            u64_end: len.saturating_sub(7),
            u32_end: len.saturating_sub(3),
            guard: None,
            key_base: next_mapping_key_base(),
        }
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the segment was truncated under this mapping (or given up with
    /// [`Mapping::abandon`]): what it reads since is zero and what it writes goes nowhere.
    pub(crate) fn is_lost(&self) -> bool {
        self.guard.is_some_and(|guard| guard.lost.load(Ordering::Acquire))
    }

    /// Gives the segment up: replaces the mapping with private zero pages, as the SIGBUS guard
    /// does, before an access past a shrunk file's end can fault. Idempotent.
    pub(crate) fn abandon(&self) {
        if let Some(guard) = self.guard {
            // Failing that, the pages stay as they are: an access past the end may then fault
            // and reach the previous SIGBUS handler, as it would without this guard.
            guard.replace_with_zero_pages();
        }
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

    mapping_accessor! {
        /// The 64-bit atomic at byte `offset`, a multiple of 8.
        u64_at -> AtomicU64 of u64, checked by u64_end, modelled by words, else OUT_OF_RANGE_U64
    }

    mapping_accessor! {
        /// The 32-bit atomic at byte `offset`, a multiple of 4.
        u32_at -> AtomicU32 of u32, checked by u32_end, modelled by halves, else OUT_OF_RANGE_U32
    }

    /// Where an out-of-range access lands; out of line, to keep the accessors small.
    #[cfg(not(loom))]
    #[cold]
    #[inline(never)]
    fn out_of_range<T>(&self, _offset: usize, seatbelt: &'static T) -> &'static T {
        // Reached from a corrupt block table (the hot path does not validate references).
        seatbelt
    }
}

/// Where a window that does not fit its mapping points instead: a place as large as the
/// largest struct of the layout, shared by every such window. Reached only from a corrupt
/// segment (block references are not validated on the hot path) or a logic error; either way
/// it must not become memory corruption or a crash of the host program.
#[cfg(not(loom))]
static SCRATCH: [AtomicU64; SCRATCH_WORDS] = [const { AtomicU64::new(0) }; SCRATCH_WORDS];
const SCRATCH_WORDS: usize = 256;

/// The place of one `T` (a `proto` layout struct) in a [`Mapping`], checked against the
/// mapping's length once, when the window is made: its fields are then reached with offsets
/// that the compiler checks against `size_of::<T>()`, a constant, instead of against the
/// mapping's length, a load. The typed views of `view.rs` are windows.
pub(crate) struct Window<'a, T> {
    /// The struct's first byte, inside the mapping or [`SCRATCH`]; 8-aligned.
    #[cfg(not(loom))]
    start: *const u8,
    #[cfg(loom)]
    mapping: &'a Mapping,
    #[cfg(loom)]
    offset: usize,
    _borrow: PhantomData<&'a Mapping>,
    _kind: PhantomData<fn() -> T>,
}

impl<T> Clone for Window<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Window<'_, T> {}

impl<T> std::fmt::Debug for Window<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window").field("type", &std::any::type_name::<T>()).finish_non_exhaustive()
    }
}

impl Mapping {
    /// The window onto the `T` at byte `offset`, or onto [`SCRATCH`] if it would not lie
    /// wholly inside the mapping at an 8-aligned offset.
    #[inline(always)]
    pub(crate) fn window<T>(&self, offset: usize) -> Window<'_, T> {
        const {
            assert!(size_of::<T>() <= SCRATCH_WORDS * 8, "a layout struct larger than the scratch place");
            assert!(size_of::<T>() % 8 == 0, "a layout struct whose size is not a multiple of 8");
        }
        #[cfg(loom)]
        {
            assert!(offset % 8 == 0 && offset + size_of::<T>() <= self.len, "window at {offset}");
            Window { mapping: self, offset, _borrow: PhantomData, _kind: PhantomData }
        }
        #[cfg(not(loom))]
        {
            let fits = offset % 8 == 0 && size_of::<T>() <= self.len && offset <= self.len - size_of::<T>();
            let start = if fits {
                // SAFETY:
                // - `offset + size_of::<T>() <= len` was checked above, so the pointer and the
                //   `size_of::<T>()` bytes after it lie inside the mapping (or heap block);
                // - `add` keeps the provenance of `base`, which covers the whole mapping.
                unsafe { self.base().add(offset).cast_const() }
            } else {
                SCRATCH.as_ptr().cast::<u8>()
            };
            Window { start, _borrow: PhantomData, _kind: PhantomData }
        }
    }
}

impl<'a, T> Window<'a, T> {
    window_accessor! {
        /// The 64-bit atomic at byte `field` of the struct, a multiple of 8.
        u64_at -> AtomicU64 of u64, else OUT_OF_RANGE_U64
    }

    window_accessor! {
        /// The 32-bit atomic at byte `field` of the struct, a multiple of 4.
        u32_at -> AtomicU32 of u32, else OUT_OF_RANGE_U32
    }
}

/// A window that the hot path keeps between calls (in a thread-local) and takes up again after
/// two compares: that it is asked for with the same mapping and key it was kept for, and that
/// no mapping of the process was lost since ([`losses`]).
///
/// Why taking it up is sound although it holds a pointer and no borrow: every [`Mapping`] gets
/// an id that no other mapping of the process ever gets (`MAPPING_IDS`), and a kept window
/// carries the id of the mapping it was made from. [`KeptWindow::recall`] is given a borrowed
/// mapping and answers only if that mapping's id is the kept one, so the mapping the pointer
/// came from is alive for the borrow; a mapping never moves, and losing it replaces its pages
/// in place. A forked child has the same mapping at the same address.
pub(crate) struct KeptWindow<T> {
    /// `(mapping id << 32) | key`; zero, which no mapping's key has, for nothing kept.
    key: u64,
    /// [`losses`] when it was kept.
    losses: u64,
    #[cfg(not(loom))]
    start: *const u8,
    #[cfg(loom)]
    offset: usize,
    _kind: PhantomData<fn() -> T>,
}

impl<T> Clone for KeptWindow<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for KeptWindow<T> {}

/// Ids of mappings: the next one to hand out. Ids fit in 32 bits, beside a 32-bit key; once they
/// run out (after four billion mappings), new mappings get [`NO_ID`] and are never kept.
static MAPPING_IDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
const NO_ID: u64 = u64::MAX;

fn next_mapping_key_base() -> u64 {
    MAPPING_IDS
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |id| id.checked_add(1))
        .map_or(NO_ID, |id| u64::from(id) << 32)
}

impl<T> KeptWindow<T> {
    /// Nothing kept: recalls nothing.
    pub(crate) const NONE: Self = Self {
        key: 0,
        losses: 0,
        #[cfg(not(loom))]
        start: std::ptr::null(),
        #[cfg(loom)]
        offset: 0,
        _kind: PhantomData,
    };

    /// Keeps the window onto the `T` at `offset` of `mapping` under `key`; nothing if the
    /// mapping is lost (or has no id): its updates must take the path that counts them.
    pub(crate) fn keep(mapping: &Mapping, offset: usize, key: u32) -> Self {
        // Read before the lost flag: a loss after this read changes the count.
        let losses = LOSSES.load(Ordering::Acquire);
        if mapping.is_lost() || mapping.key_base == NO_ID {
            return Self::NONE;
        }
        let window = mapping.window::<T>(offset);
        Self {
            key: mapping.key_base | u64::from(key),
            losses,
            #[cfg(not(loom))]
            start: window.start,
            #[cfg(loom)]
            offset: window.offset,
            _kind: PhantomData,
        }
    }

    /// The window kept, if it was kept from `mapping` under `key` and no mapping was lost since.
    #[inline(always)]
    pub(crate) fn recall<'a>(self, mapping: &'a Mapping, key: u32) -> Option<Window<'a, T>> {
        if self.key != mapping.key_base | u64::from(key) || self.losses != losses() {
            return None;
        }
        #[cfg(not(loom))]
        return Some(Window { start: self.start, _borrow: PhantomData, _kind: PhantomData });
        #[cfg(loom)]
        return Some(Window { mapping, offset: self.offset, _borrow: PhantomData, _kind: PhantomData });
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Before memmap2 unmaps the range: a later mapping at the same address must not be
        // mistaken for this one.
        if let Some(guard) = self.guard {
            guard.unregister();
        }
    }
}

/// One file mapping the SIGBUS guard protects: a fixed-size table, so that the signal handler
/// reads it without locks or allocation.
#[derive(Debug)]
struct Guarded {
    /// Start address; 0 while the entry is free.
    start: AtomicUsize,
    len: AtomicUsize,
    lost: AtomicBool,
}

/// At most this many segments mapped at once are guarded; beyond that a mapping works as
/// before, unguarded (a process rarely maps more than one or two).
const GUARDED_MAPPINGS: usize = 64;

#[allow(clippy::declare_interior_mutable_const)] // only used to initialise the array below
const FREE_GUARD: Guarded =
    Guarded { start: AtomicUsize::new(0), len: AtomicUsize::new(0), lost: AtomicBool::new(false) };
static GUARDED: [Guarded; GUARDED_MAPPINGS] = [FREE_GUARD; GUARDED_MAPPINGS];

impl Guarded {
    fn register(start: usize, len: usize) -> Option<&'static Self> {
        let entry = GUARDED.iter().find(|entry| {
            entry.start.load(Ordering::Relaxed) == 0
                && entry.start.compare_exchange(0, usize::MAX, Ordering::Acquire, Ordering::Relaxed).is_ok()
        })?;
        entry.lost.store(false, Ordering::Relaxed);
        entry.len.store(len, Ordering::Relaxed);
        // Release: a handler that sees the start sees the length too.
        entry.start.store(start, Ordering::Release);
        Some(entry)
    }

    fn unregister(&self) {
        self.start.store(0, Ordering::Release);
    }

    fn contains(&self, address: usize) -> bool {
        let start = self.start.load(Ordering::Acquire);
        start != 0 && start != usize::MAX && address.wrapping_sub(start) < self.len.load(Ordering::Relaxed)
    }

    /// Maps private zero pages over the whole range and marks it lost (and counts it in
    /// [`LOSSES`]); false if that could not be done. Async-signal-safe: one system call and
    /// atomic stores. Mapping again over pages already replaced is harmless, which is what two
    /// threads faulting at once do.
    fn replace_with_zero_pages(&self) -> bool {
        let start = self.start.load(Ordering::Acquire);
        if start == 0 || start == usize::MAX {
            return false;
        }
        // SAFETY:
        // - `[start, start + len)` is the live mapping this entry registered (it is unregistered
        //   before being unmapped), so `MAP_FIXED` replaces only pages that belong to it, with
        //   readable and writable pages of the same size: every pointer the crate derived from
        //   the mapping stays valid and aligned;
        // - the new pages are private and zero: what the crate reads from them is a valid
        //   value of every atomic;
        // - `mmap` is a plain system call, safe to make in a signal handler.
        let result = unsafe {
            libc::mmap(
                start as *mut libc::c_void,
                self.len.load(Ordering::Relaxed),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if result == libc::MAP_FAILED {
            // Without memory there is nothing better to do than what would happen without us.
            return false;
        }
        if !self.lost.swap(true, Ordering::AcqRel) {
            LOSSES.fetch_add(1, Ordering::Release);
        }
        true
    }
}

/// How many mappings this process has lost: a thread's cached block is only used while this is
/// unchanged, so that after a loss every update goes through the path that counts it as dropped.
static LOSSES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// See [`LOSSES`].
#[inline(always)]
pub(crate) fn losses() -> u64 {
    LOSSES.load(Ordering::Relaxed)
}

/// The SIGBUS action that was in place before ours, to chain to.
static PREVIOUS_SIGBUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());

fn install_sigbus_guard() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Leaked on purpose: the handler may read it at any time until the process ends.
        let previous: &'static mut libc::sigaction = Box::leak(Box::new(zeroed_sigaction()));
        let mut action = zeroed_sigaction();
        action.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY:
        // - `action` and `previous` are valid, initialised `sigaction` structs for the
        //   duration of the call; `sigemptyset` only writes the mask it is given;
        // - `on_sigbus` has the signature `SA_SIGINFO` requires and only makes the calls
        //   allowed in a signal handler (see its comments).
        let rc = unsafe {
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, &mut *previous)
        };
        if rc == 0 {
            PREVIOUS_SIGBUS.store(previous, Ordering::Release);
        }
    });
}

fn zeroed_sigaction() -> libc::sigaction {
    // SAFETY:
    // - `sigaction` is a plain C struct of integers, a function pointer-sized integer and a
    //   signal mask, for all of which zero is a valid value (SIG_DFL, no flags, empty mask).
    unsafe { std::mem::zeroed() }
}

extern "C" fn on_sigbus(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY:
    // - the kernel passes a valid `siginfo_t` to an `SA_SIGINFO` handler; `si_addr` reads the
    //   faulting address from it.
    let address = unsafe { (*info).si_addr() } as usize;
    let guarded = GUARDED.iter().find(|entry| entry.contains(address));
    if guarded.is_some_and(Guarded::replace_with_zero_pages) {
        return; // the faulting access runs again, on a zero page
    }
    let previous = PREVIOUS_SIGBUS.load(Ordering::Acquire);
    // SAFETY:
    // - `previous` is null or the leaked, never-freed action saved at installation;
    // - a previous `SA_SIGINFO` handler is called with the arguments the kernel gave us, as it
    //   would have been called without us; a plain one with the signal number;
    // - restoring the default action and returning lets the fault happen again and kill the
    //   process as it would have without us (`sigaction` is async-signal-safe).
    unsafe {
        match previous.as_ref() {
            Some(previous) if previous.sa_flags & libc::SA_SIGINFO != 0 && previous.sa_sigaction > 1 => {
                let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    std::mem::transmute(previous.sa_sigaction);
                handler(signal, info, context);
            }
            Some(previous) if previous.sa_sigaction > 1 => {
                let handler: extern "C" fn(libc::c_int) = std::mem::transmute(previous.sa_sigaction);
                handler(signal);
            }
            _ => {
                let default = zeroed_sigaction();
                libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
            }
        }
    }
}

/// Allocates the blocks of `file` from `offset` for `len` bytes, so that touching those pages
/// of the mapping later can never raise SIGBUS because the file system (often a tmpfs) is full:
/// the failure happens here, as an error.
pub(crate) fn allocate(file: &File, offset: usize, len: usize) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY:
    // - `posix_fallocate` only reads its integer arguments; the descriptor is valid because
    //   `file` is borrowed for the duration of the call.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), offset, len) } {
        0 => Ok(()),
        // Some file systems cannot preallocate: the pages are then allocated when touched.
        libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// Open-file-description locks on single bytes of a segment file: the kernel holds them for
/// the open file description (not the process or thread), releases them when its last
/// descriptor closes, which a process's death does, and shows them to every process that
/// opens the same file, whatever its pid namespace.
#[derive(Debug)]
pub(crate) struct ByteLocks {
    fd: OwnedFd,
}

impl ByteLocks {
    /// A new open file description of the file `file` is open on: its locks are its own,
    /// distinct from `file`'s. Through `/proc/self/fd`, whose entry is a link to the open file
    /// itself (followed on purpose), valid even after the path was renamed or unlinked.
    pub(crate) fn open_beside(file: &File) -> io::Result<Self> {
        let path = format!("/proc/self/fd/{}\0", file.as_raw_fd());
        // SAFETY:
        // - `path` is a NUL-terminated string that lives for the duration of the call;
        // - on success the returned descriptor is new and owned by nobody else, so
        //   `OwnedFd::from_raw_fd` may take it.
        unsafe {
            let fd = libc::open(path.as_ptr().cast(), libc::O_RDWR | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Self { fd: OwnedFd::from_raw_fd(fd) })
        }
    }

    /// Closes this process's descriptor of the open file description without dropping `self`:
    /// in a forked child, the parent's description (inherited) must not keep the parent's
    /// locks alive after the parent dies. The value must never be used again; it is leaked.
    pub(crate) fn close_in_child(&self) {
        // SAFETY:
        // - `close` only reads its integer argument; the caller leaks `self`, so the
        //   descriptor is never used or closed again through it.
        unsafe { libc::close(self.fd.as_raw_fd()) };
    }

    /// Takes the write lock on byte `offset` without waiting: `Ok(false)` if another open file
    /// description holds it. Taking a lock this description already holds succeeds.
    pub(crate) fn try_lock(&self, offset: usize) -> io::Result<bool> {
        match self.fcntl(libc::F_OFD_SETLK, libc::F_WRLCK as libc::c_short, offset) {
            Ok(_) => Ok(true),
            Err(error) if matches!(error.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Releases the lock on byte `offset` (nothing if this description does not hold it).
    pub(crate) fn unlock(&self, offset: usize) {
        let _ = self.fcntl(libc::F_OFD_SETLK, libc::F_UNLCK as libc::c_short, offset);
    }

    /// Whether another open file description holds a lock on byte `offset`. An error (which
    /// `F_OFD_GETLK` on a regular file does not give) counts as held: never judge a live
    /// owner dead.
    pub(crate) fn is_held_elsewhere(&self, offset: usize) -> bool {
        self.fcntl(libc::F_OFD_GETLK, libc::F_WRLCK as libc::c_short, offset)
            .map_or(true, |lock| lock.l_type != libc::F_UNLCK as libc::c_short)
    }

    fn fcntl(&self, command: libc::c_int, kind: libc::c_short, offset: usize) -> io::Result<libc::flock> {
        let mut lock = libc::flock {
            l_type: kind,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
            l_len: 1,
            // Must be zero for open-file-description locks.
            l_pid: 0,
        };
        // SAFETY:
        // - the descriptor is valid for the lifetime of `self`;
        // - `F_OFD_SETLK`/`F_OFD_GETLK` read (and for GETLK write) the `flock` struct passed
        //   by pointer, which is valid and initialised for the duration of the call.
        let rc = unsafe { libc::fcntl(self.fd.as_raw_fd(), command, &mut lock as *mut libc::flock) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(lock)
        }
    }
}

impl From<File> for ByteLocks {
    fn from(file: File) -> Self {
        Self { fd: OwnedFd::from(file) }
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

/// CPU time (user and system, all threads) the calling process has used, in nanoseconds.
pub(crate) fn process_cpu_time_ns() -> u64 {
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY:
    // - `clock_gettime` writes the valid `timespec` it is given and reads nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut time) };
    if rc != 0 {
        return 0;
    }
    (time.tv_sec.max(0) as u64).saturating_mul(1_000_000_000).saturating_add(time.tv_nsec.max(0) as u64)
}

/// The process's effective uid: the owner of the files it creates.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY:
    // - `geteuid` takes nothing, always succeeds and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// Size and link count of the file a descriptor is open on: whether a segment was shrunk or
/// removed under its users.
pub(crate) fn file_size_and_links(fd: RawFd) -> io::Result<(u64, u64)> {
    // SAFETY:
    // - `stat` is a plain C struct for which zero is a valid value; `fstat` fills it in and
    //   only reads the descriptor, valid because the caller holds it open.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut stat) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((stat.st_size.max(0) as u64, stat.st_nlink as u64))
    }
}

/// A value made once per fork generation, for values a forked child must not share with its
/// parent (the locks of an open file description). The values of earlier generations are
/// leaked, never freed: a thread of this generation never sees them, and a reference handed
/// out stays valid for as long as `self` is borrowed.
#[derive(Debug)]
pub(crate) struct ForkLocal<T> {
    current: AtomicPtr<(u64, T)>,
}

impl<T> ForkLocal<T> {
    pub(crate) const fn new() -> Self {
        Self { current: AtomicPtr::new(std::ptr::null_mut()) }
    }

    /// This generation's value, made by `make` if there is none yet; `retire` is called on the
    /// earlier generation's value that it replaces. `None` if `make` fails.
    pub(crate) fn get_or_make<E>(&self, make: impl FnOnce() -> Result<T, E>, retire: impl FnOnce(&T)) -> Option<&T> {
        let generation = fork_generation();
        let current = self.current.load(Ordering::Acquire);
        // SAFETY:
        // - a non-null pointer came from `Box::into_raw` below and is freed only in `drop`,
        //   which `&self` rules out for the duration of the borrow; replaced values are leaked.
        if let Some((made_in, value)) = unsafe { current.as_ref() } {
            if *made_in == generation {
                return Some(value);
            }
        }
        let fresh = Box::into_raw(Box::new((generation, make().ok()?)));
        match self.current.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                // SAFETY: as above; `current` is now unreachable through `self` and leaked.
                if let Some((_, old)) = unsafe { current.as_ref() } {
                    retire(old);
                }
                // SAFETY: `fresh` is the live value, freed only in `drop`.
                Some(unsafe { &(*fresh).1 })
            }
            Err(winner) => {
                // SAFETY: `fresh` was never shared: this thread owns it and frees it here.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: `winner` is non-null (it replaced `current`) and live, as above.
                unsafe { winner.as_ref() }.map(|(_, value)| value)
            }
        }
    }

    /// This generation's value, if it was made.
    pub(crate) fn get(&self) -> Option<&T> {
        // SAFETY: as in `get_or_make`.
        let (made_in, value) = unsafe { self.current.load(Ordering::Acquire).as_ref() }?;
        (*made_in == fork_generation()).then_some(value)
    }
}

impl<T> Drop for ForkLocal<T> {
    fn drop(&mut self) {
        let current = *self.current.get_mut();
        if !current.is_null() {
            // SAFETY: `current` came from `Box::into_raw` and `&mut self` means no reference to
            // it is alive; it is freed once.
            drop(unsafe { Box::from_raw(current) });
        }
    }
}

// SAFETY:
// - a `ForkLocal<T>` hands out `&T` to any thread and moves `T` between threads exactly when
//   a `T` could be: the same bounds as `OnceLock<T>`.
unsafe impl<T: Send + Sync> Sync for ForkLocal<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for ForkLocal<T> {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use coordmetrics_proto::CoordinatorBlock;

    const BLOCK: usize = size_of::<CoordinatorBlock>();

    #[test]
    fn a_window_reaches_the_bytes_of_its_struct() {
        let mapping = Mapping::anonymous(4 * BLOCK);
        mapping.window::<CoordinatorBlock>(BLOCK).u64_at(8).store(7, Ordering::Relaxed);
        assert_eq!(mapping.u64_at(BLOCK + 8).load(Ordering::Relaxed), 7);
        assert_eq!(mapping.window::<CoordinatorBlock>(2 * BLOCK).u64_at(BLOCK - 8).load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_window_that_does_not_fit_writes_nothing_into_the_mapping() {
        let mapping = Mapping::anonymous(2 * BLOCK);
        for offset in [BLOCK + 8, 2 * BLOCK, usize::MAX - 7, 12] {
            mapping.window::<CoordinatorBlock>(offset).u64_at(0).fetch_add(1, Ordering::Relaxed);
        }
        // And a field beyond its struct lands outside the mapping too.
        mapping.window::<CoordinatorBlock>(0).u64_at(BLOCK).fetch_add(1, Ordering::Relaxed);
        assert!((0..2 * BLOCK).step_by(8).all(|offset| mapping.u64_at(offset).load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn a_kept_window_is_recalled_only_from_its_mapping_under_its_key() {
        let (one, other) = (Mapping::anonymous(2 * BLOCK), Mapping::anonymous(2 * BLOCK));
        let kept = KeptWindow::<CoordinatorBlock>::keep(&one, BLOCK, 3);
        kept.recall(&one, 3).expect("kept").u64_at(16).store(5, Ordering::Relaxed);
        assert_eq!(one.u64_at(BLOCK + 16).load(Ordering::Relaxed), 5);
        assert!(kept.recall(&one, 4).is_none(), "another key");
        assert!(kept.recall(&other, 3).is_none(), "another mapping");
        assert!(KeptWindow::<CoordinatorBlock>::NONE.recall(&one, 0).is_none());
    }

    #[test]
    fn a_loss_anywhere_in_the_process_retires_every_kept_window() {
        let mapping = Mapping::anonymous(2 * BLOCK);
        let kept = KeptWindow::<CoordinatorBlock>::keep(&mapping, 0, 1);
        assert!(kept.recall(&mapping, 1).is_some());
        // What the SIGBUS guard does on a loss (harmless to other tests: their windows are
        // only found again).
        LOSSES.fetch_add(1, Ordering::Release);
        assert!(kept.recall(&mapping, 1).is_none());
        assert!(KeptWindow::<CoordinatorBlock>::keep(&mapping, 0, 1).recall(&mapping, 1).is_some());
    }
}
