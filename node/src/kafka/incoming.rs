//! Reading request frames under the node's request memory budget. A frame's length and
//! API key are read first, and a frame that could never fit is refused before a byte of
//! its body is buffered. The body is then charged to the [`RequestPool`] as it arrives,
//! in chunks that double (64 KiB, 128 KiB, ...), each at what it may cost once decoded:
//! a header that claims 100 MiB and sends nothing more holds one chunk, not the pool.
//!
//! A frame that has started must keep moving: one that gets neither bytes nor pool
//! memory for [`PARTIAL_FRAME_TIMEOUT`] closes its connection. That also ends the one
//! deadlock charging as bytes arrive allows, partial frames that between them hold the
//! whole pool and each wait for more.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::OwnedSemaphorePermit;

use super::request_cost;
use crate::memory::RequestPool;

/// The smallest request: API key, version and correlation id.
const MIN_FRAME: usize = 8;
/// The smallest bare SASL token read (the length and two bytes are read up front).
const MIN_BARE_FRAME: usize = 2;
/// The first piece of a body charged to the pool; each later one doubles what is held.
const FIRST_CHUNK: usize = 64 * 1024;
/// How long a frame that has started may go without a byte or a grant from the pool.
pub const PARTIAL_FRAME_TIMEOUT: Duration = Duration::from_secs(15);

/// A request frame and its share of the request pool, held until it has been handled.
#[derive(Debug)]
pub struct Admitted {
    pub frame: Bytes,
    pub permit: OwnedSemaphorePermit,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is too short for a request header")]
    TooShort { len: usize },
    #[error(
        "a frame of {len} bytes (api key {api_key}) is larger than the {limit} allowed \
         (socket.request.max.bytes, and queued.max.request.bytes/{} for APIs other than Produce)",
        request_cost::MAX_DECODE_AMPLIFICATION
    )]
    TooLarge {
        len: usize,
        api_key: i16,
        limit: u64,
    },
    #[error("a produce request would take {cost} bytes once decoded, more than queued.max.request.bytes={pool}")]
    TooCostly { cost: u64, pool: u64 },
    #[error("a partial frame made no progress for {0:?}")]
    Stalled(Duration),
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

enum State {
    /// Reading the 4-byte length and the 2-byte API key.
    Head { buf: [u8; 6], got: usize },
    /// Reading the body; `charged` bytes of it are covered by `permit`, and the next
    /// chunk is charged once they have arrived.
    Body {
        buf: BytesMut,
        len: usize,
        api_key: i16,
        charged: usize,
        permit: Option<OwnedSemaphorePermit>,
    },
    /// A whole Produce frame, waiting for the rest of its decoded cost.
    Extra {
        frame: Bytes,
        permit: OwnedSemaphorePermit,
        extra: u64,
    },
}

/// Reads frames from one connection. [`FrameReader::next`] is cancel-safe: its progress
/// lives in the reader, so a connection may race it against writing responses.
pub struct FrameReader<R> {
    rd: R,
    pool: Arc<RequestPool>,
    socket_max: u64,
    min_frame: usize,
    /// [`PARTIAL_FRAME_TIMEOUT`], shorter in tests.
    stall_timeout: Duration,
    state: State,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(rd: R, pool: Arc<RequestPool>, socket_max: u64) -> Self {
        FrameReader {
            rd,
            pool,
            socket_max,
            min_frame: MIN_FRAME,
            stall_timeout: PARTIAL_FRAME_TIMEOUT,
            state: State::Head {
                buf: [0; 6],
                got: 0,
            },
        }
    }

    /// Changes the largest frame accepted from the next one on (a SASL client may send
    /// only small frames until it has authenticated).
    pub fn set_max_frame(&mut self, socket_max: u64) {
        self.socket_max = socket_max;
    }

    /// Lets the next frames be shorter than a request header: bare SASL tokens after a
    /// v0 handshake.
    pub fn allow_bare_frames(&mut self, allow: bool) {
        self.min_frame = if allow { MIN_BARE_FRAME } else { MIN_FRAME };
    }

    /// Whether part of a frame has been read (its timeout, not the idle one, applies).
    pub fn mid_frame(&self) -> bool {
        !matches!(self.state, State::Head { got: 0, .. })
    }

    /// The next admitted frame, or `None` when the peer closed between frames.
    pub async fn next(&mut self) -> Result<Option<Admitted>, FrameError> {
        loop {
            let mid_frame = self.mid_frame();
            match &mut self.state {
                State::Head { buf, got } => {
                    let read = stalls(
                        self.stall_timeout,
                        mid_frame,
                        self.rd.read(&mut buf[*got..]),
                    )
                    .await?;
                    let n = match read {
                        Ok(n) => n,
                        // Between frames, a TLS peer that leaves without close_notify (most
                        // Kafka clients) or a reset is a client going away, not an error.
                        Err(e)
                            if *got == 0
                                && matches!(
                                    e.kind(),
                                    std::io::ErrorKind::UnexpectedEof
                                        | std::io::ErrorKind::ConnectionReset
                                ) =>
                        {
                            0
                        }
                        Err(e) => return Err(e.into()),
                    };
                    if n == 0 {
                        if *got == 0 {
                            return Ok(None);
                        }
                        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                    }
                    let before = *got;
                    *got += n;
                    if before < 4 && *got >= 4 {
                        // Judge the length as soon as it is known: a client may send
                        // nothing more until it hears back.
                        let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                        if len < self.min_frame as i32 {
                            return Err(FrameError::TooShort {
                                len: len.max(0) as usize,
                            });
                        }
                        if len as u64 > self.socket_max {
                            return Err(FrameError::TooLarge {
                                len: len as usize,
                                api_key: -1,
                                limit: self.socket_max,
                            });
                        }
                    }
                    if *got < buf.len() {
                        continue;
                    }
                    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                    let api_key = i16::from_be_bytes([buf[4], buf[5]]);
                    let limit =
                        request_cost::frame_limit(api_key, self.socket_max, self.pool.capacity());
                    if len as u64 > limit {
                        return Err(FrameError::TooLarge {
                            len,
                            api_key,
                            limit,
                        });
                    }
                    // The whole body's buffer is allocated now but written only as
                    // bytes arrive: pages never written are never resident, and a
                    // buffer grown as it filled would be copied, briefly holding both.
                    let mut buf = BytesMut::with_capacity(len);
                    buf.put_slice(&api_key.to_be_bytes());
                    self.state = State::Body {
                        buf,
                        len,
                        api_key,
                        charged: 0,
                        permit: None,
                    };
                }
                State::Body {
                    buf,
                    len,
                    api_key,
                    charged,
                    permit,
                } => {
                    if buf.len() < *len && buf.len() >= *charged {
                        // The bytes charged so far have arrived: charge the next chunk
                        // before reading it. Cancel-safe: nothing changes until the
                        // grant is in hand.
                        let target = (*len).min((*charged * 2).max(FIRST_CHUNK));
                        let cost =
                            request_cost::upfront_charge(*api_key, (target - *charged) as u64);
                        let more =
                            stalls(self.stall_timeout, true, self.pool.acquire(cost)).await?;
                        match permit {
                            Some(p) => p.merge(more),
                            None => *permit = Some(more),
                        }
                        *charged = target;
                        continue;
                    }
                    if buf.len() < *len {
                        let want = *charged - buf.len();
                        let mut rest = (&mut *buf).limit(want);
                        if stalls(self.stall_timeout, true, self.rd.read_buf(&mut rest)).await??
                            == 0
                        {
                            return Err(
                                std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()
                            );
                        }
                        continue;
                    }
                    let State::Body { buf, permit, .. } = self.take_state() else {
                        unreachable!("matched above")
                    };
                    let frame = buf.freeze();
                    // A frame is at least a request header, so its body was charged.
                    let Some(permit) = permit else {
                        return Err(FrameError::TooShort { len: frame.len() });
                    };
                    if frame.get(..2) == Some(&(ApiKey::Produce as i16).to_be_bytes()[..]) {
                        let extra = request_cost::produce_extra(&frame).unwrap_or(0);
                        let cost = permit.num_permits() as u64 + extra;
                        if cost > self.pool.capacity() {
                            return Err(FrameError::TooCostly {
                                cost,
                                pool: self.pool.capacity(),
                            });
                        }
                        if extra > 0 {
                            self.state = State::Extra {
                                frame,
                                permit,
                                extra,
                            };
                            continue;
                        }
                    }
                    return Ok(Some(Admitted { frame, permit }));
                }
                State::Extra { extra, .. } => {
                    let more = stalls(self.stall_timeout, true, self.pool.acquire(*extra)).await?;
                    let State::Extra {
                        frame, mut permit, ..
                    } = self.take_state()
                    else {
                        unreachable!("matched above")
                    };
                    permit.merge(more);
                    return Ok(Some(Admitted { frame, permit }));
                }
            }
        }
    }

    fn take_state(&mut self) -> State {
        std::mem::replace(
            &mut self.state,
            State::Head {
                buf: [0; 6],
                got: 0,
            },
        )
    }
}

/// Awaits `f`, giving up after `timeout` when a frame is under way.
async fn stalls<T>(
    timeout: Duration,
    mid_frame: bool,
    f: impl std::future::Future<Output = T>,
) -> Result<T, FrameError> {
    if !mid_frame {
        return Ok(f.await);
    }
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| FrameError::Stalled(timeout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn frame(api: ApiKey, body_len: usize) -> Vec<u8> {
        let mut f = ((body_len + 8) as i32).to_be_bytes().to_vec();
        f.extend_from_slice(&(api as i16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 0, 7]);
        f.resize(f.len() + body_len, 0xab);
        f
    }

    #[tokio::test]
    async fn frames_are_read_whole_and_hold_their_charge() {
        let (mut client, server) = tokio::io::duplex(64);
        let pool = Arc::new(RequestPool::new(1 << 20));
        let mut reader = FrameReader::new(server, Arc::clone(&pool), 1 << 20);
        let mut bytes = frame(ApiKey::Metadata, 100);
        bytes.extend(frame(ApiKey::Fetch, 10));
        let writer = tokio::spawn(async move {
            client.write_all(&bytes).await.expect("write");
            client
        });
        let first = reader.next().await.expect("reads").expect("a frame");
        assert_eq!(first.frame.len(), 108);
        assert_eq!(
            pool.in_use(),
            108 * request_cost::MAX_DECODE_AMPLIFICATION,
            "charged at its decoded worst case"
        );
        let second = reader.next().await.expect("reads").expect("a frame");
        assert_eq!(second.frame.len(), 18);
        drop((first, second));
        assert_eq!(pool.in_use(), 0);
        drop(writer.await.expect("writer"));
        assert!(reader.next().await.expect("clean end").is_none());
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_before_their_body_is_read() {
        let pool = Arc::new(RequestPool::new(1 << 20));
        let (mut client, server) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(server, Arc::clone(&pool), 1 << 20);
        // A Metadata frame may be at most 1 MiB / 160.
        client
            .write_all(&frame(ApiKey::Metadata, 100_000)[..16])
            .await
            .expect("write");
        assert!(matches!(
            reader.next().await,
            Err(FrameError::TooLarge { .. })
        ));
        let (mut client, server) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(server, Arc::clone(&pool), 1 << 20);
        // Only the length: it is judged before anything else arrives.
        client
            .write_all(&i32::MAX.to_be_bytes())
            .await
            .expect("write");
        assert!(matches!(
            reader.next().await,
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(pool.in_use(), 0);
    }

    #[tokio::test]
    async fn a_frame_waits_for_the_pool_with_its_body_unread() {
        let pool = Arc::new(RequestPool::new(1 << 20));
        let held = pool.acquire(1 << 20).await;
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut reader = FrameReader::new(server, Arc::clone(&pool), 1 << 20);
        client
            .write_all(&frame(ApiKey::Produce, 1000))
            .await
            .expect("write");
        {
            let next = reader.next();
            tokio::pin!(next);
            assert!(futures::poll!(next.as_mut()).is_pending());
        } // cancelled while waiting: nothing is lost
        drop(held);
        let admitted = reader.next().await.expect("reads").expect("a frame");
        assert_eq!(admitted.frame.len(), 1008);
    }

    #[tokio::test]
    async fn a_body_is_charged_as_it_arrives() {
        let pool = Arc::new(RequestPool::new(8 << 20));
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut reader = FrameReader::new(server, Arc::clone(&pool), 8 << 20);
        // A header claiming 8 MiB, and 100 bytes of it.
        let whole = frame(ApiKey::Produce, (8 << 20) - 8);
        client.write_all(&whole[..100]).await.expect("write");
        {
            let next = reader.next();
            tokio::pin!(next);
            assert!(futures::poll!(next.as_mut()).is_pending());
            assert_eq!(
                pool.in_use(),
                FIRST_CHUNK as u64,
                "only the first chunk is charged"
            );
            let rest = tokio::spawn(async move {
                client.write_all(&whole[100..]).await.expect("write");
                client
            });
            let admitted = next.await.expect("reads").expect("a frame");
            assert_eq!(admitted.frame.len(), 8 << 20);
            assert_eq!(
                pool.in_use(),
                8 << 20,
                "the whole frame is charged once read"
            );
            drop(rest);
        }
    }

    #[tokio::test]
    async fn a_frame_that_stops_arriving_times_out_and_frees_its_charge() {
        let pool = Arc::new(RequestPool::new(1 << 20));
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut reader = FrameReader::new(server, Arc::clone(&pool), 1 << 20);
        reader.stall_timeout = Duration::from_millis(100);
        client
            .write_all(&frame(ApiKey::Produce, 1000)[..14])
            .await
            .expect("write");
        assert!(matches!(reader.next().await, Err(FrameError::Stalled(_))));
        drop(reader);
        assert_eq!(pool.in_use(), 0);
        // Between frames nothing times out: an idle connection is the idle timeout's.
        let (_client, server) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(server, Arc::clone(&pool), 1 << 20);
        reader.stall_timeout = Duration::from_millis(100);
        let next = reader.next();
        assert!(
            tokio::time::timeout(Duration::from_millis(500), next)
                .await
                .is_err(),
            "still waiting"
        );
    }
}
