//! Buffers for reads of whole batches (fetches), kept for reuse.
//!
//! A fetch reads up to a partition's max bytes (1 MiB by default) into a fresh buffer
//! and drops it once the answer is sent. With several partitions per fetch, glibc hands
//! these out of the worker threads' arenas: calloc zeroes recycled memory, and each free
//! trims the arena (madvise), so the next fetch faults the same pages in again. Profiles
//! of reading six partitions showed half of the broker's CPU there (issue 34). Reusing
//! the buffers keeps their pages mapped, so a fetch costs a copy from the page cache and
//! no page faults.

use std::fs::File;
use std::sync::Mutex;

use bytes::Bytes;

/// Bytes the pool keeps at most, so a burst of large fetches does not pin memory.
const POOL_BYTES: usize = 32 << 20;
/// Buffers larger than this are not kept (a rare huge batch should not stay resident).
const MAX_KEPT: usize = 8 << 20;

static POOL: Mutex<Pool> = Mutex::new(Pool {
    buffers: Vec::new(),
    bytes: 0,
});

struct Pool {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

fn take(len: usize) -> Vec<u8> {
    let reused = POOL.lock().ok().and_then(|mut p| {
        // The smallest kept buffer that fits, else the largest (it grows once).
        let at = p
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .or_else(|| {
                p.buffers
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, b)| b.capacity())
            })
            .map(|(i, _)| i)?;
        let b = p.buffers.swap_remove(at);
        p.bytes -= b.capacity();
        Some(b)
    });
    let mut buf = reused.unwrap_or_default();
    // The buffer's length is how much of it was ever written, which is kept: reusing
    // those bytes needs no zeroing, only the part never used before does.
    buf.reserve_exact(len.saturating_sub(buf.len()));
    buf
}

fn give_back(buf: Vec<u8>) {
    if buf.capacity() > MAX_KEPT {
        return;
    }
    if let Ok(mut p) = POOL.lock() {
        if p.bytes + buf.capacity() <= POOL_BYTES {
            p.bytes += buf.capacity();
            p.buffers.push(buf);
        }
    }
}

/// A pooled buffer behind a [`Bytes`], of which the first `len` bytes are the read:
/// back to the pool when the last clone is dropped.
struct Pooled {
    buf: Vec<u8>,
    len: usize,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.buf));
    }
}

/// Reads exactly `len` bytes of `file` at `position` into a pooled buffer.
pub fn read_at(file: &File, position: u64, len: usize) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt as _;
    let mut buf = take(len);
    // Safe code reads only into initialized memory: a buffer is zeroed once, where it
    // grows, and later reads overwrite what earlier ones left.
    if buf.len() < len {
        buf.resize(len, 0);
    }
    if let Err(e) = file.read_exact_at(&mut buf[..len], position) {
        give_back(buf);
        return Err(e);
    }
    Ok(Bytes::from_owner(Pooled { buf, len }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn pooled() -> (usize, usize) {
        let p = POOL.lock().expect("pool");
        (p.buffers.len(), p.bytes)
    }

    #[test]
    fn reads_are_exact_reuse_their_buffers_and_stay_bounded() {
        let mut f = tempfile::tempfile().expect("tempfile");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).expect("write");
        let a = read_at(&f, 10, 100_000).expect("read");
        assert_eq!(&a[..], &data[10..100_010]);
        let ptr = a.as_ptr();
        drop(a);
        let (kept, bytes) = pooled();
        assert!(kept >= 1 && bytes >= 100_000, "{kept} {bytes}");
        // The same memory serves the next read (no fresh pages to fault in).
        let b = read_at(&f, 50_000, 80_000).expect("read");
        assert_eq!(&b[..], &data[50_000..130_000]);
        assert_eq!(b.as_ptr(), ptr);
        // A shorter read into the same memory shows only its own bytes, never what an
        // earlier, longer read left behind it.
        drop(b);
        let short = read_at(&f, 7, 10).expect("read");
        assert_eq!(short.len(), 10);
        assert_eq!(&short[..], &data[7..17]);
        drop(short);
        let b = read_at(&f, 50_000, 80_000).expect("read");
        // A clone keeps the buffer out of the pool until the last one goes.
        let c = b.clone();
        drop(b);
        assert_eq!(&c[..10], &data[50_000..50_010]);
        drop(c);
        // Past the end of the file: an error, and the buffer is not lost.
        let err = read_at(&f, 150_000, 100_000).expect_err("short file");
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        let (_, bytes) = pooled();
        assert!(bytes <= POOL_BYTES);
        // Huge buffers are not kept.
        let big = vec![0u8; MAX_KEPT + 1];
        let before = pooled();
        give_back(big);
        assert_eq!(pooled(), before);
    }
}
