//! Which quota applies to a (user, client id), with Kafka's precedence, and which
//! clients share it. Pure: it reads the quotas of the metadata image.

use std::collections::BTreeMap;

use fjord_controller::metadata::quotas::{ClientQuota, EntityName, QuotaEntity};

/// The quota that applies, and the key of the sensor it is measured with: clients that
/// share a key share the quota (`users/alice` is alice's over all her client ids;
/// `users/<default>` is each user's own).
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    pub bound: f64,
    pub user_tag: String,
    pub client_tag: String,
}

/// Kafka's order, most specific first: user and client id, user and default client,
/// user, default user and client id, default user and default client, default user,
/// client id, default client.
pub fn resolve(
    quotas: &BTreeMap<String, ClientQuota>,
    key: &str,
    user: &str,
    client_id: &str,
) -> Option<Applied> {
    let named = |s: &str| Some(EntityName::Named(s.to_string()));
    let default = || Some(EntityName::Default);
    // (entity, whether the sensor is per user, whether it is per client id)
    let order = [
        (named(user), named(client_id), true, true),
        (named(user), default(), true, true),
        (named(user), None, true, false),
        (default(), named(client_id), true, true),
        (default(), default(), true, true),
        (default(), None, true, false),
        (None, named(client_id), false, true),
        (None, default(), false, true),
    ];
    order.into_iter().find_map(|(u, c, per_user, per_client)| {
        let entity = QuotaEntity {
            user: u,
            client_id: c,
            ip: None,
        };
        let value = quotas.get(&entity.key())?.values.get(key)?;
        Some(Applied {
            bound: value.0,
            user_tag: if per_user {
                user.to_string()
            } else {
                String::new()
            },
            client_tag: if per_client {
                client_id.to_string()
            } else {
                String::new()
            },
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_controller::metadata::quotas::{apply, QuotaChange, QuotaValue};

    fn set(
        q: &mut BTreeMap<String, ClientQuota>,
        user: Option<&str>,
        client: Option<&str>,
        v: f64,
    ) {
        let name = |n: &str| {
            if n == "<default>" {
                EntityName::Default
            } else {
                EntityName::Named(n.into())
            }
        };
        apply(
            q,
            &QuotaChange {
                entity: QuotaEntity {
                    user: user.map(name),
                    client_id: client.map(name),
                    ip: None,
                },
                ops: vec![("producer_byte_rate".into(), Some(QuotaValue(v)))],
            },
        );
    }

    fn bound(q: &BTreeMap<String, ClientQuota>, user: &str, client: &str) -> Option<f64> {
        resolve(q, "producer_byte_rate", user, client).map(|a| a.bound)
    }

    #[test]
    fn the_most_specific_entity_wins() {
        let mut q = BTreeMap::new();
        assert_eq!(bound(&q, "alice", "app"), None);
        set(&mut q, None, Some("<default>"), 8.0);
        assert_eq!(bound(&q, "alice", "app"), Some(8.0));
        set(&mut q, None, Some("app"), 7.0);
        assert_eq!(bound(&q, "alice", "app"), Some(7.0));
        set(&mut q, Some("<default>"), None, 6.0);
        assert_eq!(bound(&q, "alice", "app"), Some(6.0));
        set(&mut q, Some("<default>"), Some("<default>"), 5.0);
        assert_eq!(bound(&q, "alice", "app"), Some(5.0));
        set(&mut q, Some("<default>"), Some("app"), 4.0);
        assert_eq!(bound(&q, "alice", "app"), Some(4.0));
        set(&mut q, Some("alice"), None, 3.0);
        assert_eq!(bound(&q, "alice", "app"), Some(3.0));
        set(&mut q, Some("alice"), Some("<default>"), 2.0);
        assert_eq!(bound(&q, "alice", "app"), Some(2.0));
        set(&mut q, Some("alice"), Some("app"), 1.0);
        assert_eq!(bound(&q, "alice", "app"), Some(1.0));
        assert_eq!(bound(&q, "bob", "other"), Some(5.0));
    }

    #[test]
    fn a_user_quota_is_shared_by_the_users_clients_and_a_default_one_is_not() {
        let mut q = BTreeMap::new();
        set(&mut q, Some("alice"), None, 10.0);
        let a = resolve(&q, "producer_byte_rate", "alice", "one").expect("applies");
        let b = resolve(&q, "producer_byte_rate", "alice", "two").expect("applies");
        assert_eq!((a.user_tag.as_str(), a.client_tag.as_str()), ("alice", ""));
        assert_eq!(a, b, "one sensor for both clients");
        let mut q = BTreeMap::new();
        set(&mut q, None, Some("<default>"), 10.0);
        let a = resolve(&q, "producer_byte_rate", "alice", "one").expect("applies");
        let b = resolve(&q, "producer_byte_rate", "bob", "two").expect("applies");
        assert_ne!(a.client_tag, b.client_tag, "each client id its own");
        assert_eq!(a.user_tag, "");
    }
}
