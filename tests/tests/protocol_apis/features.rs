//! Issue 32, item 3: feature versions (KIP-584). ApiVersions reports the supported and
//! finalized features (what Kafka's Admin.describeFeatures reads); UpdateFeatures moves
//! them as Kafka's controller does, all or nothing, stored in the metadata log. Turning
//! group.version off takes the KIP-848 protocol away, as in Kafka.

use std::collections::BTreeMap;

use fjord_tests::wire::Wire;
use fjord_tests::{run_cli, Node};
use kafka_protocol::messages::update_features_request::FeatureUpdateKey;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use kafka_protocol::error::ResponseError;

const INVALID_UPDATE_VERSION: i16 = ResponseError::InvalidUpdateVersion.code();
const UNSUPPORTED_VERSION: i16 = ResponseError::UnsupportedVersion.code();

/// (finalized levels, their epoch, supported ranges, advertised APIs).
type Described = (
    BTreeMap<String, i16>,
    i64,
    BTreeMap<String, (i16, i16)>,
    Vec<i16>,
);

fn describe(w: &mut Wire) -> Described {
    let r = w.call(3, &ApiVersionsRequest::default());
    let finalized = r
        .finalized_features
        .iter()
        .map(|f| (f.name.to_string(), f.max_version_level))
        .collect();
    let supported = r
        .supported_features
        .iter()
        .map(|f| (f.name.to_string(), (f.min_version, f.max_version)))
        .collect();
    let apis = r.api_keys.iter().map(|k| k.api_key).collect();
    (finalized, r.finalized_features_epoch, supported, apis)
}

fn update(
    w: &mut Wire,
    version: i16,
    changes: &[(&str, i16, i8)],
    validate_only: bool,
) -> UpdateFeaturesResponse {
    let req = UpdateFeaturesRequest::default()
        .with_timeout_ms(10_000)
        .with_validate_only(validate_only)
        .with_feature_updates(
            changes
                .iter()
                .map(|(f, level, kind)| {
                    let key = FeatureUpdateKey::default()
                        .with_feature(StrBytes::from_string(f.to_string()))
                        .with_max_version_level(*level);
                    // v0 says allow_downgrade, v1 on the upgrade type.
                    if version == 0 {
                        key.with_allow_downgrade(*kind != 1)
                    } else {
                        key.with_upgrade_type(*kind)
                    }
                })
                .collect(),
        );
    w.call(version, &req)
}

fn heartbeat_error(w: &mut Wire) -> i16 {
    w.call(
        0,
        &ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("features-group")))
            .with_member_id(StrBytes::from_static_str("features-member-1"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![]))
            .with_topic_partitions(Some(vec![])),
    )
    .error_code
}

#[test]
fn features_are_described_updated_as_kafka_does_and_kept() {
    let mut node = Node::start();
    let mut w = Wire::connect(&node.bootstrap());
    let (finalized, epoch, supported, apis) = describe(&mut w);
    assert_eq!(
        finalized.get("metadata.version"),
        Some(&25),
        "{finalized:?}"
    );
    assert_eq!(finalized.get("group.version"), Some(&1), "{finalized:?}");
    assert_eq!(
        supported.get("group.version"),
        Some(&(0, 1)),
        "{supported:?}"
    );
    assert_eq!(supported.get("metadata.version"), Some(&(7, 25)));
    assert_eq!(epoch, 0, "no feature was ever changed");
    assert!(apis.contains(&68), "ConsumerGroupHeartbeat is offered");

    // Refused, all or nothing: a downgrade without its upgrade type, a level outside the
    // supported range, an unknown feature, metadata.version downgrades.
    let r = update(&mut w, 1, &[("group.version", 0, 1)], false);
    assert_eq!(r.error_code, INVALID_UPDATE_VERSION, "{r:?}");
    assert_eq!(r.results[0].error_code, INVALID_UPDATE_VERSION);
    assert!(r.results[0].error_message.is_some());
    for bad in [
        ("group.version", 2, 1),
        ("no.such.version", 1, 1),
        ("metadata.version", 24, 3),
        ("transaction.version", 2, 1),
    ] {
        let r = update(&mut w, 2, &[bad], false);
        assert_eq!(r.error_code, INVALID_UPDATE_VERSION, "{bad:?}: {r:?}");
        assert!(r.results.is_empty(), "v2 answers at the top only");
    }
    let r = update(
        &mut w,
        1,
        &[("group.version", 0, 2), ("kraft.version", 0, 3)],
        false,
    );
    assert_eq!(r.error_code, INVALID_UPDATE_VERSION, "{r:?}");
    assert_eq!(describe(&mut w).0, finalized, "nothing changed");
    // validate_only checks without changing.
    let r = update(&mut w, 1, &[("group.version", 0, 2)], true);
    assert_eq!(r.error_code, 0, "{r:?}");
    assert_eq!(r.error_message, None);
    assert_eq!(describe(&mut w).0, finalized, "nothing changed");

    // A safe downgrade (v0's allow_downgrade) turns the KIP-848 protocol off.
    let r = update(&mut w, 0, &[("group.version", 0, 2)], false);
    assert_eq!(r.error_code, 0, "{r:?}");
    assert_eq!(r.results[0].error_message, None);
    let (after, epoch, _, apis) = describe(&mut w);
    assert!(!after.contains_key("group.version"), "{after:?}");
    assert!(epoch > 0, "the change has an epoch");
    assert!(
        !apis.contains(&68),
        "ConsumerGroupHeartbeat is no longer offered"
    );
    assert_eq!(heartbeat_error(&mut w), UNSUPPORTED_VERSION);

    // Kept in the metadata log across a restart.
    node.stop();
    node.restart();
    let mut w = Wire::connect(&node.bootstrap());
    let (kept, kept_epoch, _, _) = describe(&mut w);
    assert_eq!(kept, after);
    assert_eq!(kept_epoch, epoch);

    // And back on, through the CLI as kafka-features.sh.
    let out = run_cli(
        &node,
        &["cluster", "features", "--upgrade", "group.version=1"],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let described = run_cli(&node, &["cluster", "features"], None);
    let text = String::from_utf8_lossy(&described.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("Feature: group.version")
                && l.contains("FinalizedVersionLevel: 1")),
        "{text}"
    );
    assert_eq!(describe(&mut w).0, finalized);
    assert_ne!(heartbeat_error(&mut w), UNSUPPORTED_VERSION);
    let refused = run_cli(
        &node,
        &["cluster", "features", "--downgrade", "metadata.version=20"],
        None,
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("INVALID_UPDATE_VERSION")
            || String::from_utf8_lossy(&refused.stderr).contains("InvalidUpdateVersion"),
        "{refused:?}"
    );
}
