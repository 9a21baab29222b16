//! [`NoReserveAllocator`]: a global allocator that keeps a lying array length in a request
//! from killing the broker.
//!
//! ## Why
//! The `kafka-protocol` crate decodes an array by reading its length and calling
//! `Vec::with_capacity(length)` before it reads any element. A 12-byte Metadata request
//! that claims 2^31 topics asks for ~150 GB up front; the system allocator refuses, and
//! Rust aborts the whole process on allocation failure — one malformed frame from any
//! client would take down every partition this broker serves.
//!
//! ## How
//! Allocations of [`HUGE_ALLOCATION_BYTES`] or more are served by an anonymous
//! `mmap(MAP_NORESERVE)` instead: the kernel reserves address space only, without
//! committing memory, so the request succeeds; the decoder then fails on the frame's
//! real end (each element needs at least one byte of input) and the mapping is unmapped
//! having touched at most as many pages as the frame could fill. Memory actually used
//! stays bounded by `socket.request.max.bytes` times the size of one decoded element.
//! Everything smaller goes to the system allocator unchanged.
//!
//! The binary installs it with `#[global_allocator]`; so do this crate's tests.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are reserved lazily with `mmap(MAP_NORESERVE)`. No
/// legitimate single buffer in the broker comes near it (frames are at most 100 MiB).
pub const HUGE_ALLOCATION_BYTES: usize = 1 << 30;
/// `mmap` returns page-aligned memory; larger alignments go to the system allocator.
const PAGE_BYTES: usize = 4096;

/// See the module docs.
pub struct NoReserveAllocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_ALLOCATION_BYTES && layout.align() <= PAGE_BYTES
}

// SAFETY: small layouts are delegated to `System` verbatim. Huge layouts get a fresh
// private anonymous mapping of exactly `layout.size()` bytes, page-aligned (so aligned for
// any `align <= PAGE_BYTES`), zero-filled, and are released with `munmap` of the same
// size; `dealloc` sees the same layout as `alloc`, so it always picks the matching path.
// The default `realloc` allocates, copies and deallocates through these two methods.
unsafe impl GlobalAlloc for NoReserveAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_huge(&layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.alloc(layout) };
        }
        // SAFETY: a new anonymous mapping; no existing memory is touched.
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
            std::ptr::null_mut()
        } else {
            p.cast()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !is_huge(&layout) {
            // SAFETY: `ptr` came from `System.alloc` with this layout.
            return unsafe { System.dealloc(ptr, layout) };
        }
        // SAFETY: `ptr` is the start of a mapping of `layout.size()` bytes made by `alloc`.
        unsafe {
            libc::munmap(ptr.cast(), layout.size());
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::{ApiKey, RequestKind};

    /// Array lengths of 2^31 (classic) and 2^32 (compact) are refused, not fatal.
    #[test]
    fn lying_array_lengths_do_not_abort() {
        let mut b = BytesMut::new();
        b.put_i32(i32::MAX);
        assert!(RequestKind::decode(ApiKey::Metadata, &mut b.freeze(), 4).is_err());
        let mut b = BytesMut::new();
        b.put_u8(0);
        b.put_i16(1);
        b.put_i32(1000);
        b.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(RequestKind::decode(ApiKey::Produce, &mut b.freeze(), 9).is_err());
    }
}
