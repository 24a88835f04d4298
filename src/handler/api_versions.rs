//! ApiVersions: answered from the versions table (KIP-511 fallback is in the connection,
//! since a version Strata does not know cannot be decoded).
//!
//! No state, no files: see `handler`.

use super::str_bytes;
use super::Ctx;
use crate::protocol::versions::SUPPORTED;
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

/// Features clients look for (v3+): `transaction.version` 2 is KIP-890's transaction
/// protocol, `group.version` 1 the consumer group protocol of KIP-848.
pub fn handle(ctx: &Ctx<'_>, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    let tv = ctx.broker.txns.settings.transaction_version;
    let features = [("group.version", 1, 1), ("transaction.version", 2, tv)];
    let mut r = response();
    if ctx.version >= 3 {
        r = r
            .with_supported_features(
                features
                    .iter()
                    .map(|(name, max, _)| {
                        SupportedFeatureKey::default()
                            .with_name(str_bytes(name))
                            .with_min_version(0)
                            .with_max_version(*max)
                    })
                    .collect(),
            )
            .with_finalized_features_epoch(1)
            .with_finalized_features(
                features
                    .iter()
                    .filter(|(_, _, level)| *level > 0)
                    .map(|(name, _, level)| {
                        FinalizedFeatureKey::default()
                            .with_name(str_bytes(name))
                            .with_max_version_level(*level)
                            .with_min_version_level(*level)
                    })
                    .collect(),
            );
    }
    r
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
