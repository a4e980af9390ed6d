//! Response frames that share record batches with the log read instead of copying them.
//!
//! A Fetch answer is mostly record batches read from segment files. Encoding it into one
//! contiguous buffer copied every batch once more, so for a moment the node held each
//! answer twice: with many partitions and a consumer or follower catching up, that is
//! tens of MiB per connection. The frame keeps the batches as they were read and the
//! socket takes the pieces with vectored writes.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Batches smaller than this are copied: an iovec of its own costs more than the copy.
pub const SPLICE_MIN: usize = 4096;

/// One response as the socket takes it: encoded pieces and shared batches, in order.
#[derive(Debug, Default)]
pub struct ResponseFrame {
    parts: VecDeque<Bytes>,
    remaining: usize,
}

impl ResponseFrame {
    pub fn len(&self) -> usize {
        self.remaining
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// How many separate pieces the socket will be handed.
    #[cfg(test)]
    pub(crate) fn pieces(&self) -> usize {
        self.parts.len()
    }

    fn push_back(&mut self, part: Bytes) {
        if !part.is_empty() {
            self.remaining += part.len();
            self.parts.push_back(part);
        }
    }

    fn push_front(&mut self, part: Bytes) {
        if !part.is_empty() {
            self.remaining += part.len();
            self.parts.push_front(part);
        }
    }
}

impl From<Bytes> for ResponseFrame {
    fn from(bytes: Bytes) -> Self {
        let mut frame = ResponseFrame::default();
        frame.push_back(bytes);
        frame
    }
}

impl Buf for ResponseFrame {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map(|p| p.as_ref()).unwrap_or(&[])
    }

    fn advance(&mut self, mut cnt: usize) {
        while cnt > 0 {
            let Some(front) = self.parts.front_mut() else {
                break;
            };
            let n = cnt.min(front.len());
            front.advance(n);
            cnt -= n;
            self.remaining -= n;
            if front.is_empty() {
                self.parts.pop_front();
            }
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, part) in dst.iter_mut().zip(self.parts.iter()) {
            *slot = IoSlice::new(part);
            n += 1;
        }
        n
    }
}

/// An encoding target that takes the listed batches by reference instead of copying
/// them. The message encoder writes a bytes field with one `put_slice` of the whole
/// value, in message order; a slice with exactly the address and length of the next
/// listed batch is that batch (the memory is the same, and `Bytes` never changes), so
/// the batch itself is queued and the copy skipped. Anything unexpected is just copied.
pub struct SplicingBuf {
    head: BytesMut,
    frame: ResponseFrame,
    batches: std::vec::IntoIter<Bytes>,
    next: Option<Bytes>,
}

impl SplicingBuf {
    /// `batches` in the order the encoder writes them; `capacity` is for the rest.
    pub fn new(batches: Vec<Bytes>, capacity: usize) -> Self {
        let mut batches = batches.into_iter();
        let next = batches.next();
        SplicingBuf {
            head: BytesMut::with_capacity(capacity),
            frame: ResponseFrame::default(),
            batches,
            next,
        }
    }

    /// The encoded message behind a 4-byte big-endian length, as Kafka frames it.
    pub fn into_frame(mut self) -> anyhow::Result<ResponseFrame> {
        let tail = self.head.split().freeze();
        self.frame.push_back(tail);
        let len = i32::try_from(self.frame.len())
            .map_err(|_| anyhow::anyhow!("response of {} bytes", self.frame.len()))?;
        self.frame
            .push_front(Bytes::copy_from_slice(&len.to_be_bytes()));
        Ok(self.frame)
    }

    /// Gives up sharing: everything so far is joined into `head`, so positions before
    /// the end can be addressed again. The message encoders never need this (only the
    /// record-batch writer seeks), but the trait allows it.
    fn flatten(&mut self) {
        if self.frame.is_empty() {
            return;
        }
        let mut joined = BytesMut::with_capacity(self.frame.len() + self.head.len());
        for part in self.frame.parts.drain(..) {
            joined.extend_from_slice(&part);
        }
        self.frame.remaining = 0;
        joined.extend_from_slice(&self.head);
        self.head = joined;
        self.next = None;
    }
}

// SAFETY: every required method delegates to `BytesMut`, whose implementation upholds
// the trait's contract (`chunk_mut` hands out its spare capacity, `advance_mut` only
// counts bytes the caller initialised there). `put_slice` adds bookkeeping around safe
// calls and never touches memory itself.
#[allow(unsafe_code)] // `BufMut` is an unsafe trait to implement; soundness above
unsafe impl BufMut for SplicingBuf {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's promise (the first `cnt` bytes of `chunk_mut` are
        // initialised) is passed on unchanged to the buffer that handed out that chunk.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        let is_next = self
            .next
            .as_ref()
            .is_some_and(|b| b.as_ptr() == src.as_ptr() && b.len() == src.len());
        if is_next {
            let before = self.head.split().freeze();
            self.frame.push_back(before);
            if let Some(batch) = self.next.take() {
                self.frame.push_back(batch);
            }
            self.next = self.batches.next();
            return;
        }
        self.head.put_slice(src);
    }
}

impl ByteBufMut for SplicingBuf {
    fn offset(&self) -> usize {
        self.frame.len() + self.head.len()
    }

    fn seek(&mut self, offset: usize) {
        if offset < self.frame.len() {
            self.flatten();
        }
        let base = self.frame.len();
        self.head.resize(offset - base, 0);
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        if r.start < self.frame.len() {
            self.flatten();
        }
        let base = self.frame.len();
        &mut self.head[r.start - base..r.end - base]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut frame: ResponseFrame) -> Vec<u8> {
        frame.copy_to_bytes(frame.remaining()).to_vec()
    }

    #[test]
    fn listed_batches_are_shared_and_the_bytes_are_unchanged() {
        let a = Bytes::from(vec![1u8; 5000]);
        let b = Bytes::from(vec![2u8; 6000]);
        let mut buf = SplicingBuf::new(vec![a.clone(), b.clone()], 64);
        buf.put_i16(7);
        buf.put_slice(&a);
        buf.put_slice(b"xy");
        buf.put_slice(&b);
        let frame = buf.into_frame().expect("frame");
        assert_eq!(frame.pieces(), 5, "length, head, a, middle, b");
        let mut expected = (2 + 5000 + 2 + 6000i32).to_be_bytes().to_vec();
        expected.extend_from_slice(&7i16.to_be_bytes());
        expected.extend_from_slice(&a);
        expected.extend_from_slice(b"xy");
        expected.extend_from_slice(&b);
        assert_eq!(drain(frame), expected);
    }

    #[test]
    fn an_equal_copy_elsewhere_in_memory_is_copied_not_shared() {
        let a = Bytes::from(vec![1u8; 5000]);
        let copy = a.to_vec();
        let mut buf = SplicingBuf::new(vec![a.clone()], 64);
        buf.put_slice(&copy);
        let frame = buf.into_frame().expect("frame");
        assert_eq!(frame.pieces(), 2, "length and one copied piece");
        assert_eq!(drain(frame).len(), 4 + 5000);
    }

    #[test]
    fn seeking_back_into_shared_pieces_joins_them_and_stays_correct() {
        let a = Bytes::from(vec![3u8; 5000]);
        let mut buf = SplicingBuf::new(vec![a.clone()], 64);
        buf.put_u8(9);
        buf.put_slice(&a);
        buf.put_u8(8);
        buf.range(0..1)[0] = 4;
        assert_eq!(buf.offset(), 5002);
        let bytes = drain(buf.into_frame().expect("frame"));
        assert_eq!(bytes[4], 4);
        assert_eq!(&bytes[5..5005], &a[..]);
        assert_eq!(bytes[5005], 8);
    }

    #[test]
    fn vectored_chunks_and_partial_advances_walk_the_pieces_in_order() {
        let mut frame = ResponseFrame::from(Bytes::from_static(b"abc"));
        frame.push_back(Bytes::from_static(b"defg"));
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(frame.chunks_vectored(&mut slices), 2);
        frame.advance(4);
        assert_eq!(frame.chunk(), b"efg");
        assert_eq!(frame.remaining(), 3);
        frame.advance(3);
        assert!(frame.is_empty());
    }
}
