//! ACLs as Kafka's ZooKeeper authorizer (`AclAuthorizer`) stores and applies them: the
//! resource patterns and entries, their znodes (`/kafka-acl/<Type>/<name>` for literal
//! patterns, `/kafka-acl-extended/prefixed/<Type>/<name>` for prefixed ones, JSON
//! `{"version":1,"acls":[{"principal","permissionType","operation","host"}]}`) and change
//! notifications, the filters of Describe/DeleteAcls, and the decision rule
//! ([`authorize`]): deny wins over allow, READ/WRITE/DELETE/ALTER imply DESCRIBE and
//! ALTER_CONFIGS implies DESCRIBE_CONFIGS, `User:*` and host `*` are wildcards.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The name of the one cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The wildcard resource name, principal name and host.
pub const WILDCARD: &str = "*";
/// `/kafka-acl`: literal patterns.
pub const LITERAL_ROOT: &str = "/kafka-acl";
/// `/kafka-acl-extended/prefixed`: prefixed patterns.
pub const PREFIXED_ROOT: &str = "/kafka-acl-extended/prefixed";
/// Change notifications for literal patterns (text `Type:name`).
pub const LITERAL_CHANGES: &str = "/kafka-acl-changes";
/// Change notifications for prefixed patterns (JSON).
pub const EXTENDED_CHANGES: &str = "/kafka-acl-extended-changes";
/// Prefix of the persistent-sequential change nodes.
pub const CHANGE_PREFIX: &str = "acl_changes_";

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $code:expr, $text:expr;)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vdoc])* $variant,)+ }

        impl $name {
            /// The wire code.
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code,)+ }
            }

            /// From the wire code.
            pub fn from_code(code: i8) -> Option<Self> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }

            /// Kafka's name in znodes and tools (`Topic`, `Read`, `Allow`).
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            /// The Java enum constant (`TOPIC`, `TRANSACTIONAL_ID`), as change notifications carry it.
            pub fn constant(self) -> String {
                let mut out = String::new();
                for (i, c) in self.name().chars().enumerate() {
                    if c.is_ascii_uppercase() && i > 0 {
                        out.push('_');
                    }
                    out.push(c.to_ascii_uppercase());
                }
                out
            }

            /// From a name in any case, with or without underscores (`TOPIC`, `Topic`,
            /// `TRANSACTIONAL_ID`, `TransactionalId`), as Kafka's `fromString` reads it.
            pub fn from_name(text: &str) -> Option<Self> {
                let wanted = text.replace('_', "").to_ascii_lowercase();
                [$($name::$variant,)+].into_iter().find(|v| v.name().to_ascii_lowercase() == wanted)
            }
        }
    };
}

wire_enum!(
    /// A resource type (`ResourceType`).
    ResourceType {
        /// Filters only.
        Any = 1, "Any";
        /// A topic.
        Topic = 2, "Topic";
        /// A consumer group.
        Group = 3, "Group";
        /// The cluster (`kafka-cluster`).
        Cluster = 4, "Cluster";
        /// A transactional id.
        TransactionalId = 5, "TransactionalId";
        /// A delegation token (stored, never checked here).
        DelegationToken = 6, "DelegationToken";
        /// A user (stored, never checked here).
        User = 7, "User";
    }
);

wire_enum!(
    /// A pattern type (`PatternType`).
    PatternType {
        /// Filters only: either stored type, name compared exactly.
        Any = 1, "Any";
        /// Filters only: every pattern that would apply to the name.
        Match = 2, "Match";
        /// The name exactly (or `*`, every name).
        Literal = 3, "Literal";
        /// Every name starting with it.
        Prefixed = 4, "Prefixed";
    }
);

wire_enum!(
    /// An operation (`AclOperation`).
    Operation {
        /// Filters only.
        Any = 1, "Any";
        /// Every operation.
        All = 2, "All";
        /// Read.
        Read = 3, "Read";
        /// Write.
        Write = 4, "Write";
        /// Create.
        Create = 5, "Create";
        /// Delete.
        Delete = 6, "Delete";
        /// Alter.
        Alter = 7, "Alter";
        /// Describe.
        Describe = 8, "Describe";
        /// Inter-broker actions.
        ClusterAction = 9, "ClusterAction";
        /// Describe configs.
        DescribeConfigs = 10, "DescribeConfigs";
        /// Alter configs.
        AlterConfigs = 11, "AlterConfigs";
        /// Idempotent produce.
        IdempotentWrite = 12, "IdempotentWrite";
        /// Create delegation tokens.
        CreateTokens = 13, "CreateTokens";
        /// Describe delegation tokens.
        DescribeTokens = 14, "DescribeTokens";
    }
);

wire_enum!(
    /// Allow or deny (`AclPermissionType`).
    Permission {
        /// Filters only.
        Any = 1, "Any";
        /// Deny.
        Deny = 2, "Deny";
        /// Allow.
        Allow = 3, "Allow";
    }
);

/// What ACLs are attached to: a type, a name and how the name matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourcePattern {
    /// The type (never Any).
    pub resource_type: ResourceType,
    /// The name, `*` for every name of a literal pattern.
    pub name: String,
    /// Literal or Prefixed.
    pub pattern_type: PatternType,
}

impl ResourcePattern {
    /// The znode holding this pattern's ACLs.
    pub fn path(&self) -> String {
        let root = if self.pattern_type == PatternType::Prefixed { PREFIXED_ROOT } else { LITERAL_ROOT };
        format!("{root}/{}/{}", self.resource_type.name(), self.name)
    }

    /// The change notification for this pattern: (parent path, payload), as Kafka writes it.
    pub fn change_notification(&self) -> (&'static str, Vec<u8>) {
        if self.pattern_type == PatternType::Literal {
            (LITERAL_CHANGES, format!("{}:{}", self.resource_type.constant(), self.name).into_bytes())
        } else {
            let event = serde_json::json!({
                "version": 1,
                "resourceType": self.resource_type.constant(),
                "name": self.name,
                "patternType": self.pattern_type.constant(),
            });
            (EXTENDED_CHANGES, event.to_string().into_bytes())
        }
    }
}

impl std::fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.resource_type.name(), self.pattern_type.name().to_ascii_uppercase(), self.name)
    }
}

/// One access control entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclEntry {
    /// `User:alice` or `User:*`.
    pub principal: String,
    /// A client address, or `*`.
    pub host: String,
    /// The operation (never Any).
    pub operation: Operation,
    /// Allow or Deny.
    pub permission: Permission,
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    principal: String,
    #[serde(rename = "permissionType")]
    permission_type: String,
    operation: String,
    host: String,
}

#[derive(Serialize, Deserialize)]
struct StoredAcls {
    version: i32,
    acls: Vec<StoredEntry>,
}

/// The JSON of an ACL znode.
pub fn encode_acls(entries: &[AclEntry]) -> Vec<u8> {
    let stored = StoredAcls {
        version: 1,
        acls: entries
            .iter()
            .map(|e| StoredEntry {
                principal: e.principal.clone(),
                permission_type: e.permission.name().to_string(),
                operation: e.operation.name().to_string(),
                host: e.host.clone(),
            })
            .collect(),
    };
    serde_json::to_vec(&stored).expect("ACLs serialize")
}

/// Reads an ACL znode's JSON.
///
/// # Errors
/// JSON that is not Kafka's, or names of operations or permissions that do not exist.
pub fn decode_acls(bytes: &[u8]) -> Result<Vec<AclEntry>, String> {
    let stored: StoredAcls = serde_json::from_slice(bytes).map_err(|e| format!("not Kafka's ACL JSON: {e}"))?;
    stored
        .acls
        .into_iter()
        .map(|e| {
            Ok(AclEntry {
                operation: Operation::from_name(&e.operation).ok_or_else(|| format!("unknown operation {:?}", e.operation))?,
                permission: Permission::from_name(&e.permission_type)
                    .ok_or_else(|| format!("unknown permission type {:?}", e.permission_type))?,
                principal: e.principal,
                host: e.host,
            })
        })
        .collect()
}

/// Every ACL, by pattern: the authorizer's cache.
pub type AclMap = BTreeMap<ResourcePattern, Vec<AclEntry>>;

/// The operations whose ALLOW grants `op` (Kafka's implied operations).
fn granting(op: Operation) -> &'static [Operation] {
    match op {
        Operation::Describe => &[
            Operation::Describe,
            Operation::Read,
            Operation::Write,
            Operation::Delete,
            Operation::Alter,
        ],
        Operation::DescribeConfigs => &[Operation::DescribeConfigs, Operation::AlterConfigs],
        Operation::Read => &[Operation::Read],
        Operation::Write => &[Operation::Write],
        Operation::Create => &[Operation::Create],
        Operation::Delete => &[Operation::Delete],
        Operation::Alter => &[Operation::Alter],
        Operation::ClusterAction => &[Operation::ClusterAction],
        Operation::AlterConfigs => &[Operation::AlterConfigs],
        Operation::IdempotentWrite => &[Operation::IdempotentWrite],
        Operation::CreateTokens => &[Operation::CreateTokens],
        Operation::DescribeTokens => &[Operation::DescribeTokens],
        Operation::All | Operation::Any => &[],
    }
}

/// The ACLs that apply to one resource: literal `*`, literal name, and prefixes of the name.
fn applicable<'a>(acls: &'a AclMap, resource_type: ResourceType, name: &str) -> Vec<&'a AclEntry> {
    acls.iter()
        .filter(|(p, _)| {
            p.resource_type == resource_type
                && match p.pattern_type {
                    PatternType::Literal => p.name == WILDCARD || p.name == name,
                    PatternType::Prefixed => name.starts_with(&p.name),
                    _ => false,
                }
        })
        .flat_map(|(_, entries)| entries.iter())
        .collect()
}

fn entry_matches(e: &AclEntry, principal: &str, host: &str, op: Operation, permission: Permission) -> bool {
    e.permission == permission
        && (e.principal == principal || e.principal == "User:*")
        && (e.operation == op || e.operation == Operation::All)
        && (e.host == WILDCARD || e.host == host)
}

/// How the authorizer is configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// `super.users`: principals allowed everything.
    pub super_users: Vec<String>,
    /// `allow.everyone.if.no.acl.found`.
    pub allow_if_no_acls: bool,
}

/// The authorizer classes Tributary stands in for (`authorizer.class.name`).
pub const AUTHORIZER_CLASSES: [&str; 3] = [
    "kafka.security.authorizer.AclAuthorizer",
    "kafka.security.auth.SimpleAclAuthorizer",
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
];

impl AuthorizerConfig {
    /// The authorizer from Kafka's settings; `None` without `authorizer.class.name`.
    ///
    /// # Errors
    /// A class Tributary does not stand in for (the message lists those it does).
    pub fn from_settings(class: Option<&str>, super_users: Option<&str>, allow_if_no_acls: bool) -> Result<Option<Self>, String> {
        match class.map(str::trim) {
            None | Some("") => Ok(None),
            Some(c) if AUTHORIZER_CLASSES.contains(&c) => Ok(Some(AuthorizerConfig {
                super_users: Self::parse_super_users(super_users.unwrap_or_default()),
                allow_if_no_acls,
            })),
            Some(_) => Err(format!("Tributary applies Kafka's ACL authorizer; give one of {}", AUTHORIZER_CLASSES.join(", "))),
        }
    }

    /// Parses `super.users` (`User:admin;User:kafka`).
    pub fn parse_super_users(text: &str) -> Vec<String> {
        text.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
    }
}

/// Kafka's `AclAuthorizer.authorizeAction`: may `principal` from `host` do `op` on the
/// resource? Super users may; a resource without ACLs follows `allow.everyone.if.no.acl.found`;
/// otherwise no DENY may match and an ALLOW (or one implying `op`) must.
pub fn authorize(
    acls: &AclMap,
    config: &AuthorizerConfig,
    principal: &str,
    host: &str,
    op: Operation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    if config.super_users.iter().any(|s| s == principal) {
        return true;
    }
    let entries = applicable(acls, resource_type, name);
    if entries.is_empty() {
        return config.allow_if_no_acls;
    }
    let denied = entries.iter().any(|e| entry_matches(e, principal, host, op, Permission::Deny));
    let allowed = granting(op).iter().any(|g| entries.iter().any(|e| entry_matches(e, principal, host, *g, Permission::Allow)));
    !denied && allowed
}

/// A Describe/DeleteAcls filter on patterns (`ResourcePatternFilter`).
#[derive(Debug, Clone)]
pub struct PatternFilter {
    /// Any, or one type.
    pub resource_type: ResourceType,
    /// None matches every name.
    pub name: Option<String>,
    /// Any, Match, Literal or Prefixed.
    pub pattern_type: PatternType,
}

impl PatternFilter {
    /// Kafka's `ResourcePatternFilter.matches`.
    pub fn matches(&self, p: &ResourcePattern) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != p.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, PatternType::Any | PatternType::Match) && self.pattern_type != p.pattern_type {
            return false;
        }
        let Some(name) = &self.name else { return true };
        if self.pattern_type == PatternType::Any || self.pattern_type == p.pattern_type {
            return *name == p.name;
        }
        match p.pattern_type {
            PatternType::Literal => *name == p.name || p.name == WILDCARD,
            PatternType::Prefixed => name.starts_with(&p.name),
            _ => false,
        }
    }
}

/// A Describe/DeleteAcls filter on entries (`AccessControlEntryFilter`).
#[derive(Debug, Clone)]
pub struct EntryFilter {
    /// None matches every principal.
    pub principal: Option<String>,
    /// None matches every host.
    pub host: Option<String>,
    /// Any, or one operation.
    pub operation: Operation,
    /// Any, or one permission.
    pub permission: Permission,
}

impl EntryFilter {
    /// Kafka's `AccessControlEntryFilter.matches`.
    pub fn matches(&self, e: &AclEntry) -> bool {
        self.principal.as_ref().is_none_or(|p| *p == e.principal)
            && self.host.as_ref().is_none_or(|h| *h == e.host)
            && (self.operation == Operation::Any || self.operation == e.operation)
            && (self.permission == Permission::Any || self.permission == e.permission)
    }
}

/// Checks a binding CreateAcls asks for, as Kafka does; the message says what is wrong.
///
/// # Errors
/// A filter-only value, a principal that is not `Type:name`, a cluster resource not named
/// `kafka-cluster`, an empty name.
pub fn validate_binding(pattern: &ResourcePattern, entry: &AclEntry) -> Result<(), String> {
    if matches!(pattern.resource_type, ResourceType::Any) {
        return Err("Invalid ACL: the resource type must be a specific one, not ANY".into());
    }
    if !matches!(pattern.pattern_type, PatternType::Literal | PatternType::Prefixed) {
        return Err("Invalid ACL: the pattern type must be LITERAL or PREFIXED".into());
    }
    if matches!(entry.operation, Operation::Any) || matches!(entry.permission, Permission::Any) {
        return Err("Invalid ACL: the operation and permission type must be specific ones, not ANY".into());
    }
    if pattern.name.is_empty() {
        return Err("Invalid ACL: the resource name must not be empty".into());
    }
    if pattern.resource_type == ResourceType::Cluster && pattern.name != CLUSTER_NAME {
        return Err(format!("Invalid ACL: the cluster resource is named {CLUSTER_NAME}"));
    }
    if pattern.pattern_type == PatternType::Prefixed && pattern.name == WILDCARD {
        return Err("Invalid ACL: a PREFIXED pattern of '*' is not allowed; use LITERAL '*' for every name".into());
    }
    match entry.principal.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(()),
        _ => Err(format!("Invalid ACL: principal {:?} is not of the form Type:name (User:alice)", entry.principal)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(t: ResourceType, name: &str, p: PatternType) -> ResourcePattern {
        ResourcePattern { resource_type: t, name: name.into(), pattern_type: p }
    }

    fn entry(principal: &str, op: Operation, permission: Permission) -> AclEntry {
        AclEntry { principal: principal.into(), host: "*".into(), operation: op, permission }
    }

    #[test]
    fn kafkas_authorizer_rules_hold() {
        use Operation::*;
        use Permission::*;
        use ResourceType::*;
        let mut acls = AclMap::new();
        acls.insert(pattern(Topic, "a", PatternType::Literal), vec![entry("User:alice", Write, Allow)]);
        acls.insert(pattern(Group, "g", PatternType::Literal), vec![entry("User:alice", Read, Allow)]);
        acls.insert(pattern(Topic, "logs-", PatternType::Prefixed), vec![entry("User:*", Read, Allow)]);
        acls.insert(pattern(Topic, "logs-secret", PatternType::Literal), vec![entry("User:bob", Read, Deny)]);
        acls.insert(pattern(Topic, "*", PatternType::Literal), vec![entry("User:carol", All, Allow)]);
        acls.insert(
            pattern(Topic, "cfg", PatternType::Literal),
            vec![entry("User:dave", AlterConfigs, Allow), AclEntry { host: "10.0.0.1".into(), ..entry("User:erin", Read, Allow) }],
        );
        let open = AuthorizerConfig { super_users: vec!["User:admin".into()], allow_if_no_acls: false };
        // (principal, op, type, name, allowed)
        let cases = [
            ("User:alice", Write, Topic, "a", true),
            ("User:alice", Describe, Topic, "a", true), // implied by Write
            ("User:alice", Read, Topic, "a", false),
            ("User:alice", Read, Group, "g", true),
            ("User:alice", Describe, Group, "g", true),
            ("User:alice", Delete, Group, "g", false),
            ("User:alice", Write, Topic, "b", false),    // no ACL for b but the * literal exists: not empty
            ("User:bob", Read, Topic, "logs-app", true), // prefixed, wildcard principal
            ("User:bob", Read, Topic, "logs-secret", false), // deny wins
            ("User:carol", Delete, Topic, "anything", true), // All on *
            ("User:dave", DescribeConfigs, Topic, "cfg", true), // implied by AlterConfigs
            ("User:dave", Describe, Topic, "cfg", false),
            ("User:erin", Read, Topic, "cfg", false), // wrong host
            ("User:admin", Delete, Cluster, "kafka-cluster", true), // super user
            ("User:alice", Create, Cluster, "kafka-cluster", false), // no ACLs, not allowed if none
        ];
        for (principal, op, t, name, want) in cases {
            assert_eq!(authorize(&acls, &open, principal, "127.0.0.1", op, t, name), want, "{principal} {op:?} {t:?}:{name}");
        }
        assert!(authorize(&acls, &AuthorizerConfig { allow_if_no_acls: true, ..open.clone() }, "User:x", "h", Create, Cluster, "kafka-cluster"));
        assert!(authorize(&acls, &open, "User:erin", "10.0.0.1", Read, Topic, "cfg"));
    }

    #[test]
    fn znodes_and_notifications_are_kafkas() {
        let p = pattern(ResourceType::TransactionalId, "tx-", PatternType::Prefixed);
        assert_eq!(p.path(), "/kafka-acl-extended/prefixed/TransactionalId/tx-");
        let (parent, body) = p.change_notification();
        assert_eq!(parent, EXTENDED_CHANGES);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["resourceType"], "TRANSACTIONAL_ID");
        assert_eq!(v["patternType"], "PREFIXED");
        let l = pattern(ResourceType::Topic, "a", PatternType::Literal);
        assert_eq!(l.path(), "/kafka-acl/Topic/a");
        assert_eq!(l.change_notification(), (LITERAL_CHANGES, b"TOPIC:a".to_vec()));
        let entries = vec![entry("User:alice", Operation::IdempotentWrite, Permission::Allow)];
        let json = encode_acls(&entries);
        assert_eq!(
            String::from_utf8(json.clone()).unwrap(),
            r#"{"version":1,"acls":[{"principal":"User:alice","permissionType":"Allow","operation":"IdempotentWrite","host":"*"}]}"#
        );
        assert_eq!(decode_acls(&json).unwrap(), entries);
        assert!(decode_acls(br#"{"version":1,"acls":[{"principal":"User:a","permissionType":"Maybe","operation":"Read","host":"*"}]}"#).is_err());
        assert_eq!(ResourceType::from_name("TRANSACTIONAL_ID"), Some(ResourceType::TransactionalId));
        assert_eq!(Operation::from_name("DESCRIBE_CONFIGS"), Some(Operation::DescribeConfigs));
    }

    #[test]
    fn filters_match_as_kafkas_do() {
        let lit = pattern(ResourceType::Topic, "a", PatternType::Literal);
        let star = pattern(ResourceType::Topic, "*", PatternType::Literal);
        let pre = pattern(ResourceType::Topic, "ab", PatternType::Prefixed);
        let f = |t, name: Option<&str>, p| PatternFilter { resource_type: t, name: name.map(str::to_string), pattern_type: p };
        let cases = [
            (f(ResourceType::Any, None, PatternType::Any), [true, true, true]),
            (f(ResourceType::Topic, Some("a"), PatternType::Literal), [true, false, false]),
            (f(ResourceType::Topic, Some("abc"), PatternType::Match), [false, true, true]),
            (f(ResourceType::Topic, Some("ab"), PatternType::Any), [false, false, true]),
            (f(ResourceType::Group, None, PatternType::Any), [false, false, false]),
        ];
        for (filter, want) in cases {
            assert_eq!([filter.matches(&lit), filter.matches(&star), filter.matches(&pre)], want, "{filter:?}");
        }
        let e = entry("User:alice", Operation::Read, Permission::Allow);
        assert!(EntryFilter { principal: None, host: None, operation: Operation::Any, permission: Permission::Any }.matches(&e));
        assert!(!EntryFilter { principal: Some("User:bob".into()), host: None, operation: Operation::Any, permission: Permission::Any }.matches(&e));
        assert!(!EntryFilter { principal: None, host: None, operation: Operation::Write, permission: Permission::Any }.matches(&e));
    }

    #[test]
    fn bindings_are_validated() {
        let ok = entry("User:alice", Operation::Read, Permission::Allow);
        assert!(validate_binding(&pattern(ResourceType::Topic, "a", PatternType::Literal), &ok).is_ok());
        for (p, e, want) in [
            (pattern(ResourceType::Any, "a", PatternType::Literal), ok.clone(), "ANY"),
            (pattern(ResourceType::Topic, "a", PatternType::Match), ok.clone(), "LITERAL or PREFIXED"),
            (pattern(ResourceType::Cluster, "c", PatternType::Literal), ok.clone(), "kafka-cluster"),
            (pattern(ResourceType::Topic, "", PatternType::Literal), ok.clone(), "empty"),
            (pattern(ResourceType::Topic, "a", PatternType::Literal), entry("alice", Operation::Read, Permission::Allow), "Type:name"),
            (pattern(ResourceType::Topic, "a", PatternType::Literal), entry("User:a", Operation::Any, Permission::Allow), "ANY"),
        ] {
            let got = validate_binding(&p, &e).unwrap_err();
            assert!(got.contains(want), "{got}");
        }
    }
}
