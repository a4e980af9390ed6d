//! A global allocator that survives absurd allocation requests from malformed frames.
//!
//! kafka-protocol 0.18 sizes `Vec::with_capacity(n)` from array counts read off the wire
//! before it checks that the frame holds `n` elements (upstream kafka-protocol-rs PRs
//! #152, #161 and #200). An 8-byte Metadata request can ask for hundreds of GiB. With the
//! system allocator that allocation fails, and a failed allocation aborts the process:
//! one bad client would crash the node.
//!
//! Nothing Fjord itself does needs a single allocation of 1 GiB or more (requests are
//! capped by `socket.request.max.bytes`, fetches by `fetch.max.bytes`). So allocations at
//! or above that size are served by an anonymous `MAP_NORESERVE` mapping: the kernel
//! reserves address space only, no memory is committed until touched, and the decoder
//! fails on the short frame and frees the mapping without ever touching it. Everything
//! smaller goes to the system allocator unchanged.

#![allow(unsafe_code)] // one of two unsafe sites in Fjord (with storage/src/writeback.rs); soundness is argued per item below

use std::alloc::{GlobalAlloc, Layout, System};

const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

pub struct GuardedAllocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

// SAFETY: every method upholds the GlobalAlloc contract:
// - `alloc`/`alloc_zeroed` return either null or a block of at least `layout.size()` bytes
//   aligned to `layout.align()`: mmap returns page-aligned memory and we only take this
//   path when `align <= PAGE`; System handles every other layout.
// - `dealloc` receives the same layout that allocated the block (a GlobalAlloc
//   requirement on callers), so `is_huge` picks the same path: munmap for mapped blocks
//   (with the same length), System for the rest.
// - `realloc` keeps the default implementation, which is alloc + copy + dealloc through
//   the methods above, so a block never moves between the two paths inconsistently.
// - Nothing here unwinds: libc calls do not panic, and failures become null returns.
unsafe impl GlobalAlloc for GuardedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    layout.size(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return std::ptr::null_mut();
            }
            return p.cast();
        }
        // SAFETY: forwarded unchanged; the caller's guarantees about `layout` carry over.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: anonymous mappings are zero-filled by the kernel.
            return unsafe { self.alloc(layout) };
        }
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from our mmap with exactly `layout.size()` bytes.
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
            return;
        }
        // SAFETY: `ptr` came from System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_allocations_are_reserved_not_committed() {
        // 256 GiB: far above RAM, so the system allocator would fail and abort.
        let layout = Layout::from_size_align(256 << 30, 8).expect("layout");
        // SAFETY: the block is freed with the same layout and never read.
        unsafe {
            let p = GuardedAllocator.alloc(layout);
            assert!(!p.is_null());
            p.write(7);
            assert_eq!(p.read(), 7);
            GuardedAllocator.dealloc(p, layout);
        }
    }
}
