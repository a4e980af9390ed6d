//! Feature versions (KIP-584): ApiVersions reports the supported and finalized ones
//! (Kafka's Admin.describeFeatures reads them there), UpdateFeatures changes them through
//! the controller, which checks each move (`fjord_controller::metadata::features`).

use fjord_controller::metadata::features::{self, FeatureUpdate, UpgradeType};
use fjord_controller::metadata::ClusterMetadata;
use fjord_controller::requests::ControllerRequest;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::{FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{
    ApiVersionsResponse, ResponseKind, UpdateFeaturesRequest, UpdateFeaturesResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::errors::KafkaError;

/// Adds the supported and finalized features to an ApiVersions answer (their fields
/// are tagged, so older versions simply do not carry them).
pub fn describe(md: &ClusterMetadata, resp: ApiVersionsResponse) -> ApiVersionsResponse {
    let supported = features::SUPPORTED
        .iter()
        .map(|f| {
            SupportedFeatureKey::default()
                .with_name(StrBytes::from_static_str(f.name))
                .with_min_version(f.min)
                .with_max_version(f.max)
        })
        .collect();
    let finalized = features::finalized(md)
        .into_iter()
        .map(|(name, level)| {
            FinalizedFeatureKey::default()
                .with_name(StrBytes::from_string(name))
                .with_min_version_level(level)
                .with_max_version_level(level)
        })
        .collect();
    resp.with_supported_features(supported)
        .with_finalized_features_epoch(md.features_epoch)
        .with_finalized_features(finalized)
}

/// The request's updates, as the controller takes them.
fn updates(version: i16, req: &UpdateFeaturesRequest) -> Result<Vec<FeatureUpdate>, KafkaError> {
    req.feature_updates
        .iter()
        .map(|u| {
            let upgrade = if version == 0 {
                if u.allow_downgrade {
                    UpgradeType::SafeDowngrade
                } else {
                    UpgradeType::Upgrade
                }
            } else {
                UpgradeType::from_code(u.upgrade_type).ok_or_else(|| {
                    KafkaError::new(
                        ResponseError::InvalidRequest,
                        format!("{}: unknown upgrade type {}", u.feature, u.upgrade_type),
                    )
                })?
            };
            Ok(FeatureUpdate {
                feature: u.feature.to_string(),
                level: u.max_version_level,
                upgrade,
            })
        })
        .collect()
}

pub async fn update(ctx: &RequestContext, req: UpdateFeaturesRequest) -> ResponseKind {
    let version = ctx.version();
    let outcome = match authz::cluster(ctx, Op::Alter) {
        Err(e) => Err(e),
        Ok(()) => match updates(version, &req) {
            Err(e) => Err(e),
            Ok(updates) => ctx
                .broker
                .submit_everywhere(ControllerRequest::UpdateFeatures {
                    updates,
                    validate_only: req.validate_only,
                })
                .await
                .map(|_| ())
                .map_err(|e| KafkaError::from(&e)),
        },
    };
    let (code, message) = match &outcome {
        Ok(()) => (0, None),
        Err(e) => (e.code(), Some(StrBytes::from_string(e.message.clone()))),
    };
    // All or nothing: before v2 every feature carries the request's outcome; v2 answers
    // only at the top.
    let results = if version >= 2 {
        Vec::new()
    } else {
        req.feature_updates
            .iter()
            .map(|u| {
                UpdatableFeatureResult::default()
                    .with_feature(u.feature.clone())
                    .with_error_code(code)
                    .with_error_message(message.clone())
            })
            .collect()
    };
    ResponseKind::UpdateFeatures(
        UpdateFeaturesResponse::default()
            .with_error_code(code)
            .with_error_message(message)
            .with_results(results),
    )
}

/// Whether the KIP-848 consumer protocol is on (group.version 1 or higher).
pub fn consumer_protocol_enabled(md: &ClusterMetadata) -> bool {
    features::level(md, features::GROUP_VERSION) >= 1
}

/// Whether KIP-932 share groups are on (share.version 1 or higher).
pub fn share_groups_enabled(md: &ClusterMetadata) -> bool {
    features::level(md, features::SHARE_VERSION) >= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v0_downgrades_are_safe_and_v1_names_its_type() {
        let mut req = UpdateFeaturesRequest::default().with_feature_updates(vec![
            kafka_protocol::messages::update_features_request::FeatureUpdateKey::default()
                .with_feature(StrBytes::from_static_str("group.version"))
                .with_max_version_level(0)
                .with_allow_downgrade(true)
                .with_upgrade_type(3),
        ]);
        let v0 = updates(0, &req).expect("valid");
        assert_eq!(v0[0].upgrade, UpgradeType::SafeDowngrade);
        let v1 = updates(1, &req).expect("valid");
        assert_eq!(v1[0].upgrade, UpgradeType::UnsafeDowngrade);
        req.feature_updates[0].upgrade_type = 9;
        assert!(updates(1, &req).is_err());
        let md = ClusterMetadata::default();
        assert!(consumer_protocol_enabled(&md));
        assert!(
            share_groups_enabled(&md),
            "a new cluster finalizes share.version 1"
        );
    }
}
