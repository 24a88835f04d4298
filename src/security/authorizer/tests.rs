use super::*;

fn acl(
    rt: ResourceType,
    name: &str,
    pt: PatternType,
    principal: &str,
    host: &str,
    op: Operation,
    perm: Permission,
) -> AclBinding {
    AclBinding {
        resource_type: rt,
        resource_name: name.into(),
        pattern_type: pt,
        principal: principal.into(),
        host: host.into(),
        operation: op,
        permission: perm,
    }
}

fn allow(rt: ResourceType, name: &str, pt: PatternType, op: Operation) -> AclBinding {
    acl(rt, name, pt, "User:alice", "*", op, Permission::Allow)
}

fn deny(rt: ResourceType, name: &str, pt: PatternType, op: Operation) -> AclBinding {
    acl(rt, name, pt, "User:alice", "*", op, Permission::Deny)
}

fn authorizer(dir: &Path, settings: AuthorizerSettings, acls: &[AclBinding]) -> Authorizer {
    let a = Authorizer::open(dir, settings).expect("opens");
    a.create(acls).expect("stores");
    a
}

fn alice() -> Principal {
    Principal::user("alice")
}

use Operation::*;
use PatternType::{Literal, Prefixed};
use ResourceType::{Cluster, Group, Topic};

#[test]
fn deny_wins_over_allow_and_only_for_its_operation() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = authorizer(
        dir.path(),
        Default::default(),
        &[
            allow(Topic, "*", Literal, All),
            deny(Topic, "secret", Literal, Read),
        ],
    );
    assert!(!a.authorize(&alice(), "1.2.3.4", Read, Topic, "secret"));
    assert!(a.authorize(&alice(), "1.2.3.4", Write, Topic, "secret"));
    // DENY on READ does not deny DESCRIBE, which READ would imply for an ALLOW.
    assert!(a.authorize(&alice(), "1.2.3.4", Describe, Topic, "secret"));
    assert!(a.authorize(&alice(), "1.2.3.4", Read, Topic, "other"));
}

#[test]
fn prefixed_and_wildcard_patterns_match_as_kafka_matches_them() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = authorizer(
        dir.path(),
        Default::default(),
        &[
            allow(Topic, "orders-", Prefixed, Write),
            allow(Group, "*", Literal, Read),
            deny(Topic, "orders-secret", Prefixed, Write),
        ],
    );
    assert!(a.authorize(&alice(), "h", Write, Topic, "orders-eu"));
    assert!(!a.authorize(&alice(), "h", Write, Topic, "orders-secret-1"));
    assert!(!a.authorize(&alice(), "h", Write, Topic, "order"));
    assert!(!a.authorize(&alice(), "h", Write, Topic, "xorders-eu"));
    assert!(a.authorize(&alice(), "h", Read, Group, "any-group"));
    // A literal ACL named like a prefix matches only that name.
    let b = authorizer(
        tempfile::tempdir().expect("tmp").path(),
        Default::default(),
        &[allow(Topic, "orders-", Literal, Write)],
    );
    assert!(!b.authorize(&alice(), "h", Write, Topic, "orders-eu"));
}

#[test]
fn read_write_delete_alter_imply_describe_and_alter_configs_implies_describe_configs() {
    let dir = tempfile::tempdir().expect("tmp");
    for op in [Read, Write, Delete, Alter] {
        let a = authorizer(dir.path(), Default::default(), &[]);
        a.delete(&[AclFilter::default()]).expect("clears");
        a.create(&[allow(Topic, "t", Literal, op)]).expect("stores");
        assert!(a.authorize(&alice(), "h", Describe, Topic, "t"), "{op}");
        assert!(!a.authorize(&alice(), "h", Create, Topic, "t"), "{op}");
    }
    let a = authorizer(
        tempfile::tempdir().expect("tmp").path(),
        Default::default(),
        &[allow(Topic, "t", Literal, AlterConfigs)],
    );
    assert!(a.authorize(&alice(), "h", DescribeConfigs, Topic, "t"));
    assert!(!a.authorize(&alice(), "h", Describe, Topic, "t"));
    let bits = a.authorized_operations(&alice(), "h", Topic, "t");
    assert_eq!(bits, (1 << 10) | (1 << 11));
}

#[test]
fn principals_and_hosts_match_exactly_or_by_wildcard() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = authorizer(
        dir.path(),
        Default::default(),
        &[
            acl(
                Topic,
                "t",
                Literal,
                "User:*",
                "10.0.0.1",
                Read,
                Permission::Allow,
            ),
            acl(
                Topic,
                "u",
                Literal,
                "User:bob",
                "*",
                Read,
                Permission::Allow,
            ),
        ],
    );
    assert!(a.authorize(&alice(), "10.0.0.1", Read, Topic, "t"));
    assert!(!a.authorize(&alice(), "10.0.0.2", Read, Topic, "t"));
    assert!(!a.authorize(&alice(), "10.0.0.1", Read, Topic, "u"));
    assert!(a.authorize(&Principal::user("bob"), "any", Read, Topic, "u"));
}

#[test]
fn super_users_bypass_denials_and_no_acl_found_decides_unnamed_resources() {
    let dir = tempfile::tempdir().expect("tmp");
    let settings = AuthorizerSettings {
        super_users: AuthorizerSettings::parse_super_users("User:admin; User:root").expect("ok"),
        allow_everyone_if_no_acl_found: true,
    };
    let a = authorizer(dir.path(), settings, &[deny(Topic, "t", Literal, All)]);
    assert!(a.authorize(&Principal::user("root"), "h", Read, Topic, "t"));
    assert!(!a.authorize(&alice(), "h", Read, Topic, "t"));
    // No ACL at all on "free": allowed for everyone.
    assert!(a.authorize(&alice(), "h", Read, Topic, "free"));
    // An ACL for someone else on the resource: no longer "no ACL found".
    a.create(&[acl(
        Topic,
        "bobs",
        Literal,
        "User:bob",
        "*",
        Read,
        Permission::Allow,
    )])
    .expect("stores");
    assert!(!a.authorize(&alice(), "h", Read, Topic, "bobs"));
    let closed = authorizer(
        tempfile::tempdir().expect("tmp").path(),
        Default::default(),
        &[],
    );
    assert!(!closed.authorize(&alice(), "h", Read, Topic, "free"));
    assert!(AuthorizerSettings::parse_super_users("admin").is_err());
}

#[test]
fn by_resource_type_follows_kip_679() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = authorizer(
        dir.path(),
        Default::default(),
        &[allow(Topic, "t", Literal, Write)],
    );
    assert!(a.authorize_by_resource_type(&alice(), "h", Write, Topic));
    assert!(!a.authorize_by_resource_type(&alice(), "h", Read, Topic));
    // A prefix DENY covering the allowed name takes it away.
    a.create(&[deny(Topic, "t", Prefixed, Write)])
        .expect("stores");
    assert!(!a.authorize_by_resource_type(&alice(), "h", Write, Topic));
    a.create(&[allow(Topic, "x", Prefixed, All)])
        .expect("stores");
    assert!(a.authorize_by_resource_type(&alice(), "h", Write, Topic));
    a.create(&[deny(Topic, "*", Literal, Write)])
        .expect("stores");
    assert!(!a.authorize_by_resource_type(&alice(), "h", Write, Topic));
    assert!(!a.authorize_by_resource_type(&alice(), "h", IdempotentWrite, Cluster));
}

#[test]
fn filters_match_literal_prefixed_and_match_patterns() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = authorizer(
        dir.path(),
        Default::default(),
        &[
            allow(Topic, "orders", Literal, Read),
            allow(Topic, "*", Literal, Read),
            allow(Topic, "ord", Prefixed, Read),
            allow(Group, "orders", Literal, Read),
        ],
    );
    let filter = |pt: i8, name: Option<&str>| {
        AclFilter::from_wire(2, name, pt, None, None, 1, 1).expect("valid")
    };
    assert_eq!(a.describe(&filter(2, Some("orders"))).len(), 3);
    assert_eq!(a.describe(&filter(1, Some("orders"))).len(), 1);
    assert_eq!(a.describe(&filter(3, None)).len(), 2);
    assert_eq!(a.describe(&filter(4, Some("ord"))).len(), 1);
    assert!(AclFilter::from_wire(0, None, 1, None, None, 1, 1).is_err());
    let removed = a.delete(&[filter(3, Some("orders"))]).expect("deletes");
    assert_eq!(removed[0].len(), 1);
    assert_eq!(a.describe(&AclFilter::default()).len(), 3);
}

#[test]
fn acls_survive_a_reopen_and_invalid_ones_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    authorizer(
        dir.path(),
        Default::default(),
        &[allow(Topic, "t", Literal, Read)],
    );
    let again = Authorizer::open(dir.path(), Default::default()).expect("reopens");
    assert!(again.authorize(&alice(), "h", Read, Topic, "t"));
    let mut bad = allow(Cluster, "other", Literal, Alter);
    assert!(bad.validate().is_err());
    bad.resource_name = "kafka-cluster".into();
    assert!(bad.validate().is_ok());
    bad.principal = "alice".into();
    assert!(bad.validate().is_err());
    bad.principal = "User:alice".into();
    bad.pattern_type = PatternType::Match;
    assert!(bad.validate().is_err());
    assert!(Authorizer::from_config("com.example.Mine", Default::default(), dir.path()).is_err());
    assert!(Authorizer::from_config("", Default::default(), dir.path())
        .expect("ok")
        .is_none());
}

#[test]
fn group_operations_include_the_group_config_operations_as_in_kafka_4() {
    // AclEntry.supportedOperations(GROUP): READ, DESCRIBE, DELETE, DESCRIBE_CONFIGS,
    // ALTER_CONFIGS.
    let bits = |ops: &[Operation]| ops.iter().fold(0, |b, op| b | (1 << op.code()));
    assert_eq!(
        Group.all_operations_bits(),
        bits(&[Read, Describe, Delete, DescribeConfigs, AlterConfigs])
    );
    let a = authorizer(
        tempfile::tempdir().expect("tmp").path(),
        Default::default(),
        &[
            allow(Group, "g", Literal, Read),
            allow(Group, "g", Literal, AlterConfigs),
        ],
    );
    assert_eq!(
        a.authorized_operations(&alice(), "h", Group, "g"),
        bits(&[Read, Describe, DescribeConfigs, AlterConfigs])
    );
    assert_eq!(a.authorized_operations(&alice(), "h", Group, "other"), 0);
}
