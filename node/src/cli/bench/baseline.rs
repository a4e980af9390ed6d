//! The machine's own limits, measured so broker figures can be read as ratios of them:
//! one TCP stream over loopback, and sequential buffered writes into the data directory.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cli::CliError;

const CHUNK: usize = 1 << 20;
const MIB: f64 = 1024.0 * 1024.0;

/// MiB/s through one loopback TCP connection for `duration`.
pub fn loopback(duration: Duration) -> Result<f64, CliError> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    });
    let mut out = TcpStream::connect(addr)?;
    let buf = vec![b'x'; CHUNK];
    let started = Instant::now();
    while started.elapsed() < duration {
        out.write_all(&buf)?;
    }
    drop(out);
    let total = reader
        .join()
        .map_err(|_| CliError::Kafka("loopback reader panicked".into()))??;
    Ok(total as f64 / MIB / started.elapsed().as_secs_f64())
}

/// MiB/s of sequential 1 MiB writes to a new file in `dir` (buffered, as a broker's log
/// appends are), `bytes` in all, until they are on disk; the file is removed afterwards.
/// The clock stops after the fsync: without it the figure was whatever the page cache
/// absorbed before writeback throttled, anywhere from the disk's rate to memcpy speed
/// depending on what was dirty already, while a broker's sustained rate is the disk's.
pub fn disk_write(dir: &Path, bytes: u64) -> Result<f64, CliError> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(".fjord-bench-{}", std::process::id()));
    let buf = vec![b'x'; CHUNK];
    let started = Instant::now();
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&path)?;
        let mut written = 0u64;
        while written < bytes {
            f.write_all(&buf)?;
            written += CHUNK as u64;
        }
        f.sync_all()
    })();
    let elapsed = started.elapsed();
    let _ = std::fs::remove_file(&path);
    result?;
    Ok(bytes as f64 / MIB / elapsed.as_secs_f64())
}
