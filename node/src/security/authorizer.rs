//! Kafka's ACL semantics (StandardAuthorizer), pure: super users may do anything; a
//! DENY that matches wins over any ALLOW; READ, WRITE, DELETE and ALTER imply DESCRIBE,
//! ALTER_CONFIGS implies DESCRIBE_CONFIGS, ALL matches every operation; a resource that
//! no ACL covers at all is allowed only with `allow.everyone.if.no.acl.found`.

use std::collections::{BTreeSet, HashSet};

use fjord_controller::metadata::acls::{
    AclBinding, AclOperation, AclPermission, ResourceType, WILDCARD_PRINCIPAL,
};

/// Who is asking: Kafka's principal (`User:alice`) and the client's address.
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

#[derive(Clone, Debug, Default)]
pub struct Authorizer {
    /// `authorizer.class.name` is set: without it every request is allowed, as in Kafka.
    pub enabled: bool,
    /// `super.users`, e.g. `User:admin;User:ops`.
    pub super_users: HashSet<String>,
    /// `allow.everyone.if.no.acl.found`.
    pub allow_if_no_acl: bool,
}

/// The operations each resource type has, for authorized-operation bitfields.
pub fn operations_of(rtype: ResourceType) -> &'static [AclOperation] {
    use AclOperation::*;
    match rtype {
        ResourceType::Topic => &[
            Read,
            Write,
            Create,
            Delete,
            Alter,
            Describe,
            DescribeConfigs,
            AlterConfigs,
        ],
        ResourceType::Group => &[Read, Delete, Describe],
        ResourceType::Cluster => &[
            Create,
            Alter,
            Describe,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
        ],
        ResourceType::TransactionalId => &[Write, Describe],
        ResourceType::DelegationToken => &[Describe],
        ResourceType::User => &[CreateTokens, DescribeTokens],
    }
}

/// Whether an ACL for `granted` allows `wanted`.
fn implies(granted: AclOperation, wanted: AclOperation) -> bool {
    use AclOperation::*;
    granted == All
        || granted == wanted
        || (wanted == Describe && matches!(granted, Read | Write | Delete | Alter))
        || (wanted == DescribeConfigs && granted == AlterConfigs)
}

impl Authorizer {
    pub fn parse_super_users(value: &str) -> HashSet<String> {
        value
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn applies(b: &AclBinding, who: Requester<'_>) -> bool {
        (b.principal == who.principal || b.principal == WILDCARD_PRINCIPAL)
            && (b.host == "*" || b.host == who.host)
    }

    /// Whether `who` may do `op` on the resource `name` of `rtype`.
    pub fn allows(
        &self,
        acls: &BTreeSet<AclBinding>,
        who: Requester<'_>,
        op: AclOperation,
        rtype: ResourceType,
        name: &str,
    ) -> bool {
        if !self.enabled || self.super_users.contains(who.principal) {
            return true;
        }
        let mut covered = false;
        let mut allowed = false;
        for b in acls
            .iter()
            .filter(|b| b.resource_type == rtype && b.covers(name))
        {
            covered = true;
            if !Self::applies(b, who) {
                continue;
            }
            match b.permission {
                AclPermission::Deny if b.operation == AclOperation::All || b.operation == op => {
                    return false
                }
                AclPermission::Allow if implies(b.operation, op) => allowed = true,
                _ => {}
            }
        }
        allowed || (!covered && self.allow_if_no_acl)
    }

    /// Whether `who` may do `op` on some resource of `rtype` (Kafka's
    /// `authorizeByResourceType`, which lets a principal with WRITE on any topic start an
    /// idempotent producer, KIP-679): an ALLOW of any pattern that no DENY of the same
    /// or a wider pattern cancels.
    pub fn allows_any(
        &self,
        acls: &BTreeSet<AclBinding>,
        who: Requester<'_>,
        op: AclOperation,
        rtype: ResourceType,
    ) -> bool {
        if !self.enabled || self.super_users.contains(who.principal) {
            return true;
        }
        let relevant = || {
            acls.iter()
                .filter(move |b| b.resource_type == rtype && Self::applies(b, who))
        };
        relevant().any(|allow| {
            allow.permission == AclPermission::Allow
                && implies(allow.operation, op)
                && !relevant().any(|deny| {
                    deny.permission == AclPermission::Deny
                        && (deny.operation == AclOperation::All || deny.operation == op)
                        && deny.covers(&allow.resource_name)
                })
        })
    }

    /// Kafka's authorized-operations bitfield of one resource (bit `1 << code`).
    pub fn authorized_operations(
        &self,
        acls: &BTreeSet<AclBinding>,
        who: Requester<'_>,
        rtype: ResourceType,
        name: &str,
    ) -> i32 {
        operations_of(rtype)
            .iter()
            .filter(|op| self.allows(acls, who, **op, rtype, name))
            .fold(0i32, |bits, op| bits | (1 << op.code()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_controller::metadata::acls::PatternType;
    use AclOperation::*;

    fn acl(
        name: &str,
        pattern: PatternType,
        principal: &str,
        op: AclOperation,
        permission: AclPermission,
    ) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission,
        }
    }

    fn on() -> Authorizer {
        Authorizer {
            enabled: true,
            super_users: Authorizer::parse_super_users("User:admin; User:ops"),
            allow_if_no_acl: false,
        }
    }

    const ALICE: Requester<'static> = Requester {
        principal: "User:alice",
        host: "10.0.0.1",
    };

    #[test]
    fn allow_deny_implication_and_super_users() {
        let acls: BTreeSet<_> = [
            acl(
                "orders-",
                PatternType::Prefixed,
                "User:alice",
                Read,
                AclPermission::Allow,
            ),
            acl(
                "orders-secret",
                PatternType::Literal,
                "User:alice",
                All,
                AclPermission::Deny,
            ),
            acl(
                "*",
                PatternType::Literal,
                "User:*",
                Describe,
                AclPermission::Allow,
            ),
        ]
        .into_iter()
        .collect();
        let a = on();
        let allows = |op, name| a.allows(&acls, ALICE, op, ResourceType::Topic, name);
        assert!(allows(Read, "orders-eu"));
        assert!(allows(Describe, "orders-eu"), "READ implies DESCRIBE");
        assert!(!allows(Write, "orders-eu"));
        assert!(!allows(Read, "orders-secret"), "DENY wins");
        assert!(
            !allows(Describe, "orders-secret"),
            "DENY ALL denies everything"
        );
        assert!(allows(Describe, "payments"), "the wildcard ALLOW");
        assert!(!allows(Read, "payments"));
        let admin = Requester {
            principal: "User:admin",
            host: "10.0.0.9",
        };
        assert!(a.allows(&acls, admin, Write, ResourceType::Topic, "orders-secret"));
        let off = Authorizer::default();
        assert!(off.allows(&acls, ALICE, Write, ResourceType::Topic, "orders-secret"));
    }

    #[test]
    fn resources_without_acls_follow_allow_everyone_if_no_acl_found() {
        let acls: BTreeSet<_> = [acl(
            "covered",
            PatternType::Literal,
            "User:bob",
            Read,
            AclPermission::Allow,
        )]
        .into_iter()
        .collect();
        let mut a = on();
        assert!(!a.allows(&acls, ALICE, Read, ResourceType::Topic, "uncovered"));
        a.allow_if_no_acl = true;
        assert!(a.allows(&acls, ALICE, Read, ResourceType::Topic, "uncovered"));
        assert!(
            !a.allows(&acls, ALICE, Read, ResourceType::Topic, "covered"),
            "covered, not for alice"
        );
    }

    #[test]
    fn hosts_and_resource_type_grants() {
        let mut from_one_host = acl(
            "t",
            PatternType::Literal,
            "User:alice",
            Write,
            AclPermission::Allow,
        );
        from_one_host.host = "10.0.0.2".into();
        let acls: BTreeSet<_> = [from_one_host].into_iter().collect();
        let a = on();
        assert!(!a.allows(&acls, ALICE, Write, ResourceType::Topic, "t"));
        let other = Requester {
            principal: "User:alice",
            host: "10.0.0.2",
        };
        assert!(a.allows(&acls, other, Write, ResourceType::Topic, "t"));
        assert!(a.allows_any(&acls, other, Write, ResourceType::Topic));
        assert!(!a.allows_any(&acls, ALICE, Write, ResourceType::Topic));
        let bits = a.authorized_operations(&acls, other, ResourceType::Topic, "t");
        assert_eq!(bits, (1 << Write.code()) | (1 << Describe.code()));
    }
}
