//! The ACL APIs (DescribeAcls, CreateAcls, DeleteAcls),
//! answered as Kafka answers them without an authorizer: SECURITY_DISABLED, so that admin
//! tools report "security is not enabled" instead of failing on an unknown API.
//!
//! No state, no files: see `handler`.

use super::str_bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::*;

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
