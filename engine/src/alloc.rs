//! The process allocator the studio installs: the system allocator, plus a bounded cache of
//! freed large blocks that later allocations of the same size class reuse.
//!
//! Why: a model pass allocates the same large activations, gradients and logits every step.
//! Through glibc each of them is a fresh `mmap` that the kernel page-faults and zeroes on first
//! touch, and `munmap`s on free; a profile of an SFT step showed 15 % of all time in the
//! kernel's `clear_page` alone. Reusing the blocks turns that into nothing.
//!
//! Blocks of [`HUGE`] bytes and more are mapped on their own, on 2 MiB boundaries and in whole
//! 2 MiB pages, and those allocated inside [`with_huge_pages`] (a model's weights as it loads
//! and as the optimizer replaces them) are advised to take transparent huge pages, where Linux
//! offers them on request (`madvise`, the default of most distributions). Decode streams every
//! weight once per token, and from 4 KiB pages that stream takes a page walk every 4 KiB: two
//! threads read 512 MiB at 21 GB/s from 4 KiB pages and at 25 GB/s from 2 MiB pages on the machine
//! this was measured on (an Intel Xeon VM). Activations are not advised: they are reused from the
//! cache below and rarely streamed twice, and in a VM the first touch of a fresh huge page can be
//! slow (0.6 GB/s against 3 GB/s for 4 KiB pages here, the host backing it anew), which cost the
//! first prompt pass a fifth of its speed when every block was advised. The price is the rounding
//! of advised blocks to whole huge pages: SmolLM2-135M's 1.3 MiB projections take 2 MiB each
//! (`studio generate` on it: 611 → 734 MB resident). glibc cannot place these blocks: once its
//! mmap threshold has grown it serves them from recycled heap pages already faulted in 4 KiB. On
//! other systems they come from the system allocator like the rest.
//!
//! Install it in a binary with `#[global_allocator] static A: engine::alloc::BlockCache =
//! engine::alloc::BlockCache;` and size the cache with [`set_limit`]. The price is memory: the
//! process keeps up to that many bytes of freed blocks (peak RSS of `studio bench train` on
//! SmolLM2-135M went from 4.7 to 6.4 GB) for 20–30 % faster training steps and prompt passes.

#![allow(unsafe_code)] // a GlobalAlloc is unsafe by definition; each block says why it is sound

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Blocks at least this large are rounded to a size class and cached when freed.
pub const LARGE: usize = 1 << 20;
/// Size classes are multiples of this.
const GRAIN: usize = 1 << 16;
/// Most bytes kept in the cache unless [`set_limit`] says otherwise; frees beyond it go back to
/// the system.
pub const DEFAULT_LIMIT: usize = 2 << 30;
const SLOTS: usize = 2048;

static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_LIMIT);

/// Sets the most bytes of freed blocks the cache keeps (a training step of SmolLM2-135M frees
/// about 4 GB of activations and gradients, which the next step allocates again).
pub fn set_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
}

/// A cache limit for this machine: a quarter of physical memory, at most 8 GiB (read from
/// `/proc/meminfo`; [`DEFAULT_LIMIT`] where that is unavailable).
pub fn suggested_limit() -> usize {
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
    });
    total_kib.map_or(DEFAULT_LIMIT, |kib| (kib * 1024 / 4).min(8 << 30))
}

/// A cached block: its system layout and address (0 = empty slot).
#[derive(Clone, Copy)]
struct Slot {
    size: usize,
    align: usize,
    addr: usize,
}

struct Cache {
    slots: [Slot; SLOTS],
    bytes: usize,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    slots: [Slot {
        size: 0,
        align: 0,
        addr: 0,
    }; SLOTS],
    bytes: 0,
});

/// See the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockCache;

/// The layout requested from the system for a caller's `layout`: large sizes rounded up to
/// the size class, so blocks of nearly equal sizes share one.
#[inline]
fn system_layout(layout: Layout) -> Layout {
    if layout.size() >= LARGE {
        let size = layout.size().next_multiple_of(GRAIN);
        Layout::from_size_align(size, layout.align()).unwrap_or(layout)
    } else {
        layout
    }
}

/// Blocks at least this large are mapped on their own, on a 2 MiB boundary and rounded up to
/// whole 2 MiB pages (only the pages touched are backed, unless advised).
pub const HUGE: usize = 1 << 20;
/// A transparent huge page.
const HUGE_PAGE: usize = 2 << 20;

/// Whether blocks of this system layout are mapped by [`map_huge`].
#[inline]
fn is_huge(sys: Layout) -> bool {
    cfg!(target_os = "linux") && sys.size() >= HUGE && sys.align() <= HUGE_PAGE
}

thread_local! {
    /// Depth of [`with_huge_pages`] scopes on this thread.
    static HUGE_SCOPE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether fresh huge blocks allocated here are advised to take huge pages.
fn advise_here() -> bool {
    HUGE_SCOPE.try_with(|d| d.get() > 0).unwrap_or(false)
}

/// Runs `f` with the large blocks it allocates on this thread backed by huge pages: a model's
/// weights as it loads, and as the optimizer replaces them.
pub fn with_huge_pages<R>(f: impl FnOnce() -> R) -> R {
    struct Scope;
    impl Drop for Scope {
        fn drop(&mut self) {
            let _ = HUGE_SCOPE.try_with(|d| d.set(d.get().saturating_sub(1)));
        }
    }
    let _ = HUGE_SCOPE.try_with(|d| d.set(d.get() + 1));
    let _scope = Scope;
    f()
}

/// A fresh zeroed mapping of `size` bytes rounded up to whole huge pages, starting on a huge-page
/// boundary (advised to take huge pages inside [`with_huge_pages`]); null on failure.
#[cfg(target_os = "linux")]
fn map_huge(size: usize) -> *mut u8 {
    let len = size.next_multiple_of(HUGE_PAGE);
    let span = len + HUGE_PAGE;
    // SAFETY: an anonymous private mapping of `span` bytes at an address the kernel picks; its
    // result is checked before use.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    let raw = raw as usize;
    let start = raw.next_multiple_of(HUGE_PAGE);
    // SAFETY: the head `raw..start` and the tail `start + len..raw + span` are page-aligned parts
    // of the mapping just made that nothing refers to.
    unsafe {
        if start > raw {
            libc::munmap(raw as *mut libc::c_void, start - raw);
        }
        let tail = raw + span - (start + len);
        if tail > 0 {
            libc::munmap((start + len) as *mut libc::c_void, tail);
        }
    }
    advise_huge(start as *mut u8, len);
    start as *mut u8
}

/// Inside [`with_huge_pages`], advises the huge-page-aligned block `ptr..ptr + len` to take huge
/// pages (a block reused from the cache is collapsed into them later, by the kernel).
#[cfg(target_os = "linux")]
fn advise_huge(ptr: *mut u8, len: usize) {
    if advise_here() {
        // SAFETY: `ptr..ptr + len` is a live mapping made by `map_huge`; MADV_HUGEPAGE changes
        // only how its pages are backed, never their contents.
        unsafe {
            libc::madvise(ptr.cast(), len, libc::MADV_HUGEPAGE);
        }
    }
}

/// Unmaps a block [`map_huge`] returned for `size` bytes.
#[cfg(target_os = "linux")]
fn unmap_huge(ptr: *mut u8, size: usize) {
    // SAFETY: `ptr` is the start of a live mapping of `size` rounded up to huge pages, made by
    // `map_huge` and no longer referred to by its owner.
    unsafe {
        libc::munmap(ptr.cast(), size.next_multiple_of(HUGE_PAGE));
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_ptr: *mut u8, _len: usize) {}

#[cfg(not(target_os = "linux"))]
fn map_huge(_size: usize) -> *mut u8 {
    std::ptr::null_mut()
}

#[cfg(not(target_os = "linux"))]
fn unmap_huge(_ptr: *mut u8, _size: usize) {}

/// A cached block of exactly this system layout, taken out of the cache.
fn take(sys: Layout) -> Option<*mut u8> {
    let mut cache = CACHE.lock().ok()?;
    let slot = cache
        .slots
        .iter_mut()
        .find(|s| s.addr != 0 && s.size == sys.size() && s.align == sys.align())?;
    let addr = slot.addr;
    slot.addr = 0;
    cache.bytes -= sys.size();
    Some(addr as *mut u8)
}

/// Keeps a freed block for reuse; `false` when the cache is full.
fn keep(ptr: *mut u8, sys: Layout) -> bool {
    let Ok(mut cache) = CACHE.lock() else {
        return false;
    };
    if cache.bytes + sys.size() > LIMIT.load(Ordering::Relaxed) {
        return false;
    }
    let Some(slot) = cache.slots.iter_mut().find(|s| s.addr == 0) else {
        return false;
    };
    *slot = Slot {
        size: sys.size(),
        align: sys.align(),
        addr: ptr as usize,
    };
    cache.bytes += sys.size();
    true
}

// SAFETY: every block comes from `System` with `system_layout(layout)` (from `map_huge` when
// `is_huge` says so) and goes back to it (to `unmap_huge`) with the same layout (computed from
// the caller's layout, which GlobalAlloc guarantees is the one it was allocated with), or is
// parked in the cache and handed out again only for a request with that same system layout,
// whose size and alignment satisfy the request. A parked block is owned by the cache alone: it
// was freed by its previous owner.
unsafe impl GlobalAlloc for BlockCache {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let sys = system_layout(layout);
        if sys.size() >= LARGE
            && let Some(ptr) = take(sys)
        {
            if is_huge(sys) {
                advise_huge(ptr, sys.size().next_multiple_of(HUGE_PAGE));
            }
            return ptr;
        }
        if is_huge(sys) {
            return map_huge(sys.size());
        }
        // SAFETY: forwarded contract (non-zero size, valid layout).
        unsafe { System.alloc(sys) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let sys = system_layout(layout);
        if sys.size() >= LARGE
            && let Some(ptr) = take(sys)
        {
            if is_huge(sys) {
                advise_huge(ptr, sys.size().next_multiple_of(HUGE_PAGE));
            }
            // SAFETY: the block is live, ours, and at least `layout.size()` bytes long.
            unsafe { ptr.write_bytes(0, layout.size()) };
            return ptr;
        }
        if is_huge(sys) {
            // A fresh anonymous mapping reads as zeros.
            return map_huge(sys.size());
        }
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(sys) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let sys = system_layout(layout);
        if sys.size() >= LARGE && keep(ptr, sys) {
            return;
        }
        if is_huge(sys) {
            return unmap_huge(ptr, sys.size());
        }
        // SAFETY: `ptr` came from System with `sys` (directly or through the cache).
        unsafe { System.dealloc(ptr, sys) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() < LARGE && new_size < LARGE {
            // SAFETY: small before and after, so the system layouts are the caller's.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new_size` is non-zero and valid with `layout.align()` per realloc's contract.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as in `alloc`.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct, and at least min(old, new) bytes long.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_large_ones_are_reused() {
        let a = BlockCache;
        for &size in &[16usize, LARGE - 1, LARGE, 3 * LARGE + 5] {
            let layout = Layout::from_size_align(size, 64).expect("layout");
            // SAFETY: non-zero sizes; every block is written within bounds and freed once
            // with the layout it was allocated with.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                p.write_bytes(7, size);
                let q = a.realloc(p, layout, size * 2 + 1);
                assert!(!q.is_null());
                assert_eq!(*q.add(size - 1), 7, "realloc keeps the contents");
                a.dealloc(
                    q,
                    Layout::from_size_align(size * 2 + 1, 64).expect("layout"),
                );
                let z = a.alloc_zeroed(layout);
                assert_eq!(*z.add(size - 1), 0, "zeroed even when reused");
                z.write_bytes(9, size);
                a.dealloc(z, layout);
                if size >= LARGE {
                    // The same size class comes back from the cache (other tests in this
                    // process may take it first, so only check it is usable).
                    let r = a.alloc_zeroed(layout);
                    assert_eq!(*r.add(size / 2), 0);
                    a.dealloc(r, layout);
                }
            }
        }
    }

    #[test]
    fn a_freed_large_block_is_handed_out_again_for_its_size_class() {
        let a = BlockCache;
        // An alignment no other test asks for, so no other test can take the cached block.
        let align = 1 << 14;
        let first = Layout::from_size_align(5 * LARGE + 3, align).expect("layout");
        let same_class = Layout::from_size_align(5 * LARGE + 100, align).expect("layout");
        let other_class = Layout::from_size_align(6 * LARGE, align).expect("layout");
        // SAFETY: non-zero sizes, each block freed once with the layout it was allocated with.
        unsafe {
            let p = a.alloc(first);
            assert!(!p.is_null());
            a.dealloc(p, first);
            let q = a.alloc(same_class);
            assert_eq!(q, p, "the cached block is reused for the same size class");
            let r = a.alloc(same_class);
            assert_ne!(r, p, "a block is handed out once");
            let s = a.alloc(other_class);
            assert_ne!(s, p);
            a.dealloc(q, same_class);
            let z = a.alloc_zeroed(first);
            assert_eq!(z, p, "alloc_zeroed reuses it too");
            assert_eq!(*z.add(5 * LARGE), 0, "and zeroes it");
            a.dealloc(z, first);
            a.dealloc(r, same_class);
            a.dealloc(s, other_class);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn huge_blocks_start_on_a_huge_page_and_fill_whole_ones() {
        let a = BlockCache;
        // An alignment no other test asks for, so the block is a fresh mapping.
        let layout = Layout::from_size_align(HUGE + 12_345, 1 << 13).expect("layout");
        // SAFETY: non-zero size; every byte written is inside the block, freed once.
        unsafe {
            let p = a.alloc_zeroed(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % HUGE_PAGE, 0, "starts on a 2 MiB boundary");
            assert!((0..layout.size()).step_by(4096).all(|i| *p.add(i) == 0));
            // The mapping covers the rounded-up size: its last byte is writable.
            let mapped = system_layout(layout).size().next_multiple_of(HUGE_PAGE);
            p.add(mapped - 1).write(1);
            a.dealloc(p, layout);
        }
    }

    /// The `VmFlags` of the mapping of this process that holds `addr`.
    #[cfg(target_os = "linux")]
    fn vm_flags(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((lo, hi)) = range.split_once('-')
                && let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&addr);
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.trim().to_string();
            }
        }
        panic!("no mapping holds {addr:#x}")
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn blocks_allocated_inside_with_huge_pages_are_advised_and_others_not() {
        let a = BlockCache;
        // Alignments no other test asks for, so both blocks are fresh mappings.
        let plain = Layout::from_size_align(3 * HUGE, 1 << 12).expect("layout");
        let weights = Layout::from_size_align(3 * HUGE, 1 << 11).expect("layout");
        // SAFETY: non-zero sizes, each block freed once with its layout.
        unsafe {
            let p = a.alloc(plain);
            let w = with_huge_pages(|| with_huge_pages(|| a.alloc(weights)));
            let q = a.alloc(Layout::from_size_align(3 * HUGE, 1 << 10).expect("layout"));
            let has_hg = |ptr: *mut u8| vm_flags(ptr as usize).split(' ').any(|f| f == "hg");
            assert!(has_hg(w), "a block allocated inside the scope is advised");
            assert!(!has_hg(p), "one allocated before it is not");
            assert!(
                !has_hg(q),
                "nor one allocated after it (the nested scopes closed)"
            );
            a.dealloc(p, plain);
            a.dealloc(w, weights);
            a.dealloc(
                q,
                Layout::from_size_align(3 * HUGE, 1 << 10).expect("layout"),
            );
        }
    }
}
