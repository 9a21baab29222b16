//! Encoded responses as lists of chunks, so that a Fetch response's records go from the
//! log's read buffer to the socket without being copied into the response.
//!
//! `kafka-protocol` encodes a message into any [`ByteBufMut`]; record bytes reach it as
//! one `put_slice` of the partition's `records`. [`ChunkedBuf`] is told beforehand which
//! [`Bytes`] the message holds (the records of each partition): a `put_slice` of exactly
//! one of them (same address and length, at least [`SHARE_MIN_BYTES`]) becomes a chunk
//! that shares that buffer; every other field is written into an owned buffer as usual.
//! The connection writes the chunks with vectored writes ([`write_response`]).
//!
//! Must never: change a byte of what the message encodes to (tests compare against the
//! plain `BytesMut` encoding), or keep a chunk that aliases anything but an immutable
//! `Bytes` the caller handed in.

use std::io::IoSlice;
use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;
use tokio::io::AsyncWriteExt;

/// Shorter slices are copied: an extra iovec entry costs more than copying them.
pub const SHARE_MIN_BYTES: usize = 4096;
/// At most this many chunks per `writev` (Linux's `IOV_MAX` is 1024).
const IOV_PER_WRITE: usize = 64;

/// A response ready to write: size prefix, header and body, in order.
#[derive(Debug, Clone, Default)]
pub struct EncodedResponse {
    chunks: Vec<Bytes>,
}

impl From<Bytes> for EncodedResponse {
    /// One chunk holding the whole response, size prefix included.
    fn from(bytes: Bytes) -> EncodedResponse {
        EncodedResponse {
            chunks: vec![bytes],
        }
    }
}

impl EncodedResponse {
    /// Bytes on the wire, size prefix included.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.iter().all(Bytes::is_empty)
    }

    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }
}

/// A [`ByteBufMut`] that shares the given buffers instead of copying them (module docs).
pub struct ChunkedBuf<'a> {
    shared: &'a [Bytes],
    /// Where the next shared buffer is looked for first (they are encoded in order).
    cursor: usize,
    /// The first owned chunk, kept mutable so the size prefix can be filled in last.
    first: Option<BytesMut>,
    done: Vec<Bytes>,
    done_len: usize,
    head: BytesMut,
}

impl<'a> ChunkedBuf<'a> {
    /// `capacity` is reserved for the owned bytes; `shared` lists the buffers to share.
    pub fn new(capacity: usize, shared: &'a [Bytes]) -> ChunkedBuf<'a> {
        ChunkedBuf {
            shared,
            cursor: 0,
            first: None,
            done: Vec::new(),
            done_len: 0,
            head: BytesMut::with_capacity(capacity),
        }
    }

    fn find_shared(&mut self, src: &[u8]) -> Option<Bytes> {
        if src.len() < SHARE_MIN_BYTES {
            return None;
        }
        let same = |b: &Bytes| b.as_ptr() == src.as_ptr() && b.len() == src.len();
        let n = self.shared.len();
        let at = (0..n)
            .map(|i| (self.cursor + i) % n)
            .find(|&i| same(&self.shared[i]))?;
        self.cursor = at + 1;
        Some(self.shared[at].clone())
    }

    /// Moves the owned bytes written so far into the chunk list.
    fn close_head(&mut self) {
        if self.head.is_empty() {
            return;
        }
        let owned = self.head.split();
        self.done_len += owned.len();
        if self.first.is_none() && self.done.is_empty() {
            self.first = Some(owned);
        } else {
            self.done.push(owned.freeze());
        }
    }

    /// Everything back into one owned buffer (for a `seek`/`range` into closed chunks,
    /// which no message encoding does today; correct, just not zero-copy).
    fn flatten(&mut self) {
        if self.first.is_none() && self.done.is_empty() {
            return;
        }
        let mut all = BytesMut::with_capacity(self.done_len + self.head.len());
        if let Some(first) = self.first.take() {
            all.put_slice(&first);
        }
        for c in self.done.drain(..) {
            all.put_slice(&c);
        }
        all.put_slice(&self.head);
        self.head = all;
        self.done_len = 0;
    }

    /// The chunks, with the first four bytes (written as a placeholder by the caller)
    /// set to the big-endian length of everything after them.
    pub fn finish_with_size_prefix(mut self) -> EncodedResponse {
        let len = self.offset();
        assert!(len >= 4, "the size prefix was written first");
        if self.first.is_none() && !self.done.is_empty() {
            // A shared buffer came first: the prefix is not in an owned chunk.
            self.flatten();
        }
        let size = ((len - 4) as i32).to_be_bytes();
        let mut chunks = Vec::with_capacity(self.done.len() + 2);
        match self.first.take() {
            Some(mut first) => {
                first[..4].copy_from_slice(&size);
                chunks.push(first.freeze());
                chunks.append(&mut self.done);
                if !self.head.is_empty() {
                    chunks.push(self.head.freeze());
                }
            }
            None => {
                // Nothing was shared: one owned chunk.
                self.head[..4].copy_from_slice(&size);
                chunks.push(self.head.freeze());
            }
        }
        EncodedResponse { chunks }
    }
}

// SAFETY: every method delegates to `head`, a `BytesMut`, with the same arguments and its
// own guarantees (`chunk_mut` returns `head`'s spare capacity; `advance_mut` advances
// over it); `put_slice` either does the same or appends whole chunks without touching
// `head`'s spare capacity.
unsafe impl BufMut for ChunkedBuf<'_> {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's contract for `BufMut::advance_mut`, passed on.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.find_shared(src) {
            Some(shared) => {
                self.close_head();
                self.done_len += shared.len();
                self.done.push(shared);
            }
            None => self.head.put_slice(src),
        }
    }
}

impl ByteBufMut for ChunkedBuf<'_> {
    fn offset(&self) -> usize {
        self.done_len + self.head.len()
    }

    fn seek(&mut self, offset: usize) {
        if offset < self.done_len {
            self.flatten();
        }
        self.head.resize(offset - self.done_len, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        if r.start < self.done_len {
            self.flatten();
        }
        &mut self.head[r.start - self.done_len..r.end - self.done_len]
    }
}

/// Writes every chunk, in order, with as few `writev` calls as the socket allows.
pub async fn write_response<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    response: &EncodedResponse,
) -> std::io::Result<()> {
    let mut chunks = response.chunks();
    // Bytes of chunks[0] already written.
    let mut skip = 0usize;
    while let Some(first) = chunks.first() {
        if chunks.len() == 1 {
            return writer.write_all(&first[skip..]).await;
        }
        let slices: Vec<IoSlice<'_>> = std::iter::once(IoSlice::new(&first[skip..]))
            .chain(chunks[1..].iter().map(|c| IoSlice::new(c)))
            .take(IOV_PER_WRITE)
            .collect();
        let mut n = writer.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        // Drop the chunks written whole; remember how far into the next one we got.
        while let Some(c) = chunks.first() {
            let left = c.len() - skip;
            if n < left {
                skip += n;
                break;
            }
            n -= left;
            skip = 0;
            chunks = &chunks[1..];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    impl EncodedResponse {
        /// All chunks in one buffer.
        fn to_bytes(&self) -> Vec<u8> {
            self.chunks.concat()
        }
    }

    fn fetch(records: &[Bytes]) -> kafka_protocol::messages::FetchResponse {
        use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        kafka_protocol::messages::FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default().with_partitions(
                records
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        PartitionData::default()
                            .with_partition_index(i as i32)
                            .with_records(Some(r.clone()))
                    })
                    .collect(),
            ),
        ])
    }

    fn plain(response: &kafka_protocol::messages::FetchResponse, version: i16) -> Vec<u8> {
        let mut b = BytesMut::new();
        b.put_i32(0);
        response.encode(&mut b, version).unwrap();
        let size = (b.len() - 4) as i32;
        b[..4].copy_from_slice(&size.to_be_bytes());
        b.to_vec()
    }

    fn chunked(
        response: &kafka_protocol::messages::FetchResponse,
        version: i16,
        shared: &[Bytes],
    ) -> EncodedResponse {
        let mut buf = ChunkedBuf::new(64, shared);
        buf.put_i32(0);
        response.encode(&mut buf, version).unwrap();
        buf.finish_with_size_prefix()
    }

    fn bytes(len: usize, seed: u8) -> Bytes {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn same_bytes_as_the_plain_encoding_with_large_records_shared() {
        let records = vec![
            bytes(10_000, 1),
            bytes(100, 2),
            Bytes::new(),
            bytes(SHARE_MIN_BYTES, 3),
            bytes(70_000, 4),
        ];
        for version in [4, 11, 12, 16] {
            let response = fetch(&records);
            let encoded = chunked(&response, version, &records);
            assert_eq!(encoded.to_bytes(), plain(&response, version), "v{version}");
            assert_eq!(encoded.len(), encoded.to_bytes().len());
            // The three large ones are shared, not copied.
            let shared = encoded
                .chunks()
                .iter()
                .filter(|c| {
                    records
                        .iter()
                        .any(|r| r.as_ptr() == c.as_ptr() && !r.is_empty())
                })
                .count();
            assert_eq!(shared, 3, "v{version}: {:?}", encoded.chunks().len());
        }
    }

    #[test]
    fn unlisted_buffers_are_copied() {
        let records = vec![bytes(50_000, 9)];
        let response = fetch(&records);
        let encoded = chunked(&response, 12, &[]);
        assert_eq!(encoded.chunks().len(), 1);
        assert_eq!(encoded.to_bytes(), plain(&response, 12));
    }

    #[test]
    fn seek_and_range_into_closed_chunks_still_encode_correctly() {
        let shared = vec![bytes(8192, 5)];
        let mut buf = ChunkedBuf::new(16, &shared);
        buf.put_i32(0);
        let gap = buf.put_gap(4);
        buf.put_slice(&shared[0]);
        buf.put_u8(7);
        buf.gap_buf(gap).copy_from_slice(&[1, 2, 3, 4]);
        let encoded = buf.finish_with_size_prefix();
        let mut expected = (4i32 + 8192 + 1).to_be_bytes().to_vec();
        expected.extend_from_slice(&[1, 2, 3, 4]);
        expected.extend_from_slice(&shared[0]);
        expected.push(7);
        assert_eq!(encoded.to_bytes(), expected);
    }

    /// A writer that takes at most `step` bytes per call, vectored or not.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
    }

    impl tokio::io::AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let mut left = self.step;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(left);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                left -= take;
                if left == 0 {
                    break;
                }
            }
            std::task::Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn partial_vectored_writes_write_every_byte_in_order() {
        let records: Vec<Bytes> = (0..100).map(|i| bytes(5000 + i * 7, i as u8)).collect();
        let response = fetch(&records);
        let encoded = chunked(&response, 12, &records);
        assert!(encoded.chunks().len() > IOV_PER_WRITE);
        for step in [1, 3, 4095, 4096, 5003, 1 << 20] {
            let mut w = Trickle {
                out: Vec::new(),
                step,
            };
            write_response(&mut w, &encoded).await.unwrap();
            assert_eq!(w.out, plain(&response, 12), "step {step}");
        }
    }
}
