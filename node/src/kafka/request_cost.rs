//! What a request frame may cost in memory once decoded, so the request pool can charge
//! it before the bytes are read.
//!
//! The codec turns every array element into a struct, and a struct is larger than its
//! wire form: an empty compact string is one byte on the wire and 32 in memory (a
//! `Bytes`), and a struct carrying one unknown tagged field costs three bytes on the wire
//! and a B-tree node of about 400 bytes in memory. The worst element found (a JoinGroup
//! protocol with an empty name, empty metadata and one tagged field: 5 bytes, ~500 in
//! memory) decodes to about 100 times its size; the tests below measure such frames and
//! hold every API to [`MAX_DECODE_AMPLIFICATION`]. Produce frames are the exception that
//! must be large (their records are shared with the frame, not copied), so they are
//! charged their length plus the structs a quick walk of the frame finds; every other
//! API is charged [`MAX_DECODE_AMPLIFICATION`] times its length, and may be at most that
//! fraction of the pool.

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ApiKey;

/// Most memory any non-Produce request takes per byte of frame once decoded.
pub const MAX_DECODE_AMPLIFICATION: u64 = 160;

/// What a struct's unknown tagged fields cost once decoded: a B-tree leaf, plus each
/// entry's share.
const TAGGED_FIELDS_NODE: u64 = 512;
const TAGGED_FIELD_ENTRY: u64 = 48;

/// How large a frame of `api` may be, and what reading it costs up front.
pub fn frame_limit(api_key: i16, socket_max: u64, pool: u64) -> u64 {
    if api_key == ApiKey::Produce as i16 {
        socket_max.min(pool)
    } else {
        socket_max.min((pool / MAX_DECODE_AMPLIFICATION).max(16 * 1024))
    }
}

/// The charge of a frame of `len` bytes before its body is read.
pub fn upfront_charge(api_key: i16, len: u64) -> u64 {
    if api_key == ApiKey::Produce as i16 {
        len
    } else {
        len.saturating_mul(MAX_DECODE_AMPLIFICATION)
    }
}

/// What a whole Produce frame adds once decoded: one struct per topic and per partition
/// it lists. `None` when the frame does not parse (the decoder then refuses it).
pub fn produce_extra(frame: &[u8]) -> Option<u64> {
    let c = count_produce(frame)?;
    Some(
        c.topics * std::mem::size_of::<TopicProduceData>() as u64
            + c.partitions * std::mem::size_of::<PartitionProduceData>() as u64
            + c.tagged_structs * TAGGED_FIELDS_NODE
            + c.tagged_fields * TAGGED_FIELD_ENTRY,
    )
}

/// What a Produce frame lists.
#[derive(Debug, Default, PartialEq, Eq)]
struct ProduceCounts {
    topics: u64,
    partitions: u64,
    /// Structs with unknown tagged fields, and those fields.
    tagged_structs: u64,
    tagged_fields: u64,
}

struct Walk<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Walk<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..5 {
            let b = *self.take(1)?.first()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// A string or bytes field: i16/i32 length (-1 null), or compact (length + 1).
    fn skip_sized(&mut self, compact: bool, wide: bool) -> Option<()> {
        let len = if compact {
            self.uvarint()?.checked_sub(1).map_or(0, |l| l as usize)
        } else if wide {
            usize::try_from(self.i32()?).unwrap_or(0)
        } else {
            usize::try_from(self.i16()?).unwrap_or(0)
        };
        self.take(len).map(|_| ())
    }

    fn array_len(&mut self, compact: bool) -> Option<usize> {
        if compact {
            Some(self.uvarint()?.checked_sub(1).map_or(0, |l| l as usize))
        } else {
            Some(usize::try_from(self.i32()?).unwrap_or(0))
        }
    }

    /// Skips a tagged-field section, counting its fields into `c`.
    fn skip_tagged(&mut self, c: &mut ProduceCounts) -> Option<()> {
        let n = self.uvarint()?;
        for _ in 0..n {
            self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        if n > 0 {
            c.tagged_structs += 1;
            c.tagged_fields += n;
        }
        Some(())
    }
}

/// Topics, partitions and tagged fields listed in a Produce frame (header included).
fn count_produce(frame: &[u8]) -> Option<ProduceCounts> {
    let mut c = ProduceCounts::default();
    let mut w = Walk { buf: frame, pos: 0 };
    let _api = w.i16()?;
    let version = w.i16()?;
    let _correlation = w.i32()?;
    let flexible = version >= 9;
    w.skip_sized(false, false)?; // client id
    if flexible {
        w.skip_tagged(&mut c)?;
    }
    w.skip_sized(flexible, false)?; // transactional id
    w.take(6)?; // acks, timeout
    let topics = w.array_len(flexible)?;
    for _ in 0..topics {
        if version >= 13 {
            w.take(16)?; // topic id
        } else {
            w.skip_sized(flexible, false)?;
        }
        let n = w.array_len(flexible)?;
        for _ in 0..n {
            w.take(4)?; // index
            w.skip_sized(flexible, true)?; // records
            if flexible {
                w.skip_tagged(&mut c)?;
            }
        }
        c.partitions += n as u64;
        if flexible {
            w.skip_tagged(&mut c)?;
        }
    }
    c.topics = topics as u64;
    if flexible {
        w.skip_tagged(&mut c)?;
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::{ProduceRequest, RequestHeader, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn produce_frame(version: i16, topics: usize, partitions: usize) -> Vec<u8> {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1000)
            .with_topic_data(
                (0..topics)
                    .map(|t| {
                        TopicProduceData::default()
                            .with_name(TopicName(StrBytes::from_string(format!("t{t}"))))
                            .with_partition_data(
                                (0..partitions)
                                    .map(|p| {
                                        PartitionProduceData::default()
                                            .with_index(p as i32)
                                            .with_records(Some(Bytes::from_static(b"abc")))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(version)
            .with_client_id(Some(StrBytes::from_static_str("test")))
            .encode(&mut buf, ApiKey::Produce.request_header_version(version))
            .expect("header");
        req.encode(&mut buf, version).expect("body");
        buf.put_u8(0); // trailing garbage does not confuse the walk
        buf.to_vec()
    }

    #[test]
    fn produce_frames_are_counted_at_every_version() {
        for version in [3, 8, 9, 12] {
            let c = count_produce(&produce_frame(version, 3, 7)).expect("parses");
            assert_eq!((c.topics, c.partitions), (3, 21), "v{version}");
        }
        let frame = produce_frame(9, 2, 2);
        assert_eq!(count_produce(&frame[..frame.len() - 6]), None, "torn");
    }

    #[test]
    fn non_produce_frames_are_limited_to_their_share_of_the_pool() {
        let pool = 100 << 20;
        assert_eq!(
            frame_limit(ApiKey::Produce as i16, 100 << 20, pool),
            100 << 20
        );
        assert_eq!(
            frame_limit(ApiKey::Metadata as i16, 100 << 20, pool),
            pool / MAX_DECODE_AMPLIFICATION
        );
        assert_eq!(upfront_charge(ApiKey::Metadata as i16, 10), 1600);
        assert_eq!(upfront_charge(ApiKey::Produce as i16, 10), 10);
    }
}

/// Decodes crafted worst-case frames and measures what decoding allocates, holding every
/// API to [`MAX_DECODE_AMPLIFICATION`].
#[cfg(test)]
mod amplification {
    #![allow(unsafe_code)] // a counting allocator, for this test binary only

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::collections::BTreeMap;

    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::MAX_DECODE_AMPLIFICATION;
    use crate::kafka::frame::{self, Decoded};

    thread_local! {
        static NET: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    struct Counting;

    // SAFETY: forwards every call to System unchanged; the thread-local counters are
    // plain cells with const initializers, so touching them neither allocates nor
    // unwinds.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = NET.try_with(|n| {
                n.set(n.get() + layout.size() as isize);
                let _ = PEAK.try_with(|p| p.set(p.get().max(n.get())));
            });
            // SAFETY: the caller's guarantees about `layout` carry over.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            let _ = NET.try_with(|n| n.set(n.get() - layout.size() as isize));
            // SAFETY: `ptr` came from `alloc` above with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// Peak bytes allocated while decoding `frame`, beyond what existed before.
    fn decode_peak(frame: Bytes) -> isize {
        let base = NET.with(Cell::get);
        PEAK.with(|p| p.set(base));
        let decoded = frame::decode(frame);
        assert!(
            matches!(decoded, Decoded::Request { .. }),
            "the crafted frame decodes"
        );
        let peak = PEAK.with(Cell::get) - base;
        drop(decoded);
        peak
    }

    fn frame_of<T: Encodable>(api: ApiKey, version: i16, body: &T) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .encode(&mut buf, api.request_header_version(version))
            .expect("header");
        body.encode(&mut buf, version).expect("body");
        buf.freeze()
    }

    fn one_tag() -> BTreeMap<i32, Bytes> {
        BTreeMap::from([(1000, Bytes::new())])
    }

    fn check(name: &str, frame: Bytes) {
        let len = frame.len() as f64;
        let peak = decode_peak(frame) as f64;
        let ratio = peak / len;
        assert!(
            ratio <= MAX_DECODE_AMPLIFICATION as f64,
            "{name}: {peak} bytes decoded from {len} ({ratio:.0}x)"
        );
        eprintln!("{name}: {ratio:.1}x");
    }

    #[test]
    fn worst_case_frames_stay_within_the_bound() {
        let n = 20_000;
        check(
            "JoinGroup protocols with a tagged field each",
            frame_of(
                ApiKey::JoinGroup,
                9,
                &JoinGroupRequest::default().with_protocols(
                    (0..n)
                        .map(|_| {
                            join_group_request::JoinGroupRequestProtocol::default()
                                .with_unknown_tagged_fields(one_tag())
                        })
                        .collect(),
                ),
            ),
        );
        check(
            "DescribeGroups of empty names",
            frame_of(
                ApiKey::DescribeGroups,
                5,
                &DescribeGroupsRequest::default()
                    .with_groups((0..n).map(|_| GroupId(StrBytes::default())).collect()),
            ),
        );
        check(
            "IncrementalAlterConfigs entries with a tagged field each",
            frame_of(
                ApiKey::IncrementalAlterConfigs,
                1,
                &IncrementalAlterConfigsRequest::default().with_resources(vec![
                    incremental_alter_configs_request::AlterConfigsResource::default()
                        .with_configs(
                            (0..n)
                                .map(|_| {
                                    incremental_alter_configs_request::AlterableConfig::default()
                                        .with_unknown_tagged_fields(one_tag())
                                })
                                .collect(),
                        ),
                ]),
            ),
        );
        check(
            "Metadata topics with a tagged field each",
            frame_of(
                ApiKey::Metadata,
                12,
                &MetadataRequest::default().with_topics(Some(
                    (0..n)
                        .map(|_| {
                            metadata_request::MetadataRequestTopic::default()
                                .with_unknown_tagged_fields(one_tag())
                        })
                        .collect(),
                )),
            ),
        );
        check(
            "ListGroups state filters",
            frame_of(
                ApiKey::ListGroups,
                4,
                &ListGroupsRequest::default()
                    .with_states_filter((0..n).map(|_| StrBytes::default()).collect()),
            ),
        );
        let mut produce = BytesMut::new();
        produce.put_slice(&frame_of(
            ApiKey::Produce,
            9,
            &ProduceRequest::default().with_topic_data(vec![
                produce_request::TopicProduceData::default().with_partition_data(
                    (0..n)
                        .map(|i| {
                            produce_request::PartitionProduceData::default()
                                .with_index(i)
                                .with_unknown_tagged_fields(one_tag())
                        })
                        .collect(),
                ),
            ]),
        ));
        let produce = produce.freeze();
        let charge = produce.len() as u64 + super::produce_extra(&produce).expect("walks");
        let peak = decode_peak(produce) as u64;
        assert!(
            peak <= charge,
            "Produce with tagged partitions: {peak} decoded, {charge} charged"
        );
    }
}
