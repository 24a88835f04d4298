//! SCRAM-SHA-256 and SCRAM-SHA-512 on the server's side (RFC 5802, RFC 7677), as Kafka's
//! `ScramSaslServer`: no channel binding (`n,,` only), an optional authzid that must equal
//! the user name, Kafka's `tokenauth` extension refused (no delegation tokens here).
//!
//! No files (credentials: see `credentials`).

use super::credentials::{ScramCredential, ScramCredentials};
use super::{Mechanism, Step, SCRAM_SHA_256, SCRAM_SHA_512};
use crate::security::Principal;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Kafka's upper bound on iterations (`ScramControlManager.MAX_ITERATIONS`).
pub const MAX_ITERATIONS: i32 = 16384;

/// The hash of a SCRAM mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScramHash {
    Sha256,
    Sha512,
}

impl ScramHash {
    pub fn for_mechanism(name: &str) -> Option<Self> {
        match name {
            SCRAM_SHA_256 => Some(Self::Sha256),
            SCRAM_SHA_512 => Some(Self::Sha512),
            _ => None,
        }
    }
    /// Kafka's `ScramMechanism` type byte in the credential APIs.
    pub fn from_type(t: i8) -> Option<Self> {
        match t {
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha512),
            _ => None,
        }
    }
    pub fn type_byte(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }
    pub fn mechanism(self) -> &'static str {
        match self {
            Self::Sha256 => SCRAM_SHA_256,
            Self::Sha512 => SCRAM_SHA_512,
        }
    }
    /// Kafka's minimum iteration count for both mechanisms.
    pub fn min_iterations(self) -> i32 {
        4096
    }
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so `new_from_slice` cannot fail here.
        match self {
            Self::Sha256 => match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            },
            Self::Sha512 => match <Hmac<Sha512> as KeyInit>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            },
        }
    }
    /// `Hi(password, salt, i)`: PBKDF2 with this hash's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec()
            }
            Self::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec()
            }
        }
    }
}

/// RFC 5802 `saslname`: `=2C` and `=3D` stand for ',' and '='; any other '=' is invalid.
fn decode_saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix("2C") {
            out.push(',');
            rest = r;
        } else if let Some(r) = after.strip_prefix("3D") {
            out.push('=');
            rest = r;
        } else {
            return None;
        }
    }
    out.push_str(rest);
    Some(out)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

enum Phase {
    First,
    Final {
        user: String,
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
        credential: ScramCredential,
    },
    Over,
}

/// One SCRAM exchange: client-first → server-first, client-final → server-final.
pub struct ScramServer {
    hash: ScramHash,
    store: ScramCredentials,
    phase: Phase,
    user: Option<String>,
}

impl ScramServer {
    pub fn new(hash: ScramHash, store: ScramCredentials) -> Self {
        ScramServer {
            hash,
            store,
            phase: Phase::First,
            user: None,
        }
    }

    fn client_first(&mut self, token: &[u8]) -> Step {
        let Ok(text) = std::str::from_utf8(token) else {
            return Step::Rejected("client-first message is not UTF-8".into());
        };
        // gs2-header: "n," [ "a=" authzid ] ","
        let Some(rest) = text.strip_prefix("n,") else {
            return Step::Rejected(
                "client-first message asks for channel binding, which is not supported".into(),
            );
        };
        let Some((authzid, bare)) = rest.split_once(',') else {
            return Step::Rejected("invalid client-first message".into());
        };
        let authzid = match authzid {
            "" => None,
            a => match a.strip_prefix("a=").and_then(decode_saslname) {
                Some(a) => Some(a),
                None => return Step::Rejected("invalid authzid in client-first message".into()),
            },
        };
        let gs2_header = format!("n,{},", &rest[..rest.len() - bare.len() - 1]);
        let mut fields = bare.split(',').peekable();
        // A reserved `m=` extension is skipped, as Kafka's ClientFirstMessage pattern does.
        if fields.peek().is_some_and(|f| f.starts_with("m=")) {
            fields.next();
        }
        let user = match fields.next().and_then(|f| f.strip_prefix("n=")) {
            Some(u) => match decode_saslname(u) {
                Some(u) => u,
                None => return Step::Rejected("invalid user name in client-first message".into()),
            },
            None => return Step::Rejected("client-first message has no user name".into()),
        };
        self.user = Some(user.clone());
        let Some(client_nonce) = fields.next().and_then(|f| f.strip_prefix("r=")) else {
            return Step::Rejected("client-first message has no nonce".into());
        };
        if client_nonce.is_empty() {
            return Step::Rejected("client-first message has an empty nonce".into());
        }
        for ext in fields {
            let (k, v) = ext.split_once('=').unwrap_or((ext, ""));
            if k == "tokenauth" && v.eq_ignore_ascii_case("true") {
                return Step::Rejected(
                    "delegation token authentication (tokenauth) is not supported".into(),
                );
            }
        }
        if let Some(a) = &authzid {
            if *a != user {
                return Step::Failed(
                    "Authentication failed: Client requested an authorization id that is different from username"
                        .into(),
                );
            }
        }
        let Some(credential) = self.store.get(&user, self.hash.mechanism()) else {
            return Step::Rejected(format!(
                "no {} credential for this user",
                self.hash.mechanism()
            ));
        };
        let mut random = [0u8; 24];
        if getrandom::fill(&mut random).is_err() {
            return Step::Rejected("no randomness for the server nonce".into());
        }
        let nonce = format!("{client_nonce}{}", B64.encode(random));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        self.phase = Phase::Final {
            user,
            gs2_header,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
            credential,
        };
        Step::Continue(server_first.into_bytes())
    }

    fn client_final(&mut self, token: &[u8]) -> Step {
        let Phase::Final {
            user,
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
            credential,
        } = std::mem::replace(&mut self.phase, Phase::Over)
        else {
            return Step::Rejected("unexpected SCRAM message".into());
        };
        let Ok(text) = std::str::from_utf8(token) else {
            return Step::Rejected("client-final message is not UTF-8".into());
        };
        let Some((without_proof, proof)) = text.rsplit_once(",p=") else {
            return Step::Rejected("client-final message has no proof".into());
        };
        let mut fields = without_proof.split(',');
        let binding = fields.next().and_then(|f| f.strip_prefix("c="));
        if binding.and_then(|b| B64.decode(b).ok()).as_deref() != Some(gs2_header.as_bytes()) {
            return Step::Rejected("invalid channel binding in client-final message".into());
        }
        // Kafka checks only that the nonce ends with the server's: librdkafka sends its own
        // nonce again in front of the combined one.
        if !fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .is_some_and(|r| r.ends_with(nonce.as_str()))
        {
            return Step::Rejected("invalid nonce in client-final message".into());
        }
        let Ok(proof) = B64.decode(proof) else {
            return Step::Rejected("client proof is not base64".into());
        };
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = self
            .hash
            .hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Step::Rejected("invalid client proof".into());
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !constant_time_eq(&self.hash.digest(&client_key), &credential.stored_key) {
            return Step::Rejected("invalid client proof".into());
        }
        let server_signature = self
            .hash
            .hmac(&credential.server_key, auth_message.as_bytes());
        Step::Done {
            token: format!("v={}", B64.encode(server_signature)).into_bytes(),
            principal: Principal::user(user),
            expires_at_ms: None,
        }
    }
}

impl Mechanism for ScramServer {
    fn step(&mut self, token: &[u8]) -> Step {
        match self.phase {
            Phase::First => self.client_first(token),
            Phase::Final { .. } => self.client_final(token),
            Phase::Over => Step::Rejected("SCRAM exchange already over".into()),
        }
    }

    fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::super::credentials::Change;
    use super::*;

    /// The client's side of RFC 5802, enough to drive the server.
    fn client_final(
        hash: ScramHash,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, Vec<u8>) {
        let fields: Vec<&str> = server_first.split(',').collect();
        let nonce = &fields[0][2..];
        let salt = B64.decode(&fields[1][2..]).expect("salt");
        let iterations: u32 = fields[2][2..].parse().expect("i");
        let salted = hash.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        let stored_key = hash.digest(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = hash.hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let server_key = hash.hmac(&salted, b"Server Key");
        (
            format!("{without_proof},p={}", B64.encode(proof)),
            hash.hmac(&server_key, auth.as_bytes()),
        )
    }

    fn store_with(hash: ScramHash, user: &str, password: &str) -> ScramCredentials {
        let store = ScramCredentials::in_memory();
        store
            .apply(&[Change::Upsert {
                user: user.into(),
                mechanism: hash.mechanism().into(),
                credential: ScramCredential::from_password(hash, password, 4096).expect("cred"),
            }])
            .expect("apply");
        store
    }

    fn exchange(hash: ScramHash, first: &str, password: &str) -> Step {
        let mut server = ScramServer::new(hash, store_with(hash, "al,ice", "secret"));
        let server_first = match server.step(first.as_bytes()) {
            Step::Continue(t) => String::from_utf8(t).expect("utf8"),
            other => return other,
        };
        let bare = first.splitn(3, ',').nth(2).expect("bare");
        let (final_msg, _) = client_final(hash, password, bare, &server_first);
        server.step(final_msg.as_bytes())
    }

    #[test]
    fn both_mechanisms_authenticate_and_prove_the_server_knows_the_key() {
        for hash in [ScramHash::Sha256, ScramHash::Sha512] {
            let mut server = ScramServer::new(hash, store_with(hash, "al,ice", "secret"));
            let first = "n,,n=al=2Cice,r=clientnonce";
            let Step::Continue(sf) = server.step(first.as_bytes()) else {
                panic!("no server-first");
            };
            let sf = String::from_utf8(sf).expect("utf8");
            assert!(sf.starts_with("r=clientnonce"));
            let (fin, expected_sig) = client_final(hash, "secret", &first[3..], &sf);
            match server.step(fin.as_bytes()) {
                Step::Done {
                    token, principal, ..
                } => {
                    assert_eq!(principal.to_string(), "User:al,ice");
                    assert_eq!(
                        String::from_utf8(token).expect("utf8"),
                        format!("v={}", B64.encode(expected_sig))
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn wrong_passwords_unknown_users_binding_and_tokenauth_are_refused() {
        let h = ScramHash::Sha512;
        assert!(matches!(
            exchange(h, "n,,n=al=2Cice,r=abc", "wrong"),
            Step::Rejected(_)
        ));
        assert!(matches!(
            exchange(h, "n,,n=bob,r=abc", "secret"),
            Step::Rejected(_)
        ));
        assert!(matches!(
            exchange(h, "p=tls-unique,,n=al=2Cice,r=abc", "secret"),
            Step::Rejected(_)
        ));
        assert!(matches!(
            exchange(h, "n,,n=al=2Cice,r=abc,tokenauth=true", "secret"),
            Step::Rejected(_)
        ));
        assert!(matches!(
            exchange(h, "n,a=bob,n=al=2Cice,r=abc", "secret"),
            Step::Failed(_)
        ));
        assert!(matches!(
            exchange(h, "n,,n=al=2Cice,r=abc", "secret"),
            Step::Done { .. }
        ));
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(decode_saslname("a=x"), None);
    }
}
