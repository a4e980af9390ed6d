//! Resolving effective config values through Kafka's layers: topic override, per-broker
//! dynamic, cluster-wide dynamic, static (file), default.

use std::collections::BTreeMap;

use fjord_storage::{CleanupPolicy, LogConfig, TimestampType};

use super::defs::{self, BrokerConfigDef, TopicConfigDef};

/// Kafka's `ConfigSource` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    TopicConfig = 1,
    DynamicBrokerConfig = 2,
    DynamicDefaultBrokerConfig = 3,
    StaticBrokerConfig = 4,
    DefaultConfig = 5,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedConfig {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
    /// Every layer that sets this config (or a synonym), most specific first.
    pub synonyms: Vec<(String, String, ConfigSource)>,
}

/// The config layers visible to one broker.
#[derive(Clone, Copy, Debug)]
pub struct ConfigView<'a> {
    pub static_props: &'a BTreeMap<String, String>,
    pub cluster_dynamic: &'a BTreeMap<String, String>,
    pub broker_dynamic: Option<&'a BTreeMap<String, String>>,
}

impl<'a> ConfigView<'a> {
    /// Every explicitly set value of broker property `name`, most specific first.
    fn broker_layers(&self, name: &str) -> Vec<(String, ConfigSource)> {
        let dynamic = defs::broker_def(name).is_some_and(|d| d.dynamic);
        let mut out = Vec::new();
        if dynamic {
            if let Some(v) = self.broker_dynamic.and_then(|m| m.get(name)) {
                out.push((v.clone(), ConfigSource::DynamicBrokerConfig));
            }
            if let Some(v) = self.cluster_dynamic.get(name) {
                out.push((v.clone(), ConfigSource::DynamicDefaultBrokerConfig));
            }
        }
        if let Some(v) = self.static_props.get(name) {
            out.push((v.clone(), ConfigSource::StaticBrokerConfig));
        }
        out
    }

    pub fn broker(&self, def: &BrokerConfigDef) -> ResolvedConfig {
        let name = def.def.name;
        let layers = self.broker_layers(name);
        let mut synonyms: Vec<(String, String, ConfigSource)> = layers
            .iter()
            .map(|(v, s)| (name.to_string(), v.clone(), *s))
            .collect();
        let (value, source) = match layers.first() {
            Some((v, s)) => (v.clone(), *s),
            None => (def.def.default.to_string(), ConfigSource::DefaultConfig),
        };
        if !def.def.default.is_empty() {
            synonyms.push((
                name.to_string(),
                def.def.default.to_string(),
                ConfigSource::DefaultConfig,
            ));
        }
        ResolvedConfig {
            name: name.to_string(),
            value,
            source,
            synonyms,
        }
    }

    /// The effective value of broker property `name` (its default if unknown or unset).
    pub fn broker_value(&self, name: &str) -> String {
        match defs::broker_def(name) {
            Some(d) => self.broker(d).value,
            None => self.static_props.get(name).cloned().unwrap_or_default(),
        }
    }

    pub fn broker_i64(&self, name: &str) -> i64 {
        self.broker_value(name).trim().parse().unwrap_or(0)
    }

    pub fn broker_bool(&self, name: &str) -> bool {
        self.broker_value(name).eq_ignore_ascii_case("true")
    }

    pub fn topic(
        &self,
        def: &TopicConfigDef,
        overrides: &BTreeMap<String, String>,
    ) -> ResolvedConfig {
        let name = def.def.name;
        let mut synonyms = Vec::new();
        if let Some(v) = overrides.get(name) {
            synonyms.push((name.to_string(), v.clone(), ConfigSource::TopicConfig));
        }
        for (broker_name, factor) in def.broker_synonyms {
            for (v, s) in self.broker_layers(broker_name) {
                let converted = if *factor == 1 {
                    v
                } else {
                    match v.trim().parse::<i64>() {
                        Ok(n) if n < 0 => n.to_string(),
                        Ok(n) => n.saturating_mul(*factor).to_string(),
                        Err(_) => v,
                    }
                };
                synonyms.push((broker_name.to_string(), converted, s));
            }
        }
        let (value, source) = match synonyms.first() {
            Some((_, v, s)) => (v.clone(), *s),
            None => (def.def.default.to_string(), ConfigSource::DefaultConfig),
        };
        synonyms.push((
            name.to_string(),
            def.def.default.to_string(),
            ConfigSource::DefaultConfig,
        ));
        ResolvedConfig {
            name: name.to_string(),
            value,
            source,
            synonyms,
        }
    }

    pub fn topic_value(&self, name: &str, overrides: &BTreeMap<String, String>) -> String {
        match defs::topic_def(name) {
            Some(d) => self.topic(d, overrides).value,
            None => String::new(),
        }
    }

    /// The storage settings of a partition of a topic with these overrides.
    pub fn log_config(&self, overrides: &BTreeMap<String, String>) -> LogConfig {
        let num = |name: &str, fallback: i64| -> i64 {
            self.topic_value(name, overrides)
                .trim()
                .parse()
                .unwrap_or(fallback)
        };
        let defaults = LogConfig::default();
        let policy = self.topic_value("cleanup.policy", overrides);
        let has = |p: &str| policy.split(',').any(|x| x.trim() == p);
        LogConfig {
            segment_bytes: num("segment.bytes", defaults.segment_bytes as i64).max(14) as u64,
            segment_ms: num("segment.ms", defaults.segment_ms),
            segment_index_bytes: num("segment.index.bytes", defaults.segment_index_bytes as i64)
                .max(8) as u64,
            index_interval_bytes: num("index.interval.bytes", 4096).max(0) as u64,
            retention_ms: num("retention.ms", defaults.retention_ms),
            retention_bytes: num("retention.bytes", -1),
            flush_messages: num("flush.messages", i64::MAX),
            flush_ms: num("flush.ms", i64::MAX),
            max_message_bytes: num("max.message.bytes", defaults.max_message_bytes as i64).max(0)
                as usize,
            message_timestamp_type: if self.topic_value("message.timestamp.type", overrides)
                == "LogAppendTime"
            {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            cleanup_policy: CleanupPolicy {
                delete: has("delete"),
                compact: has("compact"),
            },
            fsync_before_ack: self.broker_bool("fsync.before.ack"),
            delete_retention_ms: num("delete.retention.ms", defaults.delete_retention_ms),
            min_compaction_lag_ms: num("min.compaction.lag.ms", 0),
            max_compaction_lag_ms: num("max.compaction.lag.ms", i64::MAX),
            min_cleanable_dirty_ratio: self
                .topic_value("min.cleanable.dirty.ratio", overrides)
                .trim()
                .parse()
                .unwrap_or(defaults.min_cleanable_dirty_ratio),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_in_kafka_order() {
        let static_props = BTreeMap::from([("log.retention.hours".to_string(), "1".to_string())]);
        let cluster = BTreeMap::new();
        let view = ConfigView {
            static_props: &static_props,
            cluster_dynamic: &cluster,
            broker_dynamic: None,
        };
        let none = BTreeMap::new();
        let r = view.topic(defs::topic_def("retention.ms").expect("def"), &none);
        assert_eq!(r.value, "3600000");
        assert_eq!(r.source, ConfigSource::StaticBrokerConfig);
        let overrides = BTreeMap::from([("retention.ms".to_string(), "5".to_string())]);
        let r = view.topic(defs::topic_def("retention.ms").expect("def"), &overrides);
        assert_eq!(
            (r.value.as_str(), r.source),
            ("5", ConfigSource::TopicConfig)
        );
        let r = view.topic(defs::topic_def("segment.bytes").expect("def"), &none);
        assert_eq!(
            (r.value.as_str(), r.source),
            ("1073741824", ConfigSource::DefaultConfig)
        );
        let cluster = BTreeMap::from([("log.retention.ms".to_string(), "7".to_string())]);
        let view = ConfigView {
            cluster_dynamic: &cluster,
            ..view
        };
        let r = view.topic(defs::topic_def("retention.ms").expect("def"), &none);
        assert_eq!(
            (r.value.as_str(), r.source),
            ("7", ConfigSource::DynamicDefaultBrokerConfig)
        );
        assert_eq!(view.log_config(&none).retention_ms, 7);
    }
}
