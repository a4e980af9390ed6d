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
