//! Early writeback of appended log bytes.
//!
//! Left alone, the kernel lets gigabytes of a busy log sit dirty in the page cache until
//! `vm.dirty_background_ratio` is crossed, then writes them back in one burst; appends
//! landing during that burst wait behind it, and with three replicas on a disk that shows
//! up as produce tails of hundreds of milliseconds. Asking the kernel to start writing
//! each few MiB as soon as they are appended keeps the dirty set small and the disk busy
//! evenly instead. Nothing waits for this writeback: durability still comes from
//! replication and the flush policy (`flush.messages`, `flush.ms`), as in Kafka.

use std::fs::File;

/// How many appended bytes of a segment wait before their writeback is started.
pub const CHUNK: u64 = 1 << 20;

/// Starts asynchronous writeback of `len` bytes at `offset` of `file`, without waiting for
/// it. Best effort: an error only means the kernel writes the pages back later itself.
#[cfg(target_os = "linux")]
pub fn start(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    #[allow(unsafe_code)] // a system call without a safe wrapper in std; soundness below
    // SAFETY: sync_file_range takes only integers: no pointer crosses the call, so it
    // cannot touch our memory. The descriptor belongs to `file`, which the borrow keeps
    // open for the whole call, so it cannot name another file either.
    let _ = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}

#[cfg(not(target_os = "linux"))]
pub fn start(_file: &File, _offset: u64, _len: u64) {}
