//! Feature versions (KIP-584, KIP-778): what this software supports, what the cluster
//! has finalized, and whether an UpdateFeatures request may move a level.
//!
//! Finalized levels live in the metadata log, so every node reports the same ones and
//! they survive restarts. A cluster that never changed a level runs the defaults below,
//! which are what a new Kafka 4.0 cluster would finalize for the features Fjord has; a
//! stored level (0 included, meaning "disabled") overrides its default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ClusterMetadata, MetadataError};

/// One feature this software supports: levels `min..=max`, and the level a cluster
/// runs when none was set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureRange {
    pub name: &'static str,
    pub min: i16,
    pub max: i16,
    pub default: i16,
}

pub const METADATA_VERSION: &str = "metadata.version";
pub const KRAFT_VERSION: &str = "kraft.version";
pub const GROUP_VERSION: &str = "group.version";
pub const TRANSACTION_VERSION: &str = "transaction.version";
pub const SHARE_VERSION: &str = "share.version";

/// Kafka's metadata.version level of 4.0-IV0, which group.version 1 needs.
const MV_4_0_IV0: i16 = 22;

/// What Fjord supports. metadata.version spans Kafka 3.3-IV3 (7) to 4.0-IV3 (25): Fjord
/// keeps one metadata format and reads clients of all of them. group.version 1 is the
/// KIP-848 consumer protocol. share.version 1 is KIP-932 share groups: Kafka 4.1 leaves
/// it off until `kafka-features.sh upgrade --feature share.version=1`, a new Fjord
/// cluster finalizes it as it does group.version, and 0 turns share groups off.
/// transaction.version 2 (KIP-890 part 2) is not built, so its only level is 0.
pub const SUPPORTED: &[FeatureRange] = &[
    FeatureRange {
        name: METADATA_VERSION,
        min: 7,
        max: 25,
        default: 25,
    },
    FeatureRange {
        name: KRAFT_VERSION,
        min: 0,
        max: 1,
        default: 1,
    },
    FeatureRange {
        name: GROUP_VERSION,
        min: 0,
        max: 1,
        default: 1,
    },
    FeatureRange {
        name: TRANSACTION_VERSION,
        min: 0,
        max: 0,
        default: 0,
    },
    FeatureRange {
        name: SHARE_VERSION,
        min: 0,
        max: 1,
        default: 1,
    },
];

/// How a level may move (UpdateFeatures v1's upgrade_type; v0's allow_downgrade is a
/// safe downgrade).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpgradeType {
    Upgrade,
    SafeDowngrade,
    UnsafeDowngrade,
}

impl UpgradeType {
    /// Kafka's codes: 1 upgrade, 2 safe downgrade, 3 unsafe downgrade.
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(UpgradeType::Upgrade),
            2 => Some(UpgradeType::SafeDowngrade),
            3 => Some(UpgradeType::UnsafeDowngrade),
            _ => None,
        }
    }
}

/// One requested change: `feature` to `level` (0 removes it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureUpdate {
    pub feature: String,
    pub level: i16,
    pub upgrade: UpgradeType,
}

pub fn supported(name: &str) -> Option<&'static FeatureRange> {
    SUPPORTED.iter().find(|f| f.name == name)
}

/// Every feature's level, finalized or by default; 0 means off.
fn levels(md: &ClusterMetadata) -> BTreeMap<String, i16> {
    SUPPORTED
        .iter()
        .map(|f| {
            let level = md.feature_levels.get(f.name).copied().unwrap_or(f.default);
            (f.name.to_string(), level)
        })
        .collect()
}

/// The finalized features as ApiVersions reports them: those above level 0.
pub fn finalized(md: &ClusterMetadata) -> BTreeMap<String, i16> {
    levels(md).into_iter().filter(|(_, l)| *l > 0).collect()
}

/// The finalized level of `feature`, 0 when off or unknown.
pub fn level(md: &ClusterMetadata, feature: &str) -> i16 {
    levels(md).get(feature).copied().unwrap_or(0)
}

fn refuse(message: String) -> MetadataError {
    MetadataError::InvalidFeatureUpdate(message)
}

/// Checks `updates` against what is supported and finalized, all or nothing, as Kafka's
/// controller does. Returns the levels to store.
pub fn validate(
    md: &ClusterMetadata,
    updates: &[FeatureUpdate],
) -> Result<BTreeMap<String, i16>, MetadataError> {
    if updates.is_empty() {
        return Err(MetadataError::InvalidRequest(
            "no feature to update was given".into(),
        ));
    }
    let mut next = levels(md);
    let mut changes = BTreeMap::new();
    for u in updates {
        if changes.contains_key(&u.feature) {
            return Err(MetadataError::InvalidRequest(format!(
                "feature {} was given more than once",
                u.feature
            )));
        }
        let Some(range) = supported(&u.feature) else {
            let names: Vec<&str> = SUPPORTED.iter().map(|f| f.name).collect();
            return Err(refuse(format!(
                "feature {} is not supported (supported: {})",
                u.feature,
                names.join(", ")
            )));
        };
        let current = next.get(&u.feature).copied().unwrap_or(0);
        if u.level < 0 {
            return Err(refuse(format!(
                "{}: level {} is negative",
                u.feature, u.level
            )));
        }
        if u.level == 0 && u.feature == METADATA_VERSION {
            return Err(refuse("metadata.version cannot be removed".into()));
        }
        if u.level != 0 && !(range.min..=range.max).contains(&u.level) {
            return Err(refuse(format!(
                "{} level {} is outside the supported range [{}, {}]",
                u.feature, u.level, range.min, range.max
            )));
        }
        if u.level < current {
            if u.upgrade == UpgradeType::Upgrade {
                return Err(refuse(format!(
                    "{} is at level {current}: lowering it to {} needs the upgrade type \
                     safe or unsafe downgrade",
                    u.feature, u.level
                )));
            }
            if u.feature == METADATA_VERSION {
                return Err(refuse(format!(
                    "metadata.version downgrades are not supported ({current} to {})",
                    u.level
                )));
            }
            if u.feature == KRAFT_VERSION {
                return Err(refuse("kraft.version cannot be downgraded".into()));
            }
        }
        next.insert(u.feature.clone(), u.level);
        changes.insert(u.feature.clone(), u.level);
    }
    let mv = next.get(METADATA_VERSION).copied().unwrap_or(0);
    if next.get(GROUP_VERSION).copied().unwrap_or(0) >= 1 && mv < MV_4_0_IV0 {
        return Err(refuse(format!(
            "group.version 1 needs metadata.version {MV_4_0_IV0} or higher, not {mv}"
        )));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(feature: &str, level: i16, upgrade: UpgradeType) -> FeatureUpdate {
        FeatureUpdate {
            feature: feature.into(),
            level,
            upgrade,
        }
    }

    #[test]
    fn a_new_cluster_finalizes_the_defaults() {
        let md = ClusterMetadata::default();
        let f = finalized(&md);
        assert_eq!(f.get(METADATA_VERSION), Some(&25));
        assert_eq!(f.get(GROUP_VERSION), Some(&1));
        assert_eq!(f.get(KRAFT_VERSION), Some(&1));
        assert_eq!(f.get(SHARE_VERSION), Some(&1));
        assert!(!f.contains_key(TRANSACTION_VERSION), "{f:?}");
    }

    #[test]
    fn downgrades_need_their_upgrade_type_and_some_never_happen() {
        let mut md = ClusterMetadata::default();
        use UpgradeType::*;
        let err = |u: FeatureUpdate, md: &ClusterMetadata| validate(md, &[u]).expect_err("refused");
        assert!(matches!(
            err(update(GROUP_VERSION, 0, Upgrade), &md),
            MetadataError::InvalidFeatureUpdate(_)
        ));
        let ok = validate(&md, &[update(GROUP_VERSION, 0, SafeDowngrade)]).expect("valid");
        md.feature_levels.extend(ok);
        assert!(!finalized(&md).contains_key(GROUP_VERSION));
        assert_eq!(level(&md, GROUP_VERSION), 0);
        // Back up, with the same level again being a no-op.
        let ok = validate(&md, &[update(GROUP_VERSION, 1, Upgrade)]).expect("valid");
        md.feature_levels.extend(ok);
        assert_eq!(level(&md, GROUP_VERSION), 1);
        assert!(validate(&md, &[update(GROUP_VERSION, 1, Upgrade)]).is_ok());
        for u in [
            update(METADATA_VERSION, 24, UnsafeDowngrade),
            update(METADATA_VERSION, 0, SafeDowngrade),
            update(KRAFT_VERSION, 0, UnsafeDowngrade),
            update(GROUP_VERSION, 2, Upgrade),
            update(TRANSACTION_VERSION, 2, Upgrade),
            update("no.such.version", 1, Upgrade),
            update(GROUP_VERSION, -1, SafeDowngrade),
        ] {
            assert!(
                matches!(err(u.clone(), &md), MetadataError::InvalidFeatureUpdate(_)),
                "{u:?}"
            );
        }
    }

    #[test]
    fn requests_are_all_or_nothing_and_dependencies_hold() {
        let md = ClusterMetadata::default();
        use UpgradeType::*;
        // The second update is bad, so the first is not applied either.
        assert!(validate(
            &md,
            &[
                update(GROUP_VERSION, 0, SafeDowngrade),
                update(KRAFT_VERSION, 0, SafeDowngrade)
            ]
        )
        .is_err());
        assert!(matches!(
            validate(
                &md,
                &[
                    update(GROUP_VERSION, 1, Upgrade),
                    update(GROUP_VERSION, 0, SafeDowngrade)
                ]
            ),
            Err(MetadataError::InvalidRequest(_))
        ));
        assert!(matches!(
            validate(&md, &[]),
            Err(MetadataError::InvalidRequest(_))
        ));
        // A cluster below 4.0-IV0 cannot turn on the KIP-848 protocol.
        let mut old = ClusterMetadata::default();
        old.feature_levels.insert(METADATA_VERSION.into(), 21);
        old.feature_levels.insert(GROUP_VERSION.into(), 0);
        assert!(validate(&old, &[update(GROUP_VERSION, 1, Upgrade)]).is_err());
        assert!(validate(
            &old,
            &[
                update(METADATA_VERSION, 22, Upgrade),
                update(GROUP_VERSION, 1, Upgrade)
            ]
        )
        .is_ok());
    }
}
