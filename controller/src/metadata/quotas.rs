//! Client quotas (KIP-13, KIP-124, KIP-599) as the metadata log holds them: per user,
//! per client id, or both, with `<default>` entities, as Kafka's AlterClientQuotas
//! (KIP-546) sets them; and connection creation rates per client IP (KIP-612).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::MetadataError;

/// The quota keys Kafka defines for user and client-id entities.
pub const QUOTA_KEYS: &[&str] = &[
    "producer_byte_rate",
    "consumer_byte_rate",
    "request_percentage",
    "controller_mutation_rate",
];

/// The one quota an IP entity takes: new connections per second (KIP-612).
pub const IP_QUOTA_KEY: &str = "connection_creation_rate";

/// One side of a quota entity: a name, or Kafka's `<default>` (null in the protocol).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityName {
    Default,
    Named(String),
}

impl std::fmt::Display for EntityName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntityName::Default => f.write_str("<default>"),
            EntityName::Named(n) => f.write_str(n),
        }
    }
}

/// Who a quota applies to: a user, a client id, a user's client id, or a client IP.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    pub user: Option<EntityName>,
    pub client_id: Option<EntityName>,
    /// An IP entity stands alone; images written before IP quotas have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<EntityName>,
}

impl QuotaEntity {
    /// Kafka's ZooKeeper-style path, used as the key in the image (JSON map keys must be
    /// strings) and in logs: `users/alice/clients/<default>`.
    pub fn key(&self) -> String {
        let mut parts = Vec::new();
        if let Some(u) = &self.user {
            parts.push(format!("users/{u}"));
        }
        if let Some(c) = &self.client_id {
            parts.push(format!("clients/{c}"));
        }
        if let Some(ip) = &self.ip {
            parts.push(format!("ips/{ip}"));
        }
        parts.join("/")
    }
}

/// A quota value: Kafka's doubles, compared bit for bit so the image stays `Eq`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct QuotaValue(pub f64);

impl PartialEq for QuotaValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for QuotaValue {}

/// The quotas set on one entity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientQuota {
    pub entity: QuotaEntity,
    pub values: BTreeMap<String, QuotaValue>,
}

/// One entity's changes: set a key (`Some`) or remove it (`None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaChange {
    pub entity: QuotaEntity,
    pub ops: Vec<(String, Option<QuotaValue>)>,
}

/// Checks a change as Kafka's controller does: an entity with a user or client id, known
/// keys, positive finite values.
pub fn validate(change: &QuotaChange) -> Result<(), MetadataError> {
    if let Some(ip) = &change.entity.ip {
        return validate_ip(ip, change);
    }
    if change.entity.user.is_none() && change.entity.client_id.is_none() {
        return Err(MetadataError::InvalidRequest(
            "a quota entity needs a user or a client id".into(),
        ));
    }
    for name in [&change.entity.user, &change.entity.client_id]
        .into_iter()
        .flatten()
    {
        if matches!(name, EntityName::Named(n) if n.is_empty() || n.len() > 255) {
            return Err(MetadataError::InvalidRequest(
                "an entity name must be 1 to 255 characters".into(),
            ));
        }
    }
    for (key, value) in &change.ops {
        if !QUOTA_KEYS.contains(&key.as_str()) {
            return Err(MetadataError::InvalidRequest(format!(
                "unknown quota key '{key}'; known: {}",
                QUOTA_KEYS.join(", ")
            )));
        }
        if let Some(QuotaValue(v)) = value {
            if !v.is_finite() || *v <= 0.0 {
                return Err(MetadataError::InvalidRequest(format!(
                    "quota {key} must be a positive number, got {v}"
                )));
            }
        }
    }
    Ok(())
}

/// An IP entity: alone, a valid address (or `<default>`), and only
/// `connection_creation_rate`, as Kafka allows.
fn validate_ip(ip: &EntityName, change: &QuotaChange) -> Result<(), MetadataError> {
    let invalid = |m: String| Err(MetadataError::InvalidRequest(m));
    if change.entity.user.is_some() || change.entity.client_id.is_some() {
        return invalid("an ip quota entity cannot be combined with a user or client id".into());
    }
    if let EntityName::Named(n) = ip {
        if n.parse::<std::net::IpAddr>().is_err() {
            return invalid(format!("'{n}' is not an IP address"));
        }
    }
    for (key, value) in &change.ops {
        if key != IP_QUOTA_KEY {
            return invalid(format!(
                "an ip entity takes only {IP_QUOTA_KEY}, not '{key}'"
            ));
        }
        if let Some(QuotaValue(v)) = value {
            if !v.is_finite() || *v <= 0.0 || v.fract() != 0.0 || *v > f64::from(i32::MAX) {
                return invalid(format!(
                    "{IP_QUOTA_KEY} must be a positive integer, got {v}"
                ));
            }
        }
    }
    Ok(())
}

/// Applies one validated change; an entity left without keys is removed.
pub fn apply(quotas: &mut BTreeMap<String, ClientQuota>, change: &QuotaChange) {
    let key = change.entity.key();
    let entry = quotas.entry(key.clone()).or_insert_with(|| ClientQuota {
        entity: change.entity.clone(),
        values: BTreeMap::new(),
    });
    for (k, v) in &change.ops {
        match v {
            Some(v) => {
                entry.values.insert(k.clone(), *v);
            }
            None => {
                entry.values.remove(k);
            }
        }
    }
    if entry.values.is_empty() {
        quotas.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(user: Option<&str>, client: Option<&str>) -> QuotaEntity {
        let name = |n: &str| {
            if n == "<default>" {
                EntityName::Default
            } else {
                EntityName::Named(n.into())
            }
        };
        QuotaEntity {
            user: user.map(name),
            client_id: client.map(name),
            ip: None,
        }
    }

    #[test]
    fn changes_set_and_remove_keys_and_empty_entities_go() {
        let mut q = BTreeMap::new();
        let e = entity(Some("alice"), Some("<default>"));
        assert_eq!(e.key(), "users/alice/clients/<default>");
        apply(
            &mut q,
            &QuotaChange {
                entity: e.clone(),
                ops: vec![("producer_byte_rate".into(), Some(QuotaValue(1024.0)))],
            },
        );
        assert_eq!(q[&e.key()].values["producer_byte_rate"], QuotaValue(1024.0));
        apply(
            &mut q,
            &QuotaChange {
                entity: e,
                ops: vec![("producer_byte_rate".into(), None)],
            },
        );
        assert!(q.is_empty());
    }

    #[test]
    fn invalid_changes_are_refused() {
        let bad = |entity, key: &str, v: f64| {
            validate(&QuotaChange {
                entity,
                ops: vec![(key.into(), Some(QuotaValue(v)))],
            })
            .is_err()
        };
        assert!(bad(entity(None, None), "producer_byte_rate", 1.0));
        assert!(bad(entity(Some("a"), None), "no_such_quota", 1.0));
        assert!(bad(entity(Some("a"), None), "producer_byte_rate", -1.0));
        assert!(bad(entity(Some("a"), None), "producer_byte_rate", f64::NAN));
        assert!(!bad(entity(Some("a"), None), "request_percentage", 50.0));
        let ip = |n: &str| QuotaEntity {
            ip: Some(EntityName::Named(n.into())),
            ..QuotaEntity::default()
        };
        assert!(!bad(ip("10.0.0.1"), IP_QUOTA_KEY, 5.0));
        assert!(bad(ip("not-an-ip"), IP_QUOTA_KEY, 5.0));
        assert!(bad(ip("10.0.0.1"), "producer_byte_rate", 5.0));
        assert!(bad(ip("10.0.0.1"), IP_QUOTA_KEY, 2.5));
        assert!(bad(entity(Some("a"), None), IP_QUOTA_KEY, 5.0));
        let both = QuotaEntity {
            user: Some(EntityName::Default),
            ..ip("10.0.0.1")
        };
        assert!(bad(both, IP_QUOTA_KEY, 5.0));
        assert_eq!(ip("10.0.0.1").key(), "ips/10.0.0.1");
    }

    #[test]
    fn images_written_before_ip_quotas_still_read() {
        let old = r#"{"user":{"Named":"alice"},"client_id":null}"#;
        let e: QuotaEntity = serde_json::from_str(old).expect("reads");
        assert_eq!(e.ip, None);
        assert_eq!(serde_json::to_string(&e).expect("writes"), old);
    }
}
