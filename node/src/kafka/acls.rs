//! CreateAcls, DescribeAcls and DeleteAcls: ACLs live in the metadata log; describing
//! reads this broker's image, changes go through the active controller. Without an
//! authorizer configured, Kafka answers SECURITY_DISABLED, and so does Fjord.

use std::collections::BTreeMap;

use fjord_controller::metadata::acls::{
    AclBinding, AclFilter, AclOperation, AclPermission, PatternFilter, PatternType, ResourceType,
};
use fjord_controller::{ControllerRequest, ControllerResponse};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::errors::KafkaError;

const ANY: i8 = 1;

fn invalid(msg: impl Into<String>) -> KafkaError {
    KafkaError::new(ResponseError::InvalidRequest, msg)
}

fn security_disabled() -> KafkaError {
    KafkaError::new(
        ResponseError::SecurityDisabled,
        "No Authorizer is configured on the broker (authorizer.class.name)",
    )
}

/// Checks one binding as Kafka's controller does.
fn binding(
    resource_type: i8,
    resource_name: &str,
    pattern_type: i8,
    principal: &str,
    host: &str,
    operation: i8,
    permission: i8,
) -> Result<AclBinding, KafkaError> {
    let resource_type = ResourceType::from_code(resource_type)
        .ok_or_else(|| invalid(format!("invalid resource type {resource_type}")))?;
    let pattern_type = match pattern_type {
        3 => PatternType::Literal,
        4 => PatternType::Prefixed,
        other => return Err(invalid(format!("invalid pattern type {other}"))),
    };
    let operation = AclOperation::from_code(operation)
        .ok_or_else(|| invalid(format!("invalid operation {operation}")))?;
    let permission = AclPermission::from_code(permission)
        .ok_or_else(|| invalid(format!("invalid permission type {permission}")))?;
    if resource_name.is_empty() {
        return Err(invalid("the resource name may not be empty"));
    }
    if resource_type == ResourceType::Cluster && resource_name != authz::CLUSTER_NAME {
        return Err(invalid(format!(
            "the cluster resource is named {}",
            authz::CLUSTER_NAME
        )));
    }
    let Some((kind, name)) = principal.split_once(':') else {
        return Err(invalid(format!(
            "principal '{principal}' must look like User:NAME"
        )));
    };
    if kind != "User" || name.is_empty() {
        return Err(invalid(format!(
            "principal '{principal}' must look like User:NAME"
        )));
    }
    if host.is_empty() {
        return Err(invalid(
            "the host may not be empty ('*' matches every host)",
        ));
    }
    if !crate::security::authorizer::operations_of(resource_type).contains(&operation)
        && operation != AclOperation::All
    {
        return Err(invalid(format!(
            "{operation:?} does not apply to {resource_type:?} resources"
        )));
    }
    Ok(AclBinding {
        resource_type,
        resource_name: resource_name.to_string(),
        pattern_type,
        principal: principal.to_string(),
        host: host.to_string(),
        operation,
        permission,
    })
}

fn filter(
    resource_type: i8,
    resource_name: Option<&StrBytes>,
    pattern_type: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, KafkaError> {
    let resource_type = match resource_type {
        ANY => None,
        t => Some(
            ResourceType::from_code(t)
                .ok_or_else(|| invalid(format!("invalid resource type {t}")))?,
        ),
    };
    let pattern = PatternFilter::from_code(pattern_type)
        .ok_or_else(|| invalid(format!("invalid pattern type {pattern_type}")))?;
    let operation = match operation {
        ANY => None,
        o => Some(
            AclOperation::from_code(o).ok_or_else(|| invalid(format!("invalid operation {o}")))?,
        ),
    };
    let permission = match permission {
        ANY => None,
        p => Some(
            AclPermission::from_code(p)
                .ok_or_else(|| invalid(format!("invalid permission type {p}")))?,
        ),
    };
    Ok(AclFilter {
        resource_type,
        resource_name: resource_name.map(|s| s.to_string()),
        pattern,
        principal: principal.map(|s| s.to_string()),
        host: host.map(|s| s.to_string()),
        operation,
        permission,
    })
}

pub async fn create(ctx: &RequestContext, req: CreateAclsRequest) -> ResponseKind {
    let refuse_all = if !ctx.broker.security.authorizer.enabled {
        Some(security_disabled())
    } else {
        authz::cluster(ctx, Op::Alter).err()
    };
    let mut results: Vec<Result<AclBinding, KafkaError>> = req
        .creations
        .iter()
        .map(|c| match &refuse_all {
            Some(e) => Err(e.clone()),
            None => binding(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            ),
        })
        .collect();
    let acls: Vec<AclBinding> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    if !acls.is_empty() {
        if let Err(e) = ctx
            .broker
            .submit_everywhere(ControllerRequest::CreateAcls { acls })
            .await
        {
            let e = KafkaError::from(&e);
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(e.clone());
            }
        }
    }
    ResponseKind::CreateAcls(
        CreateAclsResponse::default().with_results(
            results
                .into_iter()
                .map(|r| match r {
                    Ok(_) => AclCreationResult::default(),
                    Err(e) => AclCreationResult::default()
                        .with_error_code(e.code())
                        .with_error_message(Some(StrBytes::from_string(e.message))),
                })
                .collect(),
        ),
    )
}

pub fn describe(ctx: &RequestContext, req: DescribeAclsRequest) -> ResponseKind {
    let response = DescribeAclsResponse::default();
    let checked = if !ctx.broker.security.authorizer.enabled {
        Err(security_disabled())
    } else {
        authz::cluster(ctx, Op::Describe).and_then(|()| {
            filter(
                req.resource_type_filter,
                req.resource_name_filter.as_ref(),
                req.pattern_type_filter,
                req.principal_filter.as_ref(),
                req.host_filter.as_ref(),
                req.operation,
                req.permission_type,
            )
        })
    };
    let f = match checked {
        Ok(f) => f,
        Err(e) => {
            return ResponseKind::DescribeAcls(
                response
                    .with_error_code(e.code())
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            )
        }
    };
    let md = ctx.broker.metadata();
    let mut by_resource: BTreeMap<(ResourceType, String, PatternType), Vec<AclDescription>> =
        BTreeMap::new();
    for b in md.acls.iter().filter(|b| f.matches(b)) {
        by_resource
            .entry((b.resource_type, b.resource_name.clone(), b.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(StrBytes::from_string(b.principal.clone()))
                    .with_host(StrBytes::from_string(b.host.clone()))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
    }
    ResponseKind::DescribeAcls(
        response.with_resources(
            by_resource
                .into_iter()
                .map(|((t, name, p), acls)| {
                    DescribeAclsResource::default()
                        .with_resource_type(t.code())
                        .with_resource_name(StrBytes::from_string(name))
                        .with_pattern_type(p.code())
                        .with_acls(acls)
                })
                .collect(),
        ),
    )
}

pub async fn delete(ctx: &RequestContext, req: DeleteAclsRequest) -> ResponseKind {
    let refuse_all = if !ctx.broker.security.authorizer.enabled {
        Some(security_disabled())
    } else {
        authz::cluster(ctx, Op::Alter).err()
    };
    let parsed: Vec<Result<AclFilter, KafkaError>> = req
        .filters
        .iter()
        .map(|f| match &refuse_all {
            Some(e) => Err(e.clone()),
            None => filter(
                f.resource_type_filter,
                f.resource_name_filter.as_ref(),
                f.pattern_type_filter,
                f.principal_filter.as_ref(),
                f.host_filter.as_ref(),
                f.operation,
                f.permission_type,
            ),
        })
        .collect();
    let valid: Vec<AclFilter> = parsed
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    let mut deleted: Result<Vec<Vec<AclBinding>>, KafkaError> = Ok(Vec::new());
    if !valid.is_empty() {
        deleted = match ctx
            .broker
            .submit_everywhere(ControllerRequest::DeleteAcls { filters: valid })
            .await
        {
            Ok(ControllerResponse::AclsDeleted(d)) => Ok(d),
            Ok(other) => Err(KafkaError::new(
                ResponseError::UnknownServerError,
                format!("unexpected controller answer {other:?}"),
            )),
            Err(e) => Err(KafkaError::from(&e)),
        };
    }
    let mut deleted_iter = deleted.as_ref().ok().map(|d| d.iter());
    let results = parsed
        .into_iter()
        .map(|r| {
            let outcome = r.and_then(|_| match (&deleted, deleted_iter.as_mut()) {
                (Ok(_), Some(it)) => Ok(it.next().cloned().unwrap_or_default()),
                (Err(e), _) => Err(e.clone()),
                _ => Ok(Vec::new()),
            });
            match outcome {
                Ok(bindings) => DeleteAclsFilterResult::default().with_matching_acls(
                    bindings
                        .into_iter()
                        .map(|b| {
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(b.resource_type.code())
                                .with_resource_name(StrBytes::from_string(b.resource_name))
                                .with_pattern_type(b.pattern_type.code())
                                .with_principal(StrBytes::from_string(b.principal))
                                .with_host(StrBytes::from_string(b.host))
                                .with_operation(b.operation.code())
                                .with_permission_type(b.permission.code())
                        })
                        .collect(),
                ),
                Err(e) => DeleteAclsFilterResult::default()
                    .with_error_code(e.code())
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            }
        })
        .collect();
    ResponseKind::DeleteAcls(DeleteAclsResponse::default().with_filter_results(results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_are_checked_as_kafka_checks_them() {
        assert!(binding(2, "orders", 3, "User:alice", "*", 3, 3).is_ok());
        assert!(
            binding(2, "orders", 1, "User:alice", "*", 3, 3).is_err(),
            "ANY is a filter"
        );
        assert!(
            binding(2, "orders", 3, "alice", "*", 3, 3).is_err(),
            "no principal type"
        );
        assert!(binding(4, "kafka-cluster", 3, "User:a", "*", 7, 3).is_ok());
        assert!(binding(4, "other", 3, "User:a", "*", 7, 3).is_err());
        assert!(
            binding(3, "g", 3, "User:a", "*", 4, 3).is_err(),
            "no WRITE on groups"
        );
        assert!(
            binding(2, "t", 3, "User:a", "*", 1, 3).is_err(),
            "ANY operation"
        );
        assert!(
            binding(2, "t", 3, "User:a", "*", 3, 1).is_err(),
            "ANY permission"
        );
    }
}
