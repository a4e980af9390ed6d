//! DescribeClientQuotas and AlterClientQuotas (KIP-546): client quotas live in the
//! metadata log; describing reads this broker's image, altering goes through the active
//! controller.

use fjord_controller::metadata::quotas::{
    self, ClientQuota, EntityName, QuotaChange, QuotaEntity, QuotaValue,
};
use fjord_controller::ControllerRequest;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    alter_client_quotas_response, describe_client_quotas_response, AlterClientQuotasRequest,
    AlterClientQuotasResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
    ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use super::context::RequestContext;
use super::errors::KafkaError;

const USER: &str = "user";
const CLIENT_ID: &str = "client-id";
const IP: &str = "ip";

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

fn invalid(msg: impl Into<String>) -> KafkaError {
    KafkaError::new(ResponseError::InvalidRequest, msg)
}

fn name_of(entity_name: Option<&StrBytes>) -> EntityName {
    match entity_name {
        None => EntityName::Default,
        Some(n) => EntityName::Named(n.to_string()),
    }
}

/// One entity given as `(type, name)` pairs, as both APIs send it.
fn parse_entity<'a>(
    parts: impl Iterator<Item = (&'a str, Option<&'a StrBytes>)>,
) -> Result<QuotaEntity, KafkaError> {
    let mut entity = QuotaEntity::default();
    for (kind, name) in parts {
        let slot = match kind {
            USER => &mut entity.user,
            CLIENT_ID => &mut entity.client_id,
            IP => &mut entity.ip,
            other => return Err(invalid(format!("unknown quota entity type '{other}'"))),
        };
        if slot.replace(name_of(name)).is_some() {
            return Err(invalid(format!("entity type '{kind}' given twice")));
        }
    }
    Ok(entity)
}

/// Whether `entity` matches every filter component (and, with `strict`, has no other
/// types).
fn matches(entity: &QuotaEntity, filters: &[(&str, i8, Option<&str>)], strict: bool) -> bool {
    let side = |kind: &str| match kind {
        USER => entity.user.as_ref(),
        IP => entity.ip.as_ref(),
        _ => entity.client_id.as_ref(),
    };
    let each = filters
        .iter()
        .all(|(kind, match_type, name)| match (side(kind), *match_type) {
            (None, _) => false,
            (Some(EntityName::Named(n)), MATCH_EXACT) => Some(n.as_str()) == *name,
            (Some(EntityName::Default), MATCH_DEFAULT) => true,
            (Some(_), MATCH_ANY) => true,
            _ => false,
        });
    let types = usize::from(entity.user.is_some())
        + usize::from(entity.client_id.is_some())
        + usize::from(entity.ip.is_some());
    each && (!strict || types == filters.len())
}

pub fn describe(ctx: &RequestContext, req: DescribeClientQuotasRequest) -> ResponseKind {
    if let Err(e) = super::authz::cluster(ctx, super::authz::Op::DescribeConfigs) {
        return ResponseKind::DescribeClientQuotas(
            DescribeClientQuotasResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(e.message))),
        );
    }
    let mut filters = Vec::with_capacity(req.components.len());
    for c in &req.components {
        let kind = c.entity_type.as_str();
        let error = if ![USER, CLIENT_ID, IP].contains(&kind) {
            Some(format!("unknown quota entity type '{kind}'"))
        } else if !(MATCH_EXACT..=MATCH_ANY).contains(&c.match_type) {
            Some(format!("unknown match type {}", c.match_type))
        } else if c.match_type == MATCH_EXACT && c._match.is_none() {
            Some("an exact match needs a name".into())
        } else if filters.iter().any(|(k, _, _)| *k == kind) {
            Some(format!("entity type '{kind}' given twice"))
        } else {
            None
        };
        if let Some(message) = error {
            return ResponseKind::DescribeClientQuotas(
                DescribeClientQuotasResponse::default()
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            );
        }
        filters.push((kind, c.match_type, c._match.as_ref().map(|m| m.as_str())));
    }
    let md = ctx.broker.metadata();
    let entries = md
        .client_quotas
        .values()
        .filter(|q| matches(&q.entity, &filters, req.strict))
        .map(entry_of)
        .collect();
    ResponseKind::DescribeClientQuotas(
        DescribeClientQuotasResponse::default()
            .with_error_message(None)
            .with_entries(Some(entries)),
    )
}

fn entry_of(q: &ClientQuota) -> describe_client_quotas_response::EntryData {
    let mut entity = Vec::new();
    for (kind, name) in [
        (USER, &q.entity.user),
        (CLIENT_ID, &q.entity.client_id),
        (IP, &q.entity.ip),
    ] {
        if let Some(name) = name {
            entity.push(
                describe_client_quotas_response::EntityData::default()
                    .with_entity_type(StrBytes::from_static_str(kind))
                    .with_entity_name(match name {
                        EntityName::Default => None,
                        EntityName::Named(n) => Some(StrBytes::from_string(n.clone())),
                    }),
            );
        }
    }
    describe_client_quotas_response::EntryData::default()
        .with_entity(entity)
        .with_values(
            q.values
                .iter()
                .map(|(k, v)| {
                    describe_client_quotas_response::ValueData::default()
                        .with_key(StrBytes::from_string(k.clone()))
                        .with_value(v.0)
                })
                .collect(),
        )
}

pub async fn alter(ctx: &RequestContext, req: AlterClientQuotasRequest) -> ResponseKind {
    // Each entry: its entity as sent (for the answer) and its change or error.
    let mut results = Vec::with_capacity(req.entries.len());
    let mut changes = Vec::new();
    let authorized = super::authz::cluster(ctx, super::authz::Op::AlterConfigs);
    for e in &req.entries {
        let echo: Vec<alter_client_quotas_response::EntityData> = e
            .entity
            .iter()
            .map(|p| {
                alter_client_quotas_response::EntityData::default()
                    .with_entity_type(p.entity_type.clone())
                    .with_entity_name(p.entity_name.clone())
            })
            .collect();
        let change = authorized
            .clone()
            .and_then(|()| {
                parse_entity(
                    e.entity
                        .iter()
                        .map(|p| (p.entity_type.as_str(), p.entity_name.as_ref())),
                )
            })
            .and_then(|entity| {
                let change = QuotaChange {
                    entity,
                    ops: e
                        .ops
                        .iter()
                        .map(|op| {
                            (
                                op.key.to_string(),
                                (!op.remove).then_some(QuotaValue(op.value)),
                            )
                        })
                        .collect(),
                };
                quotas::validate(&change).map_err(|e| KafkaError::from(&e))?;
                Ok(change)
            });
        match change {
            Ok(c) => {
                changes.push(c);
                results.push((echo, None));
            }
            Err(err) => results.push((echo, Some(err))),
        }
    }
    if !changes.is_empty() {
        let outcome = ctx
            .broker
            .submit_everywhere(ControllerRequest::AlterClientQuotas {
                changes,
                validate_only: req.validate_only,
            })
            .await;
        if let Err(e) = outcome {
            let err = KafkaError::from(&e);
            for (_, r) in results.iter_mut().filter(|(_, r)| r.is_none()) {
                *r = Some(err.clone());
            }
        }
    }
    ResponseKind::AlterClientQuotas(
        AlterClientQuotasResponse::default().with_entries(
            results
                .into_iter()
                .map(|(entity, err)| {
                    let mut entry = alter_client_quotas_response::EntryData::default()
                        .with_error_message(None)
                        .with_entity(entity);
                    if let Some(err) = err {
                        entry.error_code = err.code();
                        entry.error_message = Some(StrBytes::from_string(err.message));
                    }
                    entry
                })
                .collect(),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(user: Option<EntityName>, client_id: Option<EntityName>) -> QuotaEntity {
        QuotaEntity {
            user,
            client_id,
            ip: None,
        }
    }

    #[test]
    fn filters_match_as_kafka_describes_them() {
        let alice = || Some(EntityName::Named("alice".into()));
        let both = entity(alice(), Some(EntityName::Default));
        let user_only = entity(alice(), None);
        let f = [(USER, MATCH_EXACT, Some("alice"))];
        assert!(matches(&both, &f, false));
        assert!(!matches(&both, &f, true), "strict: no other types");
        assert!(matches(&user_only, &f, true));
        let f = [(CLIENT_ID, MATCH_DEFAULT, None)];
        assert!(matches(&both, &f, false));
        assert!(!matches(&user_only, &f, false));
        let f = [(USER, MATCH_ANY, None)];
        assert!(matches(&user_only, &f, false));
        assert!(matches(&both, &[], false), "no filter: everything");
        assert!(!matches(&both, &[], true));
    }

    #[test]
    fn entities_are_checked() {
        let named = StrBytes::from_static_str("x");
        assert!(parse_entity([(USER, Some(&named)), (USER, None)].into_iter()).is_err());
        assert!(parse_entity([(IP, Some(&named)), (IP, None)].into_iter()).is_err());
        let ip = parse_entity([(IP, Some(&named))].into_iter()).expect("parses");
        assert_eq!(ip.ip, Some(EntityName::Named("x".into())));
        // The controller's check refuses an IP entity that is not an address.
        let change = QuotaChange {
            entity: ip,
            ops: vec![("connection_creation_rate".into(), Some(QuotaValue(1.0)))],
        };
        assert!(quotas::validate(&change).is_err());
        let e = parse_entity([(CLIENT_ID, None)].into_iter()).expect("valid");
        assert_eq!(e.client_id, Some(EntityName::Default));
    }
}
