//! ApiVersions: answered from the versions table (KIP-511 fallback is in the connection,
//! since a version Strata does not know cannot be decoded).

use super::Ctx;
use crate::protocol::versions::SUPPORTED;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

pub fn handle(_ctx: &Ctx<'_>, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    response()
}

pub fn response() -> ApiVersionsResponse {
    // No tagged field that holds its default value is written (librdkafka < 2.2 misreads them).
    ApiVersionsResponse::default()
        .with_finalized_features_epoch(-1)
        .with_api_keys(
            SUPPORTED
                .iter()
                .map(|&(key, min, max)| {
                    ApiVersion::default()
                        .with_api_key(key as i16)
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect(),
        )
}
