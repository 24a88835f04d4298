//! DescribeUserScramCredentials and AlterUserScramCredentials with Kafka's rules and
//! messages (`ScramImage.describe`, `ScramControlManager.alterCredentials`): one result per
//! user, a user named twice is a DUPLICATE_RESOURCE, iterations between 4096 and 16384.
//!
//! No files: the credentials are stored by `security::sasl::credentials`.

use super::{str_bytes, Ctx};
use crate::security::sasl::credentials::{Change, ScramCredential};
use crate::security::sasl::scram::{ScramHash, MAX_ITERATIONS};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::*;
use std::collections::{BTreeMap, HashMap};

const ALTERED_TWICE: &str = "A user credential cannot be altered twice in the same request";

pub fn describe(
    ctx: &Ctx<'_>,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let all = ctx.broker.sasl.scram.describe();
    // user → named more than once
    let mut asked: BTreeMap<String, bool> = BTreeMap::new();
    match req.users.as_deref() {
        None | Some([]) => {
            for user in all.keys() {
                asked.insert(user.clone(), false);
            }
        }
        Some(users) => {
            for u in users {
                let twice = asked.contains_key(u.name.as_str());
                asked.insert(u.name.to_string(), twice);
            }
        }
    }
    let results = asked
        .into_iter()
        .map(|(user, twice)| {
            let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(&user));
            if twice {
                return result
                    .with_error_code(ResponseError::DuplicateResource.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
                    ))));
            }
            match all.get(&user) {
                Some(mechs) if !mechs.is_empty() => result.with_credential_infos(
                    mechs
                        .iter()
                        .filter_map(|(m, iterations)| {
                            let hash = ScramHash::for_mechanism(m)?;
                            Some(
                                CredentialInfo::default()
                                    .with_mechanism(hash.type_byte())
                                    .with_iterations(*iterations),
                            )
                        })
                        .collect(),
                ),
                _ => result
                    .with_error_code(ResponseError::ResourceNotFound.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "Attempt to describe a user credential that does not exist: {user}"
                    )))),
            }
        })
        .collect();
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

type Refusal = (ResponseError, String);

fn check_name_and_mechanism(name: &str, mechanism: i8) -> Result<ScramHash, Refusal> {
    if name.is_empty() {
        return Err((
            ResponseError::UnacceptableCredential,
            "Username must not be empty".into(),
        ));
    }
    ScramHash::from_type(mechanism).ok_or((
        ResponseError::UnsupportedSaslMechanism,
        "Unknown SCRAM mechanism".into(),
    ))
}

pub fn alter(
    ctx: &Ctx<'_>,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let store = &ctx.broker.sasl.scram;
    let mut deletions: HashMap<String, ScramHash> = HashMap::new();
    let mut upserts: HashMap<String, (ScramHash, ScramCredential)> = HashMap::new();
    let mut errors: BTreeMap<String, Refusal> = BTreeMap::new();
    // Users in the order they were first accepted, for a stable answer.
    let mut order: Vec<String> = Vec::new();
    for d in &req.deletions {
        let name = d.name.to_string();
        if errors.contains_key(&name) {
            continue;
        }
        if deletions.remove(&name).is_some() {
            errors.insert(
                name,
                (ResponseError::DuplicateResource, ALTERED_TWICE.into()),
            );
            continue;
        }
        let checked = check_name_and_mechanism(&name, d.mechanism).and_then(|hash| {
            match store.get(&name, hash.mechanism()) {
                Some(_) => Ok(hash),
                None => Err((
                    ResponseError::ResourceNotFound,
                    "Attempt to delete a user credential that does not exist".into(),
                )),
            }
        });
        match checked {
            Ok(hash) => {
                order.push(name.clone());
                deletions.insert(name, hash);
            }
            Err(e) => {
                errors.insert(name, e);
            }
        }
    }
    for u in &req.upsertions {
        let name = u.name.to_string();
        if errors.contains_key(&name) {
            continue;
        }
        if deletions.remove(&name).is_some() || upserts.remove(&name).is_some() {
            errors.insert(
                name,
                (ResponseError::DuplicateResource, ALTERED_TWICE.into()),
            );
            continue;
        }
        let checked = check_name_and_mechanism(&name, u.mechanism).and_then(|hash| {
            if u.iterations < hash.min_iterations() {
                Err((
                    ResponseError::UnacceptableCredential,
                    "Too few iterations".into(),
                ))
            } else if u.iterations > MAX_ITERATIONS {
                Err((
                    ResponseError::UnacceptableCredential,
                    "Too many iterations".into(),
                ))
            } else {
                Ok(hash)
            }
        });
        match checked {
            Ok(hash) => {
                let credential = ScramCredential::from_salted_password(
                    hash,
                    &u.salt,
                    &u.salted_password,
                    u.iterations,
                );
                order.push(name.clone());
                upserts.insert(name, (hash, credential));
            }
            Err(e) => {
                errors.insert(name, e);
            }
        }
    }
    let mut changes = Vec::new();
    let mut accepted = Vec::new();
    for name in order {
        if let Some(hash) = deletions.remove(&name) {
            changes.push(Change::Delete {
                user: name.clone(),
                mechanism: hash.mechanism().into(),
            });
            accepted.push(name);
        } else if let Some((hash, credential)) = upserts.remove(&name) {
            changes.push(Change::Upsert {
                user: name.clone(),
                mechanism: hash.mechanism().into(),
                credential,
            });
            accepted.push(name);
        }
    }
    let stored = if changes.is_empty() {
        Ok(())
    } else {
        store.apply(&changes)
    };
    let mut results = Vec::new();
    match stored {
        Ok(()) => {
            for change in &changes {
                match change {
                    Change::Upsert {
                        user, mechanism, ..
                    } => {
                        tracing::info!(%user, %mechanism, "SCRAM credential stored")
                    }
                    Change::Delete { user, mechanism } => {
                        tracing::info!(%user, %mechanism, "SCRAM credential deleted")
                    }
                }
            }
            for name in accepted {
                results
                    .push(AlterUserScramCredentialsResult::default().with_user(str_bytes(&name)));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "could not store SCRAM credentials");
            for name in accepted {
                results.push(
                    AlterUserScramCredentialsResult::default()
                        .with_user(str_bytes(&name))
                        .with_error_code(ResponseError::UnknownServerError.code())
                        .with_error_message(Some(str_bytes(&format!(
                            "could not store SCRAM credentials: {e}"
                        )))),
                );
            }
        }
    }
    for (name, (code, message)) in errors {
        results.push(
            AlterUserScramCredentialsResult::default()
                .with_user(str_bytes(&name))
                .with_error_code(code.code())
                .with_error_message(Some(str_bytes(&message))),
        );
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}
