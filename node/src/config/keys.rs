//! Which property names mean something: the broker configs, the node's own settings,
//! the security settings, and Kafka settings Fjord accepts without effect; and, for a
//! name that means nothing, the known name it was probably meant to be.

use super::defs;

/// "unknown property K" with its did-you-mean, as start-up and `--check-config` say it.
pub fn unknown_message(key: &str, hint: Option<&str>) -> String {
    match hint {
        Some(h) => format!("unknown property {key} (did you mean {h}?)"),
        None => format!("unknown property {key}"),
    }
}

/// Keys of the node's own settings, read by [`super::NodeConfig::load`].
const NODE_KEYS: &[&str] = &[
    "data.dir",
    "listeners",
    "advertised.listeners",
    "rpc.listener",
    "rpc.advertised.listener",
    "admin.listener",
    "controller.quorum.voters",
    "listener.security.protocol.map",
    "broker.id",
    "controller.listener.names",
    "rpc.allow.unauthenticated",
    "rpc.auth.secret.file",
];

/// Kafka broker settings that a Kafka `server.properties` carries and that mean nothing
/// in Fjord's design, accepted so that such a file loads as it is. Every node is both
/// broker and controller (`process.roles`), and the controller and replication use the
/// rpc listener (`inter.broker.listener.name`, `controller.quorum.bootstrap.servers`:
/// voters join with `fjord cluster add-voter`). Threads and socket buffers are sized by
/// the async runtime and the kernel, and logs recover as they are opened.
const KAFKA_WITHOUT_EFFECT: &[&str] = &[
    "process.roles",
    "controller.quorum.bootstrap.servers",
    "inter.broker.listener.name",
    "num.network.threads",
    "num.io.threads",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "num.recovery.threads.per.data.dir",
    "group.coordinator.rebalance.protocols",
    "metadata.log.dir",
];

pub(super) fn is_known_key(k: &str) -> bool {
    defs::broker_def(k).is_some()
        || NODE_KEYS.contains(&k)
        || KAFKA_WITHOUT_EFFECT.contains(&k)
        || crate::security::KEYS.contains(&k)
        || k.starts_with("listener.name.")
}

/// The known key closest to `unknown` by edit distance, if it is a likely misspelling
/// (at most 3 edits, and fewer than a third of the key).
pub(super) fn did_you_mean(unknown: &str) -> Option<&'static str> {
    let known = defs::BROKER_CONFIGS
        .iter()
        .map(|d| d.def.name)
        .chain(NODE_KEYS.iter().copied())
        .chain(KAFKA_WITHOUT_EFFECT.iter().copied())
        .chain(crate::security::KEYS.iter().copied());
    known
        .map(|k| (edit_distance(unknown, k), k))
        .filter(|(d, _)| *d <= 3 && *d * 3 < unknown.len().max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over bytes (property names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(did_you_mean("num.partition"), Some("num.partitions"));
        assert_eq!(did_you_mean("completely.made.up.setting"), None);
    }
}
