//! Reusable buffers for [`crate::log::PartitionLog::read`].
//!
//! A fetch reads up to a partition's `max_bytes` (1 MiB from librdkafka and the Java
//! consumer) into a buffer that leaves the log as a [`Bytes`] and lives until the response
//! is written. A fresh buffer of that size comes from the allocator as new, untouched
//! pages: zeroing it and faulting those pages in took about a third of the broker's CPU
//! while consumers read from the page cache (`perf record` of a consume run). Buffers are
//! therefore returned to a small pool when the last `Bytes` sharing them is dropped, and a
//! reused buffer is not zeroed again: its bytes are initialised already and are
//! overwritten by the read.
//!
//! Bounded: at most [`POOLED_BUFFERS_MAX`] buffers of at most [`POOLED_BUFFER_BYTES_MAX`]
//! each are kept (32 MiB); larger reads use a buffer of their own. Reads under
//! [`POOLED_READ_BYTES_MIN`] (a consumer at the tail of the log) use a buffer of their own
//! too, from the allocator's ordinary small-block path, so that a small read never holds a
//! pooled buffer many times its size (at most 8×).

use std::sync::Mutex;

use bytes::Bytes;

/// Buffers kept for reuse, at most.
pub const POOLED_BUFFERS_MAX: usize = 16;
/// A buffer with more capacity than this is freed, not kept.
pub const POOLED_BUFFER_BYTES_MAX: usize = 2 * 1024 * 1024;
/// Smaller reads neither take a pooled buffer nor return theirs.
pub const POOLED_READ_BYTES_MIN: usize = 256 * 1024;

/// The broker's pool; tests make their own.
static POOL: Pool = Pool::new();

/// A buffer of at least `len` initialised bytes, from the pool when one is there.
pub(crate) fn take(len: usize) -> Vec<u8> {
    POOL.take(len)
}

/// The first `len` bytes of `buf` as [`Bytes`]; `buf` goes back to the pool when the last
/// clone is dropped.
pub(crate) fn into_bytes(buf: Vec<u8>, len: usize) -> Bytes {
    POOL.share(buf, len)
}

struct Pool(Mutex<Vec<Vec<u8>>>);

impl Pool {
    const fn new() -> Pool {
        Pool(Mutex::new(Vec::new()))
    }

    fn take(&self, len: usize) -> Vec<u8> {
        let reused = if (POOLED_READ_BYTES_MIN..=POOLED_BUFFER_BYTES_MAX).contains(&len) {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).pop()
        } else {
            None
        };
        let mut buf = reused.unwrap_or_default();
        if buf.len() < len {
            // Only the part never initialised is zeroed.
            buf.resize(len, 0);
        }
        buf
    }

    fn share(&'static self, buf: Vec<u8>, len: usize) -> Bytes {
        assert!(len <= buf.len());
        Bytes::from_owner(Pooled {
            buf,
            len,
            pool: self,
        })
    }

    fn put_back(&self, buf: Vec<u8>) {
        if !(POOLED_READ_BYTES_MIN..=POOLED_BUFFER_BYTES_MAX).contains(&buf.capacity()) {
            return;
        }
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOLED_BUFFERS_MAX {
            pool.push(buf);
        }
    }
}

struct Pooled {
    buf: Vec<u8>,
    len: usize,
    pool: &'static Pool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.put_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> &'static Pool {
        Box::leak(Box::new(Pool::new()))
    }

    #[test]
    fn a_returned_buffer_is_reused_and_only_its_bytes_are_seen() {
        let pool = pool();
        let mut buf = pool.take(POOLED_READ_BYTES_MIN);
        buf[..5].copy_from_slice(b"hello");
        let ptr = buf.as_ptr();
        let bytes = pool.share(buf, 5);
        assert_eq!(&bytes[..], b"hello");
        let clone = bytes.clone();
        drop(bytes);
        assert_eq!(&clone[..], b"hello", "a clone keeps the buffer alive");
        assert!(
            pool.0.lock().unwrap().is_empty(),
            "returned while still shared"
        );
        drop(clone);
        // (A larger take would grow it, and a realloc may move it.)
        let again = pool.take(POOLED_READ_BYTES_MIN);
        assert_eq!(again.as_ptr(), ptr, "the buffer was not reused");
        assert_eq!(&again[..5], b"hello", "a reused buffer is not zeroed again");
        let fresh = pool.take(POOLED_READ_BYTES_MIN);
        assert_ne!(fresh.as_ptr(), ptr, "one buffer handed out twice");
    }

    #[test]
    fn the_pool_is_bounded() {
        let pool = pool();
        let big = pool.take(POOLED_BUFFER_BYTES_MAX + 1);
        drop(pool.share(big, 1));
        assert!(
            pool.0.lock().unwrap().is_empty(),
            "an oversized buffer was kept"
        );
        drop(pool.share(pool.take(64), 64));
        assert!(
            pool.0.lock().unwrap().is_empty(),
            "a small read's buffer was kept"
        );
        let held: Vec<Bytes> = (0..POOLED_BUFFERS_MAX + 5)
            .map(|_| pool.share(pool.take(POOLED_READ_BYTES_MIN), 64))
            .collect();
        drop(held);
        assert_eq!(pool.0.lock().unwrap().len(), POOLED_BUFFERS_MAX);
        // A pooled buffer never serves a small read.
        assert!(pool.take(64).len() < POOLED_READ_BYTES_MIN);
    }
}
