//! SaslHandshake and SaslAuthenticate outside a SASL exchange: on a listener without SASL,
//! or after authentication from a client that cannot re-authenticate. Kafka's request
//! handler answers ILLEGAL_SASL_STATE there; the exchange itself is the connection's
//! (`security::sasl`).
//!
//! No state, no files: see `handler`.

use super::str_bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};

pub fn handshake() -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(ResponseError::IllegalSaslState.code())
}

pub fn authenticate() -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(ResponseError::IllegalSaslState.code())
        .with_error_message(Some(str_bytes(
            "SaslAuthenticate request received after successful authentication",
        )))
}
