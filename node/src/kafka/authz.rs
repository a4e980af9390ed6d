//! Authorization at the protocol edge: each handler asks here whether its client may do
//! an operation on a resource, with Kafka's error codes for the answer. With no
//! authorizer configured everything is allowed and nothing is looked up.

use fjord_controller::metadata::acls::ResourceType;
use kafka_protocol::error::ResponseError;

pub use fjord_controller::metadata::acls::AclOperation as Op;

use super::context::RequestContext;
use super::errors::KafkaError;
use crate::security::authorizer::Requester;

/// The client as ACLs name it: `User:<name>` and its address.
pub struct Who {
    principal: String,
    host: String,
}

impl Who {
    pub fn of(ctx: &RequestContext) -> Who {
        Who {
            principal: format!("User:{}", ctx.principal),
            host: ctx.client_host.trim_start_matches('/').to_string(),
        }
    }

    fn requester(&self) -> Requester<'_> {
        Requester {
            principal: &self.principal,
            host: &self.host,
        }
    }
}

/// A decision maker for one request: the ACLs of the image it started with.
pub struct Check<'a> {
    ctx: &'a RequestContext,
    who: Option<Who>,
    md: std::sync::Arc<fjord_controller::ClusterMetadata>,
}

impl<'a> Check<'a> {
    pub fn new(ctx: &'a RequestContext) -> Self {
        let enabled = ctx.broker.security.authorizer.enabled;
        Check {
            ctx,
            who: enabled.then(|| Who::of(ctx)),
            md: ctx.broker.metadata(),
        }
    }

    pub fn allows(&self, op: Op, rtype: ResourceType, name: &str) -> bool {
        let Some(who) = &self.who else { return true };
        self.ctx
            .broker
            .security
            .authorizer
            .allows(&self.md.acls, who.requester(), op, rtype, name)
    }

    pub fn topic(&self, op: Op, name: &str) -> bool {
        self.allows(op, ResourceType::Topic, name)
    }

    pub fn group(&self, op: Op, name: &str) -> bool {
        self.allows(op, ResourceType::Group, name)
    }

    pub fn transactional_id(&self, op: Op, name: &str) -> bool {
        self.allows(op, ResourceType::TransactionalId, name)
    }

    pub fn cluster(&self, op: Op) -> bool {
        self.allows(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Whether the client may do `op` on some resource of `rtype` (KIP-679: WRITE on any
    /// topic stands in for IDEMPOTENT_WRITE on the cluster).
    pub fn any(&self, op: Op, rtype: ResourceType) -> bool {
        let Some(who) = &self.who else { return true };
        self.ctx
            .broker
            .security
            .authorizer
            .allows_any(&self.md.acls, who.requester(), op, rtype)
    }

    /// Kafka's authorized-operations bitfield of a resource.
    pub fn operations(&self, rtype: ResourceType, name: &str) -> i32 {
        match &self.who {
            Some(who) => self.ctx.broker.security.authorizer.authorized_operations(
                &self.md.acls,
                who.requester(),
                rtype,
                name,
            ),
            None => crate::security::authorizer::operations_of(rtype)
                .iter()
                .fold(0, |bits, op| bits | (1 << op.code())),
        }
    }
}

/// Kafka's name of the one cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

pub fn topic_denied(name: &str) -> KafkaError {
    KafkaError::new(
        ResponseError::TopicAuthorizationFailed,
        format!("Not authorized to access topic: [{name}]"),
    )
}

pub fn group_denied(name: &str) -> KafkaError {
    KafkaError::new(
        ResponseError::GroupAuthorizationFailed,
        format!("Not authorized to access group: {name}"),
    )
}

pub fn transactional_id_denied(name: &str) -> KafkaError {
    KafkaError::new(
        ResponseError::TransactionalIdAuthorizationFailed,
        format!("Transactional id authorization failed: {name}"),
    )
}

pub fn cluster_denied() -> KafkaError {
    KafkaError::new(
        ResponseError::ClusterAuthorizationFailed,
        "Cluster authorization failed.",
    )
}

/// `Ok` if the client may do `op` on the cluster, else CLUSTER_AUTHORIZATION_FAILED.
pub fn cluster(ctx: &RequestContext, op: Op) -> Result<(), KafkaError> {
    if Check::new(ctx).cluster(op) {
        Ok(())
    } else {
        Err(cluster_denied())
    }
}
