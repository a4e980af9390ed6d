//! `fjord cluster features`: the cluster's feature versions, like kafka-features.sh:
//! described from ApiVersions, changed with UpdateFeatures.

use kafka_protocol::messages::update_features_request::FeatureUpdateKey;
use kafka_protocol::messages::{ApiVersionsRequest, UpdateFeaturesRequest};
use kafka_protocol::protocol::StrBytes;

use crate::cli::client::{key_values, ConnectArgs};
use crate::cli::group::error_name;
use crate::cli::wire::Wire;
use crate::cli::CliError;

#[derive(clap::Args, Debug)]
pub struct FeaturesArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Raise a feature to a level, FEATURE=LEVEL (repeatable), as kafka-features.sh
    /// upgrade --feature.
    #[arg(long, value_name = "FEATURE=LEVEL")]
    upgrade: Vec<String>,
    /// Lower a feature to a level (0 turns it off), FEATURE=LEVEL (repeatable).
    #[arg(long, value_name = "FEATURE=LEVEL")]
    downgrade: Vec<String>,
    /// Downgrade even where metadata may be lost (Kafka's --unsafe).
    #[arg(long, requires = "downgrade")]
    unsafe_downgrade: bool,
    /// Check the changes without making them.
    #[arg(long)]
    dry_run: bool,
}

const UPGRADE: i8 = 1;
const SAFE_DOWNGRADE: i8 = 2;
const UNSAFE_DOWNGRADE: i8 = 3;

pub fn run(args: FeaturesArgs) -> Result<(), CliError> {
    let mut wire = Wire::connect(&args.connect.bootstrap_server, &args.connect)?;
    if args.upgrade.is_empty() && args.downgrade.is_empty() {
        return describe(&mut wire);
    }
    let downgrade = if args.unsafe_downgrade {
        UNSAFE_DOWNGRADE
    } else {
        SAFE_DOWNGRADE
    };
    let mut updates = Vec::new();
    for (flag, list, kind) in [
        ("--upgrade", &args.upgrade, UPGRADE),
        ("--downgrade", &args.downgrade, downgrade),
    ] {
        for (feature, level) in key_values(list, flag)? {
            let level: i16 = level.trim().parse().map_err(|_| {
                CliError::Usage(format!("{flag} {feature}={level}: the level is a number"))
            })?;
            updates.push(
                FeatureUpdateKey::default()
                    .with_feature(StrBytes::from_string(feature))
                    .with_max_version_level(level)
                    .with_upgrade_type(kind),
            );
        }
    }
    let req = UpdateFeaturesRequest::default()
        .with_timeout_ms(i32::try_from(args.connect.timeout_ms).unwrap_or(i32::MAX))
        .with_validate_only(args.dry_run)
        .with_feature_updates(updates);
    let resp = wire.call(1, &req)?;
    if resp.error_code != 0 {
        return Err(CliError::Kafka(format!(
            "{}: {}",
            error_name(resp.error_code),
            resp.error_message.as_deref().unwrap_or("refused")
        )));
    }
    for r in &resp.results {
        let level = req
            .feature_updates
            .iter()
            .find(|u| u.feature == r.feature)
            .map_or(0, |u| u.max_version_level);
        let verb = if args.dry_run { "can be" } else { "was" };
        outln!("{} {verb} set to level {level}.", r.feature);
    }
    Ok(())
}

/// kafka-features.sh describe's lines.
fn describe(wire: &mut Wire) -> Result<(), CliError> {
    let r = wire.call(3, &ApiVersionsRequest::default())?;
    for f in &r.supported_features {
        let finalized = r
            .finalized_features
            .iter()
            .find(|x| x.name == f.name)
            .map_or(0, |x| x.max_version_level);
        outln!(
            "Feature: {}\tSupportedMinVersion: {}\tSupportedMaxVersion: {}\tFinalizedVersionLevel: {}\tEpoch: {}",
            f.name,
            f.min_version,
            f.max_version,
            finalized,
            r.finalized_features_epoch
        );
    }
    Ok(())
}
