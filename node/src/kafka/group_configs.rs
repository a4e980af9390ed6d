//! Group configs (Kafka 4.0's GROUP config resource, type 32): a group's own session
//! timeout, heartbeat interval and share-group settings, within bounds the brokers set
//! (`group.consumer.min.session.timeout.ms` and the like). Unset ones take the broker's
//! `group.consumer.*` / `group.share.*` value. They may be set before the group exists,
//! and a KIP-848 group uses its own at each heartbeat.

use std::collections::BTreeMap;

use fjord_controller::metadata::ConfigOp;
use fjord_controller::ClusterMetadata;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsSynonym,
};
use kafka_protocol::protocol::StrBytes;

use super::errors::KafkaError;
use crate::config::defs::ConfigType;
use crate::config::{ConfigSource, ConfigView};

/// The GROUP resource type of DescribeConfigs and (Incremental)AlterConfigs.
pub const GROUP: i8 = 32;

/// Kafka's GROUP_CONFIG source code.
const GROUP_CONFIG_SOURCE: i8 = 8;

/// One group config: its broker default and, for numbers, the broker configs bounding it.
struct GroupConfigDef {
    name: &'static str,
    ty: ConfigType,
    broker_default: Option<&'static str>,
    fixed_default: &'static str,
    bounds: Option<(&'static str, &'static str)>,
    doc: &'static str,
}

const DEFS: &[GroupConfigDef] = &[
    GroupConfigDef {
        name: "consumer.session.timeout.ms",
        ty: ConfigType::Int,
        broker_default: Some("group.consumer.session.timeout.ms"),
        fixed_default: "",
        bounds: Some((
            "group.consumer.min.session.timeout.ms",
            "group.consumer.max.session.timeout.ms",
        )),
        doc: "How long a member of this KIP-848 group may go without a heartbeat.",
    },
    GroupConfigDef {
        name: "consumer.heartbeat.interval.ms",
        ty: ConfigType::Int,
        broker_default: Some("group.consumer.heartbeat.interval.ms"),
        fixed_default: "",
        bounds: Some((
            "group.consumer.min.heartbeat.interval.ms",
            "group.consumer.max.heartbeat.interval.ms",
        )),
        doc: "How often members of this KIP-848 group heartbeat.",
    },
    GroupConfigDef {
        name: "share.session.timeout.ms",
        ty: ConfigType::Int,
        broker_default: Some("group.share.session.timeout.ms"),
        fixed_default: "",
        bounds: Some((
            "group.share.min.session.timeout.ms",
            "group.share.max.session.timeout.ms",
        )),
        doc: "How long a member of this share group may go without a heartbeat.",
    },
    GroupConfigDef {
        name: "share.heartbeat.interval.ms",
        ty: ConfigType::Int,
        broker_default: Some("group.share.heartbeat.interval.ms"),
        fixed_default: "",
        bounds: Some((
            "group.share.min.heartbeat.interval.ms",
            "group.share.max.heartbeat.interval.ms",
        )),
        doc: "How often members of this share group heartbeat.",
    },
    GroupConfigDef {
        name: "share.record.lock.duration.ms",
        ty: ConfigType::Int,
        broker_default: Some("group.share.record.lock.duration.ms"),
        fixed_default: "",
        bounds: Some((
            "group.share.min.record.lock.duration.ms",
            "group.share.max.record.lock.duration.ms",
        )),
        doc: "How long a share consumer holds a record before it is offered again.",
    },
    GroupConfigDef {
        name: "share.auto.offset.reset",
        ty: ConfigType::String,
        broker_default: None,
        fixed_default: "latest",
        bounds: None,
        doc: "Where a share group starts on a partition it has no state for: latest, \
              earliest or by_duration:<ISO-8601 duration>.",
    },
];

fn def(name: &str) -> Option<&'static GroupConfigDef> {
    DEFS.iter().find(|d| d.name == name)
}

fn default_value(view: &ConfigView, d: &GroupConfigDef) -> String {
    d.broker_default
        .map_or_else(|| d.fixed_default.to_string(), |b| view.broker_value(b))
}

/// The value `group` runs with for `name`: its own, else the broker's default.
pub fn value(view: &ConfigView, md: &ClusterMetadata, group: &str, name: &str) -> String {
    md.group_configs
        .get(group)
        .and_then(|c| c.get(name).cloned())
        .or_else(|| def(name).map(|d| default_value(view, d)))
        .unwrap_or_default()
}

/// Every group config of `group`, as DescribeConfigs answers: the group's own value
/// (GROUP_CONFIG) or the broker's (DEFAULT_CONFIG), with the broker setting as synonym.
pub fn describe(
    view: &ConfigView,
    md: &ClusterMetadata,
    group: &str,
    wanted: impl Fn(&str) -> bool,
    include_synonyms: bool,
    include_docs: bool,
) -> Vec<DescribeConfigsResourceResult> {
    let own = md.group_configs.get(group);
    DEFS.iter()
        .filter(|d| wanted(d.name))
        .map(|d| {
            let default = default_value(view, d);
            let set = own.and_then(|c| c.get(d.name));
            let (value, source) = match set {
                Some(v) => (v.clone(), GROUP_CONFIG_SOURCE),
                None => (default.clone(), ConfigSource::DefaultConfig as i8),
            };
            let mut e = DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str(d.name))
                .with_value(Some(StrBytes::from_string(value)))
                .with_read_only(false)
                .with_config_source(source)
                .with_is_sensitive(false)
                .with_config_type(d.ty as i8);
            if include_synonyms {
                let mut synonyms = Vec::new();
                if let Some(v) = set {
                    synonyms.push((d.name, v.clone(), GROUP_CONFIG_SOURCE));
                }
                if let Some(b) = d.broker_default {
                    synonyms.push((b, default, ConfigSource::DefaultConfig as i8));
                }
                e.synonyms = synonyms
                    .into_iter()
                    .map(|(n, v, s)| {
                        DescribeConfigsSynonym::default()
                            .with_name(StrBytes::from_static_str(n))
                            .with_value(Some(StrBytes::from_string(v)))
                            .with_source(s)
                    })
                    .collect();
            }
            if include_docs {
                e.documentation = Some(StrBytes::from_static_str(d.doc));
            }
            e
        })
        .collect()
}

fn invalid(message: String) -> KafkaError {
    KafkaError::new(ResponseError::InvalidConfig, message)
}

/// The config type of a group config, for IncrementalAlterConfigs' list operations.
pub fn config_type(name: &str) -> Option<ConfigType> {
    def(name).map(|d| d.ty)
}

/// Checks changes to `group`'s configs as Kafka does: known names, numbers within the
/// brokers' bounds, and a heartbeat interval below the session timeout.
pub fn validate(
    view: &ConfigView,
    md: &ClusterMetadata,
    group: &str,
    ops: &[ConfigOp],
) -> Result<(), KafkaError> {
    let mut after: BTreeMap<&str, String> = DEFS
        .iter()
        .map(|d| (d.name, value(view, md, group, d.name)))
        .collect();
    for op in ops {
        let (key, set) = match op {
            ConfigOp::Set { key, value } => (key, Some(value)),
            ConfigOp::Delete { key } => (key, None),
        };
        let d = def(key).ok_or_else(|| invalid(format!("Unknown group config name: {key}")))?;
        let Some(v) = set else {
            after.insert(d.name, default_value(view, d));
            continue;
        };
        if let Some((lo, hi)) = d.bounds {
            let n: i64 = v
                .trim()
                .parse()
                .map_err(|_| invalid(format!("{key} must be a number, not '{v}'")))?;
            let (lo, hi) = (view.broker_i64(lo), view.broker_i64(hi));
            if n < lo || n > hi {
                return Err(invalid(format!(
                    "{key} must be between {lo} and {hi} (the brokers' bounds), not {n}"
                )));
            }
        } else if d.name == "share.auto.offset.reset" && !valid_reset(v) {
            return Err(invalid(format!(
                "share.auto.offset.reset must be latest, earliest or by_duration:<ISO-8601 duration>, not '{v}'"
            )));
        }
        after.insert(d.name, v.trim().to_string());
    }
    for kind in ["consumer", "share"] {
        let num = |n: String| -> i64 {
            after
                .get(n.as_str())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let interval = num(format!("{kind}.heartbeat.interval.ms"));
        let session = num(format!("{kind}.session.timeout.ms"));
        if interval >= session {
            return Err(invalid(format!(
                "{kind}.heartbeat.interval.ms ({interval}) must be less than {kind}.session.timeout.ms ({session})"
            )));
        }
    }
    Ok(())
}

fn valid_reset(v: &str) -> bool {
    match v.trim() {
        "latest" | "earliest" => true,
        other => other
            .strip_prefix("by_duration:")
            .is_some_and(|d| crate::time::parse_iso8601_duration_ms(d).is_ok()),
    }
}
