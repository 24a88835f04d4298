//! The ACL APIs (DescribeAcls, CreateAcls, DeleteAcls) and the SCRAM credential APIs,
//! answered as Kafka answers them without an authorizer: SECURITY_DISABLED, so that admin
//! tools report "security is not enabled" instead of failing on an unknown API.
//!
//! No state, no files: see `handler`.

use super::str_bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::*;
use std::collections::BTreeSet;

/// Kafka's message when no authorizer is configured.
const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

fn disabled() -> (i16, Option<kafka_protocol::protocol::StrBytes>) {
    (
        ResponseError::SecurityDisabled.code(),
        Some(str_bytes(NO_AUTHORIZER)),
    )
}

pub fn describe_acls(_req: DescribeAclsRequest) -> DescribeAclsResponse {
    let (code, message) = disabled();
    DescribeAclsResponse::default()
        .with_error_code(code)
        .with_error_message(message)
}

pub fn create_acls(req: CreateAclsRequest) -> CreateAclsResponse {
    let (code, message) = disabled();
    let results = req
        .creations
        .iter()
        .map(|_| {
            AclCreationResult::default()
                .with_error_code(code)
                .with_error_message(message.clone())
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

pub fn delete_acls(req: DeleteAclsRequest) -> DeleteAclsResponse {
    let (code, message) = disabled();
    let results = req
        .filters
        .iter()
        .map(|_| {
            DeleteAclsFilterResult::default()
                .with_error_code(code)
                .with_error_message(message.clone())
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

/// SCRAM credentials are not stored until SASL exists: the whole request is refused.
pub fn describe_user_scram_credentials(
    _req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    DescribeUserScramCredentialsResponse::default()
        .with_error_code(ResponseError::SecurityDisabled.code())
        .with_error_message(Some(str_bytes("SASL/SCRAM is not enabled on this broker")))
}

/// Each user named in a deletion or an upsertion is answered once.
pub fn alter_user_scram_credentials(
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
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
                .with_error_code(ResponseError::SecurityDisabled.code())
                .with_error_message(Some(str_bytes("SASL/SCRAM is not enabled on this broker")))
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}
