//! The ACL APIs (DescribeAcls, CreateAcls, DeleteAcls), and the cluster checks of the SCRAM
//! credential APIs (see `scram_credentials`). Without an authorizer the ACL APIs answer as
//! Kafka does, SECURITY_DISABLED, so that admin tools report "security is not enabled";
//! with one, they read and change its bindings after checking DESCRIBE (describe) or ALTER
//! (create, delete) on the cluster.
//!
//! No state, no files: see `handler` and `security::authorizer`.

use super::{str_bytes, Ctx, Operation};
use crate::security::authorizer::{
    AclBinding, AclFilter, Authorizer, PatternType, Permission, ResourceType,
};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, BTreeSet};

/// Kafka's message when no authorizer is configured.
const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

fn disabled() -> (i16, Option<StrBytes>) {
    (
        ResponseError::SecurityDisabled.code(),
        Some(str_bytes(NO_AUTHORIZER)),
    )
}

/// The authorizer, or the error every entry of the answer carries: SECURITY_DISABLED
/// without one, CLUSTER_AUTHORIZATION_FAILED without `op` on the cluster.
fn authorizer<'a>(ctx: &Ctx<'a>, op: Operation) -> Result<&'a Authorizer, (i16, Option<StrBytes>)> {
    let Some(a) = ctx.broker.authorizer.as_ref() else {
        return Err(disabled());
    };
    if !ctx.authorize_cluster(op) {
        return Err(cluster_denied());
    }
    Ok(a)
}

fn cluster_denied() -> (i16, Option<StrBytes>) {
    (
        ResponseError::ClusterAuthorizationFailed.code(),
        Some(str_bytes("Cluster authorization failed.")),
    )
}

fn opt_str(s: &Option<StrBytes>) -> Option<&str> {
    s.as_ref().map(|s| s.as_str())
}

#[tracing::instrument(name = "describe_acls", skip_all)]
pub fn describe_acls(ctx: &Ctx<'_>, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let a = match authorizer(ctx, Operation::Describe) {
        Ok(a) => a,
        Err((code, message)) => {
            return DescribeAclsResponse::default()
                .with_error_code(code)
                .with_error_message(message)
        }
    };
    let filter = match AclFilter::from_wire(
        req.resource_type_filter,
        opt_str(&req.resource_name_filter),
        req.pattern_type_filter,
        opt_str(&req.principal_filter),
        opt_str(&req.host_filter),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(e) => {
            return DescribeAclsResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(str_bytes(&e)))
        }
    };
    // One entry per resource pattern, as Kafka groups them.
    let mut by_resource: BTreeMap<(ResourceType, String, PatternType), Vec<AclDescription>> =
        BTreeMap::new();
    for acl in a.describe(&filter) {
        by_resource
            .entry((
                acl.resource_type,
                acl.resource_name.clone(),
                acl.pattern_type,
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(&acl.principal))
                    .with_host(str_bytes(&acl.host))
                    .with_operation(acl.operation.code())
                    .with_permission_type(acl.permission.code()),
            );
    }
    let resources = by_resource
        .into_iter()
        .map(|((rt, name, pt), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(rt.code())
                .with_resource_name(str_bytes(&name))
                .with_pattern_type(pt.code())
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

#[tracing::instrument(name = "create_acls", skip_all, fields(n = req.creations.len()))]
pub fn create_acls(ctx: &Ctx<'_>, req: CreateAclsRequest) -> CreateAclsResponse {
    let a = match authorizer(ctx, Operation::Alter) {
        Ok(a) => a,
        Err((code, message)) => {
            let results = req
                .creations
                .iter()
                .map(|_| {
                    AclCreationResult::default()
                        .with_error_code(code)
                        .with_error_message(message.clone())
                })
                .collect();
            return CreateAclsResponse::default().with_results(results);
        }
    };
    let checked: Vec<Result<AclBinding, String>> = req
        .creations
        .iter()
        .map(|c| {
            let acl = AclBinding {
                resource_type: ResourceType::from_code(c.resource_type),
                resource_name: c.resource_name.to_string(),
                pattern_type: PatternType::from_code(c.resource_pattern_type),
                principal: c.principal.to_string(),
                host: c.host.to_string(),
                operation: Operation::from_code(c.operation),
                permission: Permission::from_code(c.permission_type),
            };
            acl.validate().map(|()| acl)
        })
        .collect();
    let valid: Vec<AclBinding> = checked
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .cloned()
        .collect();
    let stored = if valid.is_empty() {
        Ok(())
    } else {
        a.create(&valid)
    };
    if let Err(e) = &stored {
        tracing::error!(error = %e, "ACLs not stored");
    }
    let results = checked
        .into_iter()
        .map(|r| match (r, &stored) {
            (Err(msg), _) => AclCreationResult::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(str_bytes(&msg))),
            (Ok(_), Ok(())) => AclCreationResult::default(),
            (Ok(_), Err(e)) => AclCreationResult::default()
                .with_error_code(ResponseError::UnknownServerError.code())
                .with_error_message(Some(str_bytes(&format!("storing ACLs failed: {e}")))),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

#[tracing::instrument(name = "delete_acls", skip_all, fields(n = req.filters.len()))]
pub fn delete_acls(ctx: &Ctx<'_>, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let failed = |code: i16, message: Option<StrBytes>| {
        DeleteAclsFilterResult::default()
            .with_error_code(code)
            .with_error_message(message)
    };
    let a = match authorizer(ctx, Operation::Alter) {
        Ok(a) => a,
        Err((code, message)) => {
            let results = req
                .filters
                .iter()
                .map(|_| failed(code, message.clone()))
                .collect();
            return DeleteAclsResponse::default().with_filter_results(results);
        }
    };
    let parsed: Vec<Result<AclFilter, String>> = req
        .filters
        .iter()
        .map(|f| {
            AclFilter::from_wire(
                f.resource_type_filter,
                opt_str(&f.resource_name_filter),
                f.pattern_type_filter,
                opt_str(&f.principal_filter),
                opt_str(&f.host_filter),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclFilter> = parsed
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .cloned()
        .collect();
    let deleted = a.delete(&valid);
    let mut deleted_iter = match &deleted {
        Ok(per_filter) => per_filter.clone().into_iter(),
        Err(e) => {
            tracing::error!(error = %e, "ACL deletion not stored");
            Vec::new().into_iter()
        }
    };
    let results = parsed
        .into_iter()
        .map(|r| match r {
            Err(msg) => failed(ResponseError::InvalidRequest.code(), Some(str_bytes(&msg))),
            Ok(_) => match deleted_iter.next() {
                Some(acls) => DeleteAclsFilterResult::default().with_matching_acls(
                    acls.iter()
                        .map(|acl| {
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(acl.resource_type.code())
                                .with_resource_name(str_bytes(&acl.resource_name))
                                .with_pattern_type(acl.pattern_type.code())
                                .with_principal(str_bytes(&acl.principal))
                                .with_host(str_bytes(&acl.host))
                                .with_operation(acl.operation.code())
                                .with_permission_type(acl.permission.code())
                        })
                        .collect(),
                ),
                None => failed(
                    ResponseError::UnknownServerError.code(),
                    Some(str_bytes("storing ACLs failed")),
                ),
            },
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

/// DescribeUserScramCredentials needs DESCRIBE on the cluster: the refusal, if any.
pub(super) fn refuse_scram_describe(ctx: &Ctx<'_>) -> Option<DescribeUserScramCredentialsResponse> {
    if ctx.authorize_cluster(Operation::Describe) {
        return None;
    }
    let (code, message) = cluster_denied();
    Some(
        DescribeUserScramCredentialsResponse::default()
            .with_error_code(code)
            .with_error_message(message),
    )
}

/// AlterUserScramCredentials needs ALTER on the cluster: the refusal, each user named once.
pub(super) fn refuse_scram_alter(
    ctx: &Ctx<'_>,
    req: &AlterUserScramCredentialsRequest,
) -> Option<AlterUserScramCredentialsResponse> {
    if ctx.authorize_cluster(Operation::Alter) {
        return None;
    }
    let (code, message) = cluster_denied();
    let users: BTreeSet<String> = req
        .deletions
        .iter()
        .map(|d| d.name.to_string())
        .chain(req.upsertions.iter().map(|u| u.name.to_string()))
        .collect();
    let results = users
        .into_iter()
        .map(|user| {
            AlterUserScramCredentialsResult::default()
                .with_user(str_bytes(&user))
                .with_error_code(code)
                .with_error_message(message.clone())
        })
        .collect();
    Some(AlterUserScramCredentialsResponse::default().with_results(results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::authorizer::STANDARD_AUTHORIZER;
    use crate::security::Session;
    use kafka_protocol::messages::create_acls_request::AclCreation;
    use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;

    fn broker_with_authorizer(extra: &[&str]) -> (tempfile::TempDir, crate::broker::Broker) {
        let dir = tempfile::tempdir().expect("tmp");
        let mut properties = vec![format!("authorizer.class.name={STANDARD_AUTHORIZER}")];
        properties.extend(extra.iter().map(|s| s.to_string()));
        let overrides = crate::config::Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            properties,
            ..Default::default()
        };
        let config = crate::config::Config::load(None, overrides).expect("config");
        (dir, crate::broker::Broker::open(config).expect("broker"))
    }

    fn creation(rt: i8, name: &str, pt: i8, principal: &str, op: i8) -> AclCreation {
        AclCreation::default()
            .with_resource_type(rt)
            .with_resource_name(str_bytes(name))
            .with_resource_pattern_type(pt)
            .with_principal(str_bytes(principal))
            .with_host(str_bytes("*"))
            .with_operation(op)
            .with_permission_type(3)
    }

    #[test]
    fn acl_apis_validate_creations_and_need_the_cluster() {
        let (_dir, broker) = broker_with_authorizer(&["super.users=User:ANONYMOUS"]);
        let session = Session::local("localhost", 9092);
        let ctx = Ctx {
            broker: &broker,
            version: 3,
            client_id: "t",
            session: &session,
        };
        let req = CreateAclsRequest::default().with_creations(vec![
            creation(2, "orders", 3, "User:alice", 3),
            creation(2, "orders", 2, "User:alice", 3), // MATCH
            creation(2, "orders", 3, "alice", 3),      // no principal type
            creation(2, "orders", 3, "User:alice", 1), // ANY operation
            creation(4, "other", 3, "User:alice", 7),  // not kafka-cluster
            creation(1, "orders", 3, "User:alice", 3), // ANY resource type
        ]);
        let codes: Vec<i16> = create_acls(&ctx, req)
            .results
            .iter()
            .map(|r| r.error_code)
            .collect();
        let invalid = ResponseError::InvalidRequest.code();
        assert_eq!(codes, vec![0, invalid, invalid, invalid, invalid, invalid]);

        let all = DescribeAclsRequest::default()
            .with_resource_name_filter(None)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_resource_type_filter(1)
            .with_pattern_type_filter(1)
            .with_operation(1)
            .with_permission_type(1);
        let described = describe_acls(&ctx, all.clone());
        assert_eq!(described.error_code, 0);
        assert_eq!(described.resources.len(), 1);
        assert_eq!(described.resources[0].acls.len(), 1);

        let unknown = DeleteAclsFilter::default()
            .with_resource_name_filter(None)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_resource_type_filter(0)
            .with_pattern_type_filter(1)
            .with_operation(1)
            .with_permission_type(1);
        let any = unknown.clone().with_resource_type_filter(1);
        let deleted = delete_acls(
            &ctx,
            DeleteAclsRequest::default().with_filters(vec![unknown, any]),
        );
        assert_eq!(deleted.filter_results[0].error_code, invalid);
        assert_eq!(deleted.filter_results[1].matching_acls.len(), 1);

        // Not a super user, and no ACL on the cluster: refused.
        let mut stranger = Session::local("localhost", 9092);
        stranger.principal = crate::security::Principal::user("bob");
        let ctx = Ctx {
            session: &stranger,
            ..ctx
        };
        assert_eq!(
            describe_acls(&ctx, all).error_code,
            ResponseError::ClusterAuthorizationFailed.code()
        );
    }

    #[test]
    fn an_unknown_authorizer_class_stops_the_broker_from_starting() {
        let dir = tempfile::tempdir().expect("tmp");
        let overrides = crate::config::Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            properties: vec!["authorizer.class.name=com.example.Custom".into()],
            ..Default::default()
        };
        let config = crate::config::Config::load(None, overrides).expect("config");
        let err = crate::broker::Broker::open(config)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("com.example.Custom"), "{err}");
    }
}
