//! Slab caches for small heap objects (16 B .. 2 KiB), in front of the heap's buddy allocator.
//!
//! Why: buddy_system_allocator's `Heap::dealloc` looks for the freed block's buddy by walking
//! the whole free list of its size class, so once the heap is fragmented (a page cache full of
//! folios, then writeback churn) every small free costs a walk of thousands of list nodes. The
//! file-system benchmarks measured it: 2000 alloc + free pairs of 64 bytes took 3.6 ms after
//! mount and 201 ms after a 1 GiB file had been written through the cache, and every operation
//! that allocates (a reflink clone, say) grew with the bytes written before it. Here a small
//! allocation is a pop from a per-class free list and a free is a push: O(1), whatever the
//! history.
//!
//! Owns: one cache per power-of-two size class. A cache's objects live in slabs of
//! [`SLAB_BYTES`] taken from the backing allocator, each aligned to its size, so the slab of an
//! object is its address rounded down (no lookup). A slab starts with its header (free list,
//! objects in use, the bump offset of never-used objects, links of the cache's partial list);
//! objects follow at multiples of the class size, so each is aligned to its class. A cache
//! lists its slabs that have a free object (the partial list); full slabs are on no list. A
//! slab whose last object is freed goes back to the backing allocator unless it is its cache's
//! only partial slab (kept, so an alloc/free pair at the boundary does not take and return a
//! slab each time).
//!
//! Lock order: none of its own; the heap calls it under the heap lock with interrupts masked.
//!
//! # Linux <-> here
//!
//! | Linux | here |
//! |---|---|
//! | `kmalloc` caches (`kmalloc-16` .. `kmalloc-2k`) over the page allocator | [`Slabs`] over the buddy heap |
//! | `struct slab` (freelist, inuse), `kmem_cache_node::partial` | [`SlabHeader`], `Slabs::partial` |
//! | `discard_slab` of an empty slab beyond the kept partial ones | [`Slabs::dealloc`] giving the slab back |

use core::alloc::Layout;
use core::ptr;

/// Bytes of one slab (also its alignment).
pub const SLAB_BYTES: usize = 64 << 10;
/// Smallest object class.
pub const MIN_OBJECT: usize = 16;
/// Largest object class; bigger allocations go to the backing allocator directly.
pub const MAX_OBJECT: usize = 2048;
const CLASSES: usize = (MAX_OBJECT / MIN_OBJECT).trailing_zeros() as usize + 1;

/// Where slabs come from: `SLAB_BYTES` aligned to `SLAB_BYTES`.
pub trait Backing {
    /// A fresh slab, or null when there is no memory.
    fn alloc_slab(&mut self) -> *mut u8;
    /// Returns a slab from [`Backing::alloc_slab`].
    ///
    /// # Safety
    /// `slab` came from `alloc_slab` of this backing and is no longer used.
    unsafe fn free_slab(&mut self, slab: *mut u8);
}

/// The layout of a slab allocation through a [`Backing`].
pub const SLAB_LAYOUT: Layout = match Layout::from_size_align(SLAB_BYTES, SLAB_BYTES) {
    Ok(l) => l,
    Err(_) => panic!("slab layout"),
};

/// The head of a slab.
#[repr(C)]
struct SlabHeader {
    /// First free object (each free object holds the address of the next).
    free: *mut u8,
    /// Objects handed out.
    inuse: u32,
    /// Offset of the first never-used object (objects below it were handed out at least once).
    bump: u32,
    prev: *mut SlabHeader,
    next: *mut SlabHeader,
}

/// Counters for tests and tuning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlabStats {
    /// Slabs held now.
    pub slabs: usize,
    /// Slabs taken from the backing allocator so far.
    pub slab_allocs: u64,
    /// Slabs given back so far.
    pub slab_frees: u64,
}

/// The size class of `layout` (index, object size), or `None` for the backing allocator.
pub fn class_of(layout: Layout) -> Option<(usize, usize)> {
    let size = layout.size().max(layout.align()).max(MIN_OBJECT).checked_next_power_of_two()?;
    (size <= MAX_OBJECT).then(|| ((size / MIN_OBJECT).trailing_zeros() as usize, size))
}

fn first_object(size: usize) -> usize {
    core::mem::size_of::<SlabHeader>().next_multiple_of(size)
}

fn capacity(size: usize) -> u32 {
    ((SLAB_BYTES - first_object(size)) / size) as u32
}

/// The slab caches. See the module docs.
pub struct Slabs {
    partial: [*mut SlabHeader; CLASSES],
    stats: SlabStats,
}

// SAFETY: the raw pointers name slabs owned by this value alone; it is only used under the
// heap's lock, so moving it between contexts moves that ownership with it.
unsafe impl Send for Slabs {}

impl Default for Slabs {
    fn default() -> Self {
        Self::new()
    }
}

impl Slabs {
    /// No slabs yet.
    pub const fn new() -> Self {
        Self {
            partial: [ptr::null_mut(); CLASSES],
            stats: SlabStats { slabs: 0, slab_allocs: 0, slab_frees: 0 },
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> SlabStats {
        self.stats
    }

    /// An object of class `class` (from [`class_of`]), or null when the backing allocator has
    /// no slab to give.
    pub fn alloc(&mut self, class: usize, backing: &mut dyn Backing) -> *mut u8 {
        let size = MIN_OBJECT << class;
        let mut s = self.partial[class];
        if s.is_null() {
            let raw = backing.alloc_slab();
            if raw.is_null() {
                return ptr::null_mut();
            }
            debug_assert_eq!(raw as usize % SLAB_BYTES, 0);
            s = raw.cast::<SlabHeader>();
            // SAFETY: `raw` is a fresh, exclusively owned, aligned block of SLAB_BYTES.
            unsafe {
                s.write(SlabHeader {
                    free: ptr::null_mut(),
                    inuse: 0,
                    bump: first_object(size) as u32,
                    prev: ptr::null_mut(),
                    next: ptr::null_mut(),
                })
            };
            self.push_partial(class, s);
            self.stats.slabs += 1;
            self.stats.slab_allocs += 1;
        }
        // SAFETY: `s` heads this class's partial list, so it is a live slab of this class with
        // at least one free or never-used object; free objects hold the next free address.
        unsafe {
            let h = &mut *s;
            let obj = if !h.free.is_null() {
                let o = h.free;
                h.free = o.cast::<*mut u8>().read();
                o
            } else {
                let o = s.cast::<u8>().add(h.bump as usize);
                h.bump += size as u32;
                o
            };
            h.inuse += 1;
            if h.inuse == capacity(size) {
                self.unlink(class, s);
            }
            obj
        }
    }

    /// Frees `obj`, an object of class `class` from [`Slabs::alloc`].
    ///
    /// # Safety
    /// `obj` came from `alloc(class, ..)` of this value with the same `backing`, and is no
    /// longer used.
    pub unsafe fn dealloc(&mut self, obj: *mut u8, class: usize, backing: &mut dyn Backing) {
        let size = MIN_OBJECT << class;
        let s = (obj as usize & !(SLAB_BYTES - 1)) as *mut SlabHeader;
        // SAFETY: objects of this class live in slabs aligned to SLAB_BYTES whose header is at
        // the start (the caller's contract); the object is free to hold the list link.
        let (was_full, now_empty) = unsafe {
            let h = &mut *s;
            let was_full = h.inuse == capacity(size);
            obj.cast::<*mut u8>().write(h.free);
            h.free = obj;
            h.inuse -= 1;
            (was_full, h.inuse == 0)
        };
        if was_full {
            self.push_partial(class, s);
        }
        // SAFETY: `s` is on the partial list (it has a free object now).
        let alone = self.partial[class] == s && unsafe { (*s).next.is_null() };
        if now_empty && !alone {
            self.unlink(class, s);
            self.stats.slabs -= 1;
            self.stats.slab_frees += 1;
            // SAFETY: no object of the slab is in use and it is on no list.
            unsafe { backing.free_slab(s.cast()) };
        }
    }

    fn push_partial(&mut self, class: usize, s: *mut SlabHeader) {
        let head = self.partial[class];
        // SAFETY: `s` and `head` (if any) are live slabs of this class; `s` is on no list.
        unsafe {
            (*s).prev = ptr::null_mut();
            (*s).next = head;
            if !head.is_null() {
                (*head).prev = s;
            }
        }
        self.partial[class] = s;
    }

    fn unlink(&mut self, class: usize, s: *mut SlabHeader) {
        // SAFETY: `s` is on this class's partial list, so its neighbours are live slabs.
        unsafe {
            let (p, n) = ((*s).prev, (*s).next);
            if p.is_null() {
                self.partial[class] = n;
            } else {
                (*p).next = n;
            }
            if !n.is_null() {
                (*n).prev = p;
            }
            (*s).prev = ptr::null_mut();
            (*s).next = ptr::null_mut();
        }
    }
}
