//! ACL bindings and filters as Kafka's admin API carries them: resource types, pattern
//! types, operations and permissions by their wire codes and names.
//!
//! No files.

use serde::{Deserialize, Serialize};

/// The name Kafka gives the one CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The literal resource name (and host) that matches every name.
pub const WILDCARD: &str = "*";

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $code:expr, $text:expr;)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name { $($variant),* }

        impl $name {
            pub fn code(self) -> i8 {
                match self { $(Self::$variant => $code),* }
            }
            /// Codes this broker does not know become UNKNOWN, as Kafka's `fromCode`.
            pub fn from_code(code: i8) -> Self {
                match code { $($code => Self::$variant,)* _ => Self::Unknown }
            }
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),* }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// Kafka's `ResourceType`.
    ResourceType {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        Topic = 2, "TOPIC";
        Group = 3, "GROUP";
        Cluster = 4, "CLUSTER";
        TransactionalId = 5, "TRANSACTIONAL_ID";
        DelegationToken = 6, "DELEGATION_TOKEN";
        User = 7, "USER";
    }
);

wire_enum!(
    /// Kafka's `PatternType`: MATCH and ANY only in filters.
    PatternType {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        Match = 2, "MATCH";
        Literal = 3, "LITERAL";
        Prefixed = 4, "PREFIXED";
    }
);

wire_enum!(
    /// Kafka's `AclOperation`; the code is also the bit in `*_authorized_operations`.
    Operation {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        All = 2, "ALL";
        Read = 3, "READ";
        Write = 4, "WRITE";
        Create = 5, "CREATE";
        Delete = 6, "DELETE";
        Alter = 7, "ALTER";
        Describe = 8, "DESCRIBE";
        ClusterAction = 9, "CLUSTER_ACTION";
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "ALTER_CONFIGS";
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        CreateTokens = 13, "CREATE_TOKENS";
        DescribeTokens = 14, "DESCRIBE_TOKENS";
    }
);

wire_enum!(
    /// Kafka's `AclPermissionType`.
    Permission {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
);

impl ResourceType {
    /// The operations Kafka reports in a resource's authorized-operations bit field
    /// (`AclEntry.supportedOperations`).
    pub fn supported_operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            // Kafka 4 added the group configs (KIP-848) and their two operations.
            ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
            ResourceType::Unknown | ResourceType::Any => &[],
        }
    }

    /// Every operation the type supports as a bit field, what Kafka answers without an
    /// authorizer.
    pub fn all_operations_bits(self) -> i32 {
        self.supported_operations()
            .iter()
            .fold(0, |bits, op| bits | (1 << op.code()))
    }
}

/// One ACL: who may (or may not) do what on which resources from where.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `Type:name`, e.g. `User:alice` or `User:*`.
    pub principal: String,
    /// `*` or one client address.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// Kafka's checks of a new ACL (`AclControlManager.validateNewAcl` and the CreateAcls
    /// handler's): the INVALID_REQUEST message when it cannot be stored.
    pub fn validate(&self) -> Result<(), String> {
        if matches!(
            self.resource_type,
            ResourceType::Unknown | ResourceType::Any
        ) {
            return Err(format!("Invalid resourceType {}", self.resource_type));
        }
        if !matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return Err(format!("Invalid patternType {}", self.pattern_type));
        }
        if matches!(self.operation, Operation::Unknown | Operation::Any) {
            return Err(format!("Invalid operation {}", self.operation));
        }
        if !matches!(self.permission, Permission::Allow | Permission::Deny) {
            return Err(format!("Invalid permissionType {}", self.permission));
        }
        if self.resource_name.is_empty() {
            return Err("Resource name should not be empty".into());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Err(format!(
                "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
            ));
        }
        match self.principal.split_once(':') {
            None => Err(format!(
                "Could not parse principal from `{}` (no colon is present separating the principal type from the principal name)",
                self.principal
            )),
            Some(("", _)) => Err(format!("Could not parse principal from `{}`", self.principal)),
            Some(_) => Ok(()),
        }
    }
}

/// A filter over bindings, as DescribeAcls and DeleteAcls carry it: `None` and ANY match
/// everything; MATCH matches the patterns that would apply to the named resource.
#[derive(Clone, Debug, Default)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern_type: Option<PatternType>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    /// Builds a filter from wire codes; ANY becomes `None`. UNKNOWN anywhere makes the
    /// filter invalid, as Kafka refuses it.
    #[allow(clippy::too_many_arguments)]
    pub fn from_wire(
        resource_type: i8,
        resource_name: Option<&str>,
        pattern_type: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<Self, String> {
        let rt = ResourceType::from_code(resource_type);
        let pt = PatternType::from_code(pattern_type);
        let op = Operation::from_code(operation);
        let perm = Permission::from_code(permission);
        if rt == ResourceType::Unknown
            || pt == PatternType::Unknown
            || op == Operation::Unknown
            || perm == Permission::Unknown
        {
            return Err("The filter contains UNKNOWN elements".into());
        }
        Ok(AclFilter {
            resource_type: (rt != ResourceType::Any).then_some(rt),
            resource_name: resource_name.map(str::to_string),
            pattern_type: (pt != PatternType::Any).then_some(pt),
            principal: principal.map(str::to_string),
            host: host.map(str::to_string),
            operation: (op != Operation::Any).then_some(op),
            permission: (perm != Permission::Any).then_some(perm),
        })
    }

    pub fn matches(&self, acl: &AclBinding) -> bool {
        self.resource_type.is_none_or(|t| t == acl.resource_type)
            && self.matches_pattern(acl)
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && self.operation.is_none_or(|o| o == acl.operation)
            && self.permission.is_none_or(|p| p == acl.permission)
    }

    fn matches_pattern(&self, acl: &AclBinding) -> bool {
        match self.pattern_type {
            Some(PatternType::Match) => match &self.resource_name {
                None => true,
                Some(name) => match acl.pattern_type {
                    PatternType::Literal => {
                        acl.resource_name == *name || acl.resource_name == WILDCARD
                    }
                    PatternType::Prefixed => name.starts_with(&acl.resource_name),
                    _ => false,
                },
            },
            Some(pt) => {
                pt == acl.pattern_type
                    && self
                        .resource_name
                        .as_ref()
                        .is_none_or(|n| *n == acl.resource_name)
            }
            None => self
                .resource_name
                .as_ref()
                .is_none_or(|n| *n == acl.resource_name),
        }
    }
}
