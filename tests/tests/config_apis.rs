//! Configs at the wire level: DescribeConfigs, AlterConfigs and IncrementalAlterConfigs
//! for topics, brokers (one or all) and broker loggers, with Kafka's names, defaults,
//! sources and errors.

use fjord_tests::wire::Wire;
use fjord_tests::{create_topic, Node};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn describe_topic_config(w: &mut Wire, topic: &str, key: &str) -> (Option<String>, i8) {
    let r = w.call(
        4,
        &DescribeConfigsRequest::default()
            .with_include_synonyms(true)
            .with_include_documentation(true)
            .with_resources(vec![DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configuration_keys(Some(vec![StrBytes::from_string(
                    key.to_string(),
                )]))]),
    );
    let res = &r.results[0];
    assert_eq!(res.error_code, 0, "{:?}", res.error_message);
    let c = &res.configs[0];
    assert!(c.documentation.is_some());
    (c.value.as_ref().map(|v| v.to_string()), c.config_source)
}

fn incremental(
    w: &mut Wire,
    resource_type: i8,
    resource: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> i16 {
    let r = w.call(
        1,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(resource.to_string()))
                .with_configs(
                    ops.iter()
                        .map(|(k, op, v)| {
                            AlterableConfig::default()
                                .with_name(StrBytes::from_string(k.to_string()))
                                .with_config_operation(*op)
                                .with_value(v.map(|v| StrBytes::from_string(v.to_string())))
                        })
                        .collect(),
                ),
        ]),
    );
    r.responses[0].error_code
}

#[test]
fn configs_use_kafka_names_defaults_and_sources() {
    let node = Node::start();
    create_topic(&node.bootstrap(), "cfg", 1, &[("retention.ms", "60000")]);
    let mut w = Wire::connect(&node.bootstrap());
    assert_eq!(
        describe_topic_config(&mut w, "cfg", "retention.ms"),
        (Some("60000".into()), 1)
    );
    assert_eq!(
        describe_topic_config(&mut w, "cfg", "segment.bytes"),
        (Some("1073741824".into()), 5)
    );
    assert_eq!(
        describe_topic_config(&mut w, "cfg", "cleanup.policy"),
        (Some("delete".into()), 5)
    );

    assert_eq!(
        incremental(&mut w, 2, "cfg", &[("cleanup.policy", 2, Some("compact"))]),
        0,
        "APPEND"
    );
    assert_eq!(
        describe_topic_config(&mut w, "cfg", "cleanup.policy")
            .0
            .as_deref(),
        Some("delete,compact")
    );
    assert_eq!(
        incremental(&mut w, 2, "cfg", &[("cleanup.policy", 3, Some("delete"))]),
        0,
        "SUBTRACT"
    );
    assert_eq!(
        describe_topic_config(&mut w, "cfg", "cleanup.policy")
            .0
            .as_deref(),
        Some("compact")
    );
    assert_eq!(
        incremental(&mut w, 2, "cfg", &[("retention.ms", 1, None)]),
        0,
        "DELETE"
    );
    assert_eq!(
        describe_topic_config(&mut w, "cfg", "retention.ms"),
        (Some("604800000".into()), 5)
    );
    assert_eq!(
        incremental(&mut w, 2, "cfg", &[("retention.ms", 0, Some("soon"))]),
        40,
        "INVALID_CONFIG"
    );
    assert_eq!(
        incremental(&mut w, 2, "cfg", &[("no.such.config", 0, Some("1"))]),
        40,
        "unknown name"
    );
    assert_eq!(
        incremental(&mut w, 2, "nope", &[("retention.ms", 0, Some("1"))]),
        3,
        "unknown topic"
    );

    // A cluster-wide dynamic broker default reaches topics without an override.
    assert_eq!(
        incremental(&mut w, 4, "", &[("log.retention.ms", 0, Some("120000"))]),
        0
    );
    assert_eq!(
        describe_topic_config(&mut w, "cfg", "retention.ms"),
        (Some("120000".into()), 3)
    );
    assert_eq!(
        incremental(&mut w, 4, "", &[("num.partitions", 0, Some("3"))]),
        42,
        "read-only broker config"
    );
    // What Kafka changes at runtime, Kafka's tools may change here too (sarama's
    // TestFuncAdminIncrementalAlterConfigs, librdkafka 0081), on one broker or all.
    for (resource, key, value) in [
        ("1", "log.cleaner.backoff.ms", "20000"),
        ("", "log.cleaner.dedupe.buffer.size", "67108864"),
        ("1", "log.cleaner.io.max.bytes.per.second", "52428800"),
        ("1", "sasl.kerberos.min.time.before.relogin", "58000"),
    ] {
        assert_eq!(
            incremental(&mut w, 4, resource, &[(key, 0, Some(value))]),
            0,
            "{key} on broker '{resource}'"
        );
    }
    let backoff = w.call(
        4,
        &DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("1"))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str(
                "log.cleaner.backoff.ms",
            )]))]),
    );
    let c = &backoff.results[0].configs[0];
    assert_eq!(
        (
            c.value.as_ref().map(|v| v.as_str()),
            c.config_source,
            c.read_only
        ),
        (Some("20000"), 2, false),
        "DYNAMIC_BROKER_CONFIG, alterable"
    );

    // Legacy AlterConfigs replaces all overrides.
    let r = w.call(
        1,
        &AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("cfg"))
                .with_configs(vec![alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("segment.ms"))
                    .with_value(Some(StrBytes::from_static_str("3600000")))]),
        ]),
    );
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(
        describe_topic_config(&mut w, "cfg", "cleanup.policy"),
        (Some("delete".into()), 5)
    );
    assert_eq!(
        describe_topic_config(&mut w, "cfg", "segment.ms"),
        (Some("3600000".into()), 1)
    );

    // Broker configs of this node.
    let r = w.call(
        4,
        &DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("1"))
            .with_configuration_keys(None)]),
    );
    let configs = &r.results[0].configs;
    let auto = configs
        .iter()
        .find(|c| c.name.as_str() == "auto.create.topics.enable")
        .expect("listed");
    assert_eq!(auto.value.as_ref().map(|v| v.as_str()), Some("true"));
    assert!(auto.read_only);
}

fn describe_loggers(w: &mut Wire, broker: &str) -> (i16, Vec<(String, String, i8)>) {
    let r = w.call(
        4,
        &DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(8)
            .with_resource_name(StrBytes::from_string(broker.to_string()))
            .with_configuration_keys(None)]),
    );
    let res = &r.results[0];
    (
        res.error_code,
        res.configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                    c.config_source,
                )
            })
            .collect(),
    )
}

/// KIP-412: BROKER_LOGGER configs describe and change this broker's log levels at
/// runtime, and the change shows in what the broker logs.
#[test]
fn broker_logger_levels_change_at_runtime() {
    let node = Node::start();
    let mut w = Wire::connect(&node.bootstrap());
    let (code, loggers) = describe_loggers(&mut w, "1");
    assert_eq!(code, 0);
    assert_eq!(
        loggers[0],
        ("root".to_string(), "INFO".to_string(), 6),
        "root first, source DYNAMIC_BROKER_LOGGER_CONFIG"
    );
    assert_eq!(
        describe_loggers(&mut w, "7").0,
        42,
        "another broker's loggers"
    );

    // Root at WARN: the INFO line of a topic creation is not logged any more.
    assert_eq!(incremental(&mut w, 8, "1", &[("root", 0, Some("WARN"))]), 0);
    create_topic(&node.bootstrap(), "quiet-topic", 1, &[]);
    assert_eq!(
        incremental(
            &mut w,
            8,
            "1",
            &[
                ("root", 0, Some("INFO")),
                ("fjord_node::replica", 0, Some("DEBUG"))
            ]
        ),
        0
    );
    create_topic(&node.bootstrap(), "loud-topic", 1, &[]);
    let log = node.log();
    assert!(log.contains("loud-topic"), "INFO logged again");
    assert!(
        !log.contains("quiet-topic"),
        "nothing at INFO while root was WARN"
    );
    let (_, loggers) = describe_loggers(&mut w, "1");
    assert!(loggers.contains(&("fjord_node::replica".to_string(), "DEBUG".to_string(), 6)));

    // DELETE returns a logger to the root's level; the root cannot be deleted; levels are
    // log4j's names; nothing applies unless everything is valid.
    assert_eq!(
        incremental(&mut w, 8, "1", &[("fjord_node::replica", 1, None)]),
        0
    );
    let (_, loggers) = describe_loggers(&mut w, "1");
    assert!(!loggers.iter().any(|(n, _, _)| n == "fjord_node::replica"));
    assert_eq!(incremental(&mut w, 8, "1", &[("root", 1, None)]), 42);
    assert_eq!(
        incremental(
            &mut w,
            8,
            "1",
            &[("openraft", 0, Some("DEBUG")), ("root", 0, Some("LOUD"))]
        ),
        40
    );
    let (_, loggers) = describe_loggers(&mut w, "1");
    assert!(!loggers.iter().any(|(n, _, _)| n == "openraft"));
}

/// Issue 32, item 2: GROUP config resources (type 32), refused before as an unsupported
/// resource type. Kafka's names and the brokers' bounds; set before the group exists,
/// listed by ListConfigResources, and used by a live KIP-848 group at its next heartbeat.
#[test]
fn group_configs_are_described_bounded_and_applied_to_live_groups() {
    const GROUP: i8 = 32;
    let node = Node::start();
    create_topic(&node.bootstrap(), "gc", 1, &[]);
    let mut w = Wire::connect(&node.bootstrap());
    let describe = |w: &mut Wire| -> Vec<(String, String, i8)> {
        let r = w.call(
            4,
            &DescribeConfigsRequest::default()
                .with_include_synonyms(true)
                .with_resources(vec![DescribeConfigsResource::default()
                    .with_resource_type(GROUP)
                    .with_resource_name(StrBytes::from_static_str("gc-group"))
                    .with_configuration_keys(None)]),
        );
        assert_eq!(r.results[0].error_code, 0, "{:?}", r.results[0]);
        r.results[0]
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.value.as_deref().unwrap_or("").to_string(),
                    c.config_source,
                )
            })
            .collect()
    };
    let before = describe(&mut w);
    let find = |all: &[(String, String, i8)], name: &str| {
        all.iter()
            .find(|(n, _, _)| n == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {all:?}"))
    };
    // Defaults come from the brokers' group.consumer.* (DEFAULT_CONFIG, 5).
    assert_eq!(
        find(&before, "consumer.heartbeat.interval.ms"),
        ("consumer.heartbeat.interval.ms".into(), "5000".into(), 5)
    );
    assert_eq!(find(&before, "consumer.session.timeout.ms").1, "45000");
    assert_eq!(find(&before, "share.auto.offset.reset").1, "latest");

    let alter = |w: &mut Wire, key: &str, value: &str| -> (i16, Option<String>) {
        let r = w.call(
            1,
            &IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(GROUP)
                    .with_resource_name(StrBytes::from_static_str("gc-group"))
                    .with_configs(vec![AlterableConfig::default()
                        .with_name(StrBytes::from_string(key.to_string()))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_string(value.to_string())))]),
            ]),
        );
        (
            r.responses[0].error_code,
            r.responses[0].error_message.as_ref().map(|m| m.to_string()),
        )
    };
    let invalid = kafka_protocol::error::ResponseError::InvalidConfig.code();
    // Outside group.consumer.min/max.heartbeat.interval.ms (5000..15000), unknown names,
    // and a heartbeat no shorter than the session are refused.
    for (key, value) in [
        ("consumer.heartbeat.interval.ms", "1000"),
        ("consumer.heartbeat.interval.ms", "soon"),
        ("consumer.session.timeout.ms", "90000"),
        ("consumer.no.such.setting", "1"),
        ("share.auto.offset.reset", "sometimes"),
    ] {
        let (code, message) = alter(&mut w, key, value);
        assert_eq!(code, invalid, "{key}={value}: {message:?}");
        assert!(message.is_some());
    }
    assert_eq!(
        alter(&mut w, "share.auto.offset.reset", "by_duration:PT1H").0,
        0
    );
    assert_eq!(alter(&mut w, "consumer.heartbeat.interval.ms", "7000").0, 0);
    let after = describe(&mut w);
    assert_eq!(
        find(&after, "consumer.heartbeat.interval.ms"),
        ("consumer.heartbeat.interval.ms".into(), "7000".into(), 8),
        "GROUP_CONFIG (8)"
    );
    let listed = w.call(
        1,
        &ListConfigResourcesRequest::default().with_resource_types(vec![GROUP]),
    );
    assert!(
        listed
            .config_resources
            .iter()
            .any(|r| r.resource_name.as_str() == "gc-group"),
        "{listed:?}"
    );

    // A member of the (new) group is told the group's own interval.
    let coordinator = fjord_tests::wait_until(
        "the group's coordinator",
        std::time::Duration::from_secs(30),
        || w.find_coordinator("gc-group", 0).ok(),
    );
    assert!(coordinator >= 0);
    let hb = fjord_tests::wait_until(
        "a heartbeat the coordinator answers",
        std::time::Duration::from_secs(30),
        || {
            let r = w.call(
                0,
                &ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("gc-group")))
                    .with_member_id(StrBytes::from_static_str("gc-member-1"))
                    .with_member_epoch(0)
                    .with_rebalance_timeout_ms(30_000)
                    .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_static_str(
                        "gc",
                    ))]))
                    .with_topic_partitions(Some(vec![])),
            );
            (r.error_code == 0).then_some(r)
        },
    );
    assert_eq!(hb.heartbeat_interval_ms, 7000);

    // The CLI shows it as kafka-configs.sh --entity-type groups does.
    let out = fjord_tests::run_cli(&node, &["config", "describe", "--group", "gc-group"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("consumer.heartbeat.interval.ms=7000 source=GROUP_CONFIG"),
        "{text}"
    );
}
