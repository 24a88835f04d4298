//! SaslHandshake and SaslAuthenticate outside a SASL exchange: on a listener without SASL,
//! or after authentication on a client that cannot re-authenticate. Kafka answers
//! ILLEGAL_SASL_STATE there; the exchange itself is the connection's (`security::sasl`).
//!
//! No state, no files: see `handler`.

use super::{str_bytes, Ctx};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};

pub fn handshake(ctx: &Ctx<'_>) -> SaslHandshakeResponse {
    let mechanisms = if ctx.session.listener.protocol.uses_sasl() {
        ctx.broker
            .sasl
            .listener(&ctx.session.listener.name)
            .map(|l| l.enabled().iter().map(|m| str_bytes(m)).collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    SaslHandshakeResponse::default()
        .with_error_code(ResponseError::IllegalSaslState.code())
        .with_mechanisms(mechanisms)
}

pub fn authenticate() -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(ResponseError::IllegalSaslState.code())
        .with_error_message(Some(str_bytes(
            "SaslAuthenticate request received after successful authentication",
        )))
}
