//! ACLs as the metadata log holds them, with Kafka's codes and filter semantics
//! (CreateAcls, DescribeAcls, DeleteAcls). Deciding whether a request is allowed is the
//! broker's (`node/src/security/authorizer.rs`); matching filters is shared here because
//! DeleteAcls is applied from the log.

use serde::{Deserialize, Serialize};

/// Kafka's `ResourceType` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
    DelegationToken,
    User,
}

impl ResourceType {
    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
            ResourceType::DelegationToken => 6,
            ResourceType::User => 7,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            2 => ResourceType::Topic,
            3 => ResourceType::Group,
            4 => ResourceType::Cluster,
            5 => ResourceType::TransactionalId,
            6 => ResourceType::DelegationToken,
            7 => ResourceType::User,
            _ => return None,
        })
    }
}

/// Kafka's `PatternType` for bindings: a literal name (`*` matching every resource of
/// the type) or a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PatternType {
    Literal,
    Prefixed,
}

impl PatternType {
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }
}

/// Kafka's `AclOperation` codes (without UNKNOWN and ANY, which only filters use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AclOperation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    CreateTokens,
    DescribeTokens,
}

impl AclOperation {
    pub const EVERY: [AclOperation; 13] = [
        AclOperation::All,
        AclOperation::Read,
        AclOperation::Write,
        AclOperation::Create,
        AclOperation::Delete,
        AclOperation::Alter,
        AclOperation::Describe,
        AclOperation::ClusterAction,
        AclOperation::DescribeConfigs,
        AclOperation::AlterConfigs,
        AclOperation::IdempotentWrite,
        AclOperation::CreateTokens,
        AclOperation::DescribeTokens,
    ];

    pub fn code(self) -> i8 {
        match self {
            AclOperation::All => 2,
            AclOperation::Read => 3,
            AclOperation::Write => 4,
            AclOperation::Create => 5,
            AclOperation::Delete => 6,
            AclOperation::Alter => 7,
            AclOperation::Describe => 8,
            AclOperation::ClusterAction => 9,
            AclOperation::DescribeConfigs => 10,
            AclOperation::AlterConfigs => 11,
            AclOperation::IdempotentWrite => 12,
            AclOperation::CreateTokens => 13,
            AclOperation::DescribeTokens => 14,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Self::EVERY.into_iter().find(|o| o.code() == code)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AclPermission {
    Deny,
    Allow,
}

impl AclPermission {
    pub fn code(self) -> i8 {
        match self {
            AclPermission::Deny => 2,
            AclPermission::Allow => 3,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            2 => Some(AclPermission::Deny),
            3 => Some(AclPermission::Allow),
            _ => None,
        }
    }
}

/// One ACL: `principal` from `host` is allowed or denied `operation` on the resources
/// of `resource_type` that `resource_name` matches under `pattern_type`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `User:alice`, or `User:*` for every user.
    pub principal: String,
    /// A client address, or `*`.
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

/// The wildcard resource name and principal.
pub const WILDCARD: &str = "*";
pub const WILDCARD_PRINCIPAL: &str = "User:*";

impl AclBinding {
    /// Whether this binding applies to the resource named `name` of its type.
    pub fn covers(&self, name: &str) -> bool {
        match self.pattern_type {
            PatternType::Literal => self.resource_name == name || self.resource_name == WILDCARD,
            PatternType::Prefixed => name.starts_with(&self.resource_name),
        }
    }
}

/// How a filter's pattern type selects bindings (Kafka's ANY, MATCH, LITERAL,
/// PREFIXED).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatternFilter {
    Any,
    /// Bindings that would apply to the filter's resource name.
    Match,
    Exactly(PatternType),
}

impl PatternFilter {
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(PatternFilter::Any),
            2 => Some(PatternFilter::Match),
            3 => Some(PatternFilter::Exactly(PatternType::Literal)),
            4 => Some(PatternFilter::Exactly(PatternType::Prefixed)),
            _ => None,
        }
    }
}

/// DescribeAcls and DeleteAcls filters: `None` matches anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<AclOperation>,
    pub permission: Option<AclPermission>,
}

impl AclFilter {
    pub fn matches(&self, b: &AclBinding) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        self.resource_type.is_none_or(|t| t == b.resource_type)
            && match (self.pattern, &self.resource_name) {
                (PatternFilter::Any, name) => eq(name, &b.resource_name),
                (PatternFilter::Exactly(p), name) => {
                    p == b.pattern_type && eq(name, &b.resource_name)
                }
                (PatternFilter::Match, None) => true,
                (PatternFilter::Match, Some(name)) => b.covers(name),
            }
            && eq(&self.principal, &b.principal)
            && eq(&self.host, &b.host)
            && self.operation.is_none_or(|o| o == b.operation)
            && self.permission.is_none_or(|p| p == b.permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(name: &str, pattern: PatternType) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: AclOperation::Read,
            permission: AclPermission::Allow,
        }
    }

    #[test]
    fn literal_wildcard_and_prefixed_bindings_cover_names() {
        assert!(binding("orders", PatternType::Literal).covers("orders"));
        assert!(!binding("orders", PatternType::Literal).covers("orders-eu"));
        assert!(binding("*", PatternType::Literal).covers("anything"));
        assert!(binding("orders-", PatternType::Prefixed).covers("orders-eu"));
        assert!(!binding("orders-", PatternType::Prefixed).covers("order"));
    }

    #[test]
    fn filters_select_as_kafka_describes() {
        let prefixed = binding("orders-", PatternType::Prefixed);
        let any = AclFilter {
            resource_type: None,
            resource_name: None,
            pattern: PatternFilter::Any,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        };
        assert!(any.matches(&prefixed));
        let exact_literal = AclFilter {
            resource_name: Some("orders-".into()),
            pattern: PatternFilter::Exactly(PatternType::Literal),
            ..any.clone()
        };
        assert!(!exact_literal.matches(&prefixed));
        let matching = AclFilter {
            resource_name: Some("orders-eu".into()),
            pattern: PatternFilter::Match,
            ..any.clone()
        };
        assert!(matching.matches(&prefixed));
        let other_user = AclFilter {
            principal: Some("User:bob".into()),
            ..any
        };
        assert!(!other_user.matches(&prefixed));
        assert_eq!(AclOperation::from_code(8), Some(AclOperation::Describe));
        assert_eq!(AclOperation::from_code(1), None, "ANY is for filters only");
    }
}
