//! SASL mechanisms on the broker's side. Each mechanism is a small state machine fed the
//! client's tokens one at a time (from SaslAuthenticate, or from the raw frames of Kafka's
//! pre-KIP-43 unframed exchange) and answering with the next server token.
//!
//! No files of its own.

pub mod oauthbearer;

use super::Principal;

/// What one client token leads to.
#[derive(Debug)]
pub enum Step {
    /// Send this token and wait for the client's next one.
    Continue(Vec<u8>),
    /// Authenticated: send this (possibly empty) final token.
    Done {
        token: Vec<u8>,
        principal: Principal,
        /// When the credential itself expires (an OAUTHBEARER token's `exp`), in ms since
        /// the epoch; caps the session lifetime of KIP-368 re-authentication.
        expires_at_ms: Option<i64>,
    },
    /// Refused: the message goes to the client (SASL_AUTHENTICATION_FAILED); it must never
    /// contain the secret.
    Failed(String),
}

/// One authentication exchange of one mechanism.
pub trait Mechanism: Send {
    fn step(&mut self, client_token: &[u8]) -> Step;
}
