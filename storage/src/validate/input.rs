//! Where record bytes come from: the batch itself when it is not compressed, or a
//! codec's output inflated through a fixed buffer. The record readers and checks must
//! not care which, so both sit behind one trait; and the stream buffer is reused per
//! thread here, so that a compressed batch does not cost a freshly zeroed 64 KiB.

use std::io::Read;

use crate::error::StorageError;

/// Inflated bytes read from a codec at a time. As large as an LZ4 block of Kafka's
/// clients (64 KiB), so that LZ4 inflates blocks straight into it, not into a buffer
/// of its own and then again into this one.
const STREAM_BUFFER: usize = 64 * 1024;

thread_local! {
    /// The stream buffer of this thread's last compressed batch, for its next one: a
    /// fresh one would be zeroed for every batch.
    static SPARE_STREAM_BUFFER: std::cell::Cell<Option<Box<[u8]>>> =
        const { std::cell::Cell::new(None) };
}

/// Why reading stopped.
pub(super) enum Stop {
    /// The input ended.
    End,
    /// The codec failed (its message).
    Codec(String),
    /// More than the inflation limit.
    TooLarge(usize),
}

impl Stop {
    pub(super) fn into_error(self) -> StorageError {
        match self {
            Stop::End => StorageError::InvalidRecord("the records end early".into()),
            Stop::Codec(m) => {
                StorageError::CorruptBatch(format!("cannot decompress the records: {m}"))
            }
            Stop::TooLarge(limit) => StorageError::InvalidRecord(format!(
                "the batch inflates to more than {limit} bytes"
            )),
        }
    }
}

/// A source of record bytes: the batch itself, or a codec's output.
pub(super) trait Input {
    fn next_byte(&mut self) -> std::result::Result<u8, Stop>;
    fn skip(&mut self, n: usize) -> std::result::Result<(), Stop>;
    /// Bytes consumed so far.
    fn position(&self) -> u64;
    /// The bytes at hand that follow the position, without reading more (maybe none).
    fn peek(&self) -> &[u8];
    /// Consumes `n` bytes of those [`Input::peek`] shows.
    fn advance(&mut self, n: usize);
}

pub(super) struct SliceInput<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl Input for SliceInput<'_> {
    #[inline]
    fn next_byte(&mut self) -> std::result::Result<u8, Stop> {
        let b = *self.buf.get(self.pos).ok_or(Stop::End)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn skip(&mut self, n: usize) -> std::result::Result<(), Stop> {
        if n > self.buf.len() - self.pos {
            return Err(Stop::End);
        }
        self.pos += n;
        Ok(())
    }

    fn position(&self) -> u64 {
        self.pos as u64
    }

    #[inline]
    fn peek(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    #[inline]
    fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.buf.len() - self.pos);
        self.pos += n;
    }
}

pub(super) struct StreamInput<R> {
    reader: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    /// Bytes read from the codec before `buf`'s current contents.
    before: u64,
    limit: usize,
}

impl<R: Read> StreamInput<R> {
    pub(super) fn new(reader: R, limit: usize) -> Self {
        StreamInput {
            reader,
            buf: SPARE_STREAM_BUFFER
                .try_with(|spare| spare.take())
                .ok()
                .flatten()
                .unwrap_or_else(|| vec![0u8; STREAM_BUFFER].into_boxed_slice()),
            pos: 0,
            len: 0,
            before: 0,
            limit,
        }
    }

    fn refill(&mut self) -> std::result::Result<(), Stop> {
        self.before += self.len as u64;
        self.pos = 0;
        self.len = 0;
        if self.before > self.limit as u64 {
            return Err(Stop::TooLarge(self.limit));
        }
        loop {
            match self.reader.read(&mut self.buf) {
                Ok(0) => return Err(Stop::End),
                Ok(n) => {
                    self.len = n;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Stop::Codec(e.to_string())),
            }
        }
    }
}

impl<R> Drop for StreamInput<R> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        // Gone only while the thread exits.
        let _ = SPARE_STREAM_BUFFER.try_with(|spare| spare.set(Some(buf)));
    }
}

impl<R: Read> Input for StreamInput<R> {
    #[inline]
    fn next_byte(&mut self) -> std::result::Result<u8, Stop> {
        if self.pos == self.len {
            self.refill()?;
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    fn skip(&mut self, mut n: usize) -> std::result::Result<(), Stop> {
        loop {
            let here = n.min(self.len - self.pos);
            self.pos += here;
            n -= here;
            if n == 0 {
                return Ok(());
            }
            self.refill()?;
        }
    }

    fn position(&self) -> u64 {
        self.before + self.pos as u64
    }

    #[inline]
    fn peek(&self) -> &[u8] {
        &self.buf[self.pos..self.len]
    }

    #[inline]
    fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.len - self.pos);
        self.pos += n;
    }
}
