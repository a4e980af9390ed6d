//! DescribeTopicPartitions (KIP-966): topics and their partitions page by page, which
//! Admin clients use for describeTopics on clusters with many partitions.

use fjord_controller::metadata::acls::ResourceType;
use fjord_controller::metadata::TopicState;
use fjord_controller::ClusterMetadata;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, ResponseKind,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::metadata::partition_view;

/// Kafka's max.request.partition.size.limit: the most partitions one answer carries,
/// whatever the client asks for.
pub const MAX_PARTITIONS_PER_RESPONSE: i32 = 2000;

/// A topic's place in an answer: partitions `first..end` of it, or why it has none.
type Slice<'a> = Result<(&'a TopicState, usize, usize), ResponseError>;

/// What one answer holds, and the first partition left for the next request.
struct Page<'a> {
    topics: Vec<(&'a str, Slice<'a>)>,
    next: Option<(String, i32)>,
}

/// Pages `names` (sorted, deduplicated), starting at `cursor`: whole topics while they
/// fit, then part of one, as Kafka does. Topics answered with an error take no room.
fn paginate<'a>(
    md: &'a ClusterMetadata,
    names: &'a [String],
    cursor: Option<(&str, i32)>,
    limit: usize,
    allowed: impl Fn(&str) -> bool,
) -> Page<'a> {
    let mut page = Page {
        topics: Vec::new(),
        next: None,
    };
    let mut room = limit;
    for name in names {
        let mut first = 0usize;
        if let Some((topic, partition)) = cursor {
            if name.as_str() < topic {
                continue;
            }
            if name.as_str() == topic {
                first = usize::try_from(partition).unwrap_or(0);
            }
        }
        if !allowed(name) {
            page.topics
                .push((name, Err(ResponseError::TopicAuthorizationFailed)));
            continue;
        }
        let Some(t) = md.topics.get(name) else {
            page.topics
                .push((name, Err(ResponseError::UnknownTopicOrPartition)));
            continue;
        };
        let total = t.partitions.len();
        if first >= total && first > 0 {
            continue;
        }
        if room == 0 {
            page.next = Some((name.clone(), i32::try_from(first).unwrap_or(i32::MAX)));
            break;
        }
        let end = total.min(first + room);
        room -= end - first;
        page.topics.push((name, Ok((t, first, end))));
        if end < total {
            page.next = Some((name.clone(), i32::try_from(end).unwrap_or(i32::MAX)));
            break;
        }
    }
    page
}

pub fn describe(ctx: &RequestContext, req: DescribeTopicPartitionsRequest) -> ResponseKind {
    let md = ctx.broker.metadata();
    let check = authz::Check::new(ctx);
    // Named topics are each answered (with an error if need be); "all topics" means the
    // ones this client may describe, the others not mentioned.
    let listed = !req.topics.is_empty();
    let mut names: Vec<String> = if listed {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    } else {
        md.topics
            .keys()
            .filter(|n| check.topic(Op::Describe, n))
            .cloned()
            .collect()
    };
    names.sort();
    names.dedup();
    let limit = req
        .response_partition_limit
        .clamp(1, MAX_PARTITIONS_PER_RESPONSE) as usize;
    let cursor = req
        .cursor
        .as_ref()
        .map(|c| (c.topic_name.0.as_str(), c.partition_index.max(0)));
    let page = paginate(&md, &names, cursor, limit, |n| {
        !listed || check.topic(Op::Describe, n)
    });
    let topics = page
        .topics
        .into_iter()
        .map(|(name, result)| match result {
            Err(code) => DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
                .with_error_code(code.code()),
            Ok((t, first, end)) => {
                let partitions = t.partitions[first..end]
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let view = partition_view(&md, p);
                        DescribeTopicPartitionsResponsePartition::default()
                            .with_error_code(view.error_code)
                            .with_partition_index(i32::try_from(first + i).unwrap_or(i32::MAX))
                            .with_leader_id(BrokerId(view.leader))
                            .with_leader_epoch(p.leader_epoch)
                            .with_replica_nodes(p.replicas.iter().copied().map(BrokerId).collect())
                            .with_isr_nodes(p.isr.iter().copied().map(BrokerId).collect())
                            // Fjord has no eligible leader replicas (KIP-966 ELR).
                            .with_eligible_leader_replicas(Some(Vec::new()))
                            .with_last_known_elr(Some(Vec::new()))
                            .with_offline_replicas(view.offline)
                    })
                    .collect();
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(t.name.clone()))))
                    .with_topic_id(t.id)
                    .with_is_internal(t.internal)
                    .with_partitions(partitions)
                    .with_topic_authorized_operations(
                        check.operations(ResourceType::Topic, &t.name),
                    )
            }
        })
        .collect();
    let next_cursor = page.next.map(|(topic, partition)| {
        Cursor::default()
            .with_topic_name(TopicName(StrBytes::from_string(topic)))
            .with_partition_index(partition)
    });
    ResponseKind::DescribeTopicPartitions(
        DescribeTopicPartitionsResponse::default()
            .with_topics(topics)
            .with_next_cursor(next_cursor),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_controller::metadata::PartitionState;

    fn md(topics: &[(&str, usize)]) -> ClusterMetadata {
        let mut md = ClusterMetadata::default();
        for (name, n) in topics {
            let t = TopicState {
                name: name.to_string(),
                id: uuid::Uuid::new_v4(),
                configs: Default::default(),
                partitions: vec![PartitionState::new(vec![1]); *n],
                internal: false,
            };
            md.topics.insert(name.to_string(), t);
        }
        md
    }

    fn shape(page: &Page<'_>) -> Vec<(String, Option<(usize, usize)>)> {
        page.topics
            .iter()
            .map(|(n, r)| (n.to_string(), r.as_ref().ok().map(|(_, a, b)| (*a, *b))))
            .collect()
    }

    #[test]
    fn pages_cover_every_partition_once() {
        let md = md(&[("a", 3), ("b", 2), ("c", 4)]);
        let names: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        let mut cursor: Option<(String, i32)> = None;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let page = paginate(
                &md,
                &names,
                cursor.as_ref().map(|(t, p)| (t.as_str(), *p)),
                2,
                |_| true,
            );
            for (name, r) in &page.topics {
                let (_, a, b) = r.as_ref().expect("known");
                assert!(b - a <= 2);
                for p in *a..*b {
                    seen.push(format!("{name}-{p}"));
                }
            }
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(
            seen,
            vec!["a-0", "a-1", "a-2", "b-0", "b-1", "c-0", "c-1", "c-2", "c-3"]
        );
    }

    #[test]
    fn a_full_page_points_at_the_next_topic() {
        let md = md(&[("a", 2), ("b", 1)]);
        let names: Vec<String> = vec!["a".into(), "b".into()];
        let page = paginate(&md, &names, None, 2, |_| true);
        assert_eq!(shape(&page), vec![("a".to_string(), Some((0, 2)))]);
        assert_eq!(page.next, Some(("b".to_string(), 0)));
    }

    #[test]
    fn errors_take_no_room() {
        let md = md(&[("b", 1)]);
        let names: Vec<String> = vec!["a".into(), "b".into(), "secret".into()];
        let page = paginate(&md, &names, None, 1, |n| n != "secret");
        assert!(matches!(
            page.topics[0].1,
            Err(ResponseError::UnknownTopicOrPartition)
        ));
        assert_eq!(shape(&page)[1], ("b".to_string(), Some((0, 1))));
        assert!(matches!(
            page.topics[2].1,
            Err(ResponseError::TopicAuthorizationFailed)
        ));
        assert_eq!(page.next, None);
    }
}
