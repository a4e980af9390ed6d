//! Reading the consumer protocol's member metadata and assignments, which the broker
//! otherwise carries as opaque bytes: OffsetDelete needs a group's subscribed topics, and
//! `fjord group describe` shows each member's partitions.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::{Decodable, Message};

/// The version prefix, clamped to what the codec knows: newer versions only append
/// fields, so an older reader still gets the ones it understands.
fn versioned(bytes: &[u8], max: i16) -> Option<(Bytes, i16)> {
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    if version < 0 {
        return None;
    }
    Some((buf, version.min(max)))
}

/// Topics a `consumer` protocol member subscribes to.
pub fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let (mut buf, version) = versioned(metadata, ConsumerProtocolSubscription::VERSIONS.max)?;
    let s = ConsumerProtocolSubscription::decode(&mut buf, version).ok()?;
    Some(s.topics.iter().map(|t| t.to_string()).collect())
}

/// Partitions assigned to a `consumer` protocol member, by topic.
pub fn assigned_partitions(assignment: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    if assignment.is_empty() {
        return Some(Vec::new());
    }
    let (mut buf, version) = versioned(assignment, ConsumerProtocolAssignment::VERSIONS.max)?;
    let a = ConsumerProtocolAssignment::decode(&mut buf, version).ok()?;
    Some(
        a.assigned_partitions
            .iter()
            .map(|tp| (tp.topic.0.to_string(), tp.partitions.clone()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn reads_subscriptions_and_assignments_of_any_version() {
        for version in 0..=3i16 {
            let s = ConsumerProtocolSubscription::default()
                .with_topics(vec![StrBytes::from_static_str("orders")]);
            let mut out = bytes::BytesMut::new();
            out.put_i16(version);
            s.encode(&mut out, version).expect("encode");
            assert_eq!(subscribed_topics(&out), Some(vec!["orders".to_string()]));
        }
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("orders")))
                .with_partitions(vec![0, 2]),
        ]);
        let mut out = bytes::BytesMut::new();
        out.put_i16(3);
        a.encode(&mut out, 3).expect("encode");
        assert_eq!(
            assigned_partitions(&out),
            Some(vec![("orders".to_string(), vec![0, 2])])
        );
        assert_eq!(subscribed_topics(&[0]), None);
        assert_eq!(assigned_partitions(&[]), Some(Vec::new()));
    }
}
