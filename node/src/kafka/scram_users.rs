//! AlterUserScramCredentials and DescribeUserScramCredentials (KIP-554): SCRAM users in
//! the metadata log. The client salts and hashes the password; the broker keeps the
//! stored and server keys derived from that, never the password.

use std::collections::{BTreeMap, BTreeSet};

use fjord_controller::metadata::{ScramCredential, ScramUpsert};
use fjord_controller::ControllerRequest;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use super::authz;
use super::context::RequestContext;
use super::errors::KafkaError;
use crate::security::scram::{self, Credential, Mechanism};

fn fail(code: ResponseError, msg: impl Into<String>) -> KafkaError {
    KafkaError::new(code, msg)
}

pub fn describe(ctx: &RequestContext, req: DescribeUserScramCredentialsRequest) -> ResponseKind {
    let response = DescribeUserScramCredentialsResponse::default().with_error_message(None);
    if let Err(e) = authz::cluster(ctx, authz::Op::Describe) {
        return ResponseKind::DescribeUserScramCredentials(
            response
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(e.message))),
        );
    }
    let md = ctx.broker.metadata();
    let info = |creds: &BTreeMap<String, ScramCredential>| -> Vec<CredentialInfo> {
        creds
            .iter()
            .filter_map(|(name, c)| {
                Mechanism::from_name(name).map(|m| {
                    CredentialInfo::default()
                        .with_mechanism(m.code())
                        .with_iterations(c.iterations)
                })
            })
            .collect()
    };
    // Null or empty: every user.
    let results = match req.users.filter(|u| !u.is_empty()) {
        None => md
            .scram_credentials
            .iter()
            .map(|(user, creds)| {
                DescribeUserScramCredentialsResult::default()
                    .with_error_message(None)
                    .with_user(StrBytes::from_string(user.clone()))
                    .with_credential_infos(info(creds))
            })
            .collect(),
        Some(users) => {
            let mut seen = BTreeSet::new();
            let duplicated: BTreeSet<String> = users
                .iter()
                .filter(|u| !seen.insert(u.name.to_string()))
                .map(|u| u.name.to_string())
                .collect();
            let mut done = BTreeSet::new();
            users
                .iter()
                .filter(|u| done.insert(u.name.to_string()))
                .map(|u| {
                    let r = DescribeUserScramCredentialsResult::default()
                        .with_error_message(None)
                        .with_user(u.name.clone());
                    if duplicated.contains(u.name.as_str()) {
                        return r
                            .with_error_code(ResponseError::DuplicateResource.code())
                            .with_error_message(Some(StrBytes::from_static_str(
                                "the user is named more than once",
                            )));
                    }
                    match md.scram_credentials.get(u.name.as_str()) {
                        Some(creds) => r.with_credential_infos(info(creds)),
                        None => r
                            .with_error_code(ResponseError::ResourceNotFound.code())
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "attempt to describe a user credential that does not exist: {}",
                                u.name
                            )))),
                    }
                })
                .collect()
        }
    };
    ResponseKind::DescribeUserScramCredentials(response.with_results(results))
}

/// One user's operations, checked as Kafka checks them: all of a user's changes apply, or
/// none.
struct UserOps {
    upserts: Vec<ScramUpsert>,
    deletions: Vec<(String, String)>,
    error: Option<KafkaError>,
}

pub async fn alter(ctx: &RequestContext, req: AlterUserScramCredentialsRequest) -> ResponseKind {
    let authorized = authz::cluster(ctx, authz::Op::Alter);
    let md = ctx.broker.metadata();
    let mut users: BTreeMap<String, UserOps> = BTreeMap::new();
    let mut order = Vec::new();
    for name in req
        .deletions
        .iter()
        .map(|d| &d.name)
        .chain(req.upsertions.iter().map(|u| &u.name))
    {
        if !users.contains_key(name.as_str()) {
            order.push(name.to_string());
            users.insert(
                name.to_string(),
                UserOps {
                    upserts: Vec::new(),
                    deletions: Vec::new(),
                    error: authorized.clone().err(),
                },
            );
        }
    }
    let mut touched: BTreeMap<(String, i8), usize> = BTreeMap::new();
    for d in &req.deletions {
        *touched
            .entry((d.name.to_string(), d.mechanism))
            .or_default() += 1;
    }
    for u in &req.upsertions {
        *touched
            .entry((u.name.to_string(), u.mechanism))
            .or_default() += 1;
    }
    for d in &req.deletions {
        let name = d.name.to_string();
        let Some(ops) = users.get_mut(&name) else {
            continue;
        };
        if ops.error.is_some() {
            continue;
        }
        ops.error = check_common(&name, d.mechanism, &touched)
            .err()
            .or_else(|| {
                let mechanism = Mechanism::from_code(d.mechanism)?;
                let exists = md
                    .scram_credentials
                    .get(&name)
                    .is_some_and(|c| c.contains_key(mechanism.name()));
                if exists {
                    ops.deletions
                        .push((name.clone(), mechanism.name().to_string()));
                    None
                } else {
                    Some(fail(
                        ResponseError::ResourceNotFound,
                        format!("attempt to delete a user credential that does not exist: {name}"),
                    ))
                }
            });
    }
    for u in &req.upsertions {
        let name = u.name.to_string();
        let Some(ops) = users.get_mut(&name) else {
            continue;
        };
        if ops.error.is_some() {
            continue;
        }
        let checked = check_common(&name, u.mechanism, &touched).and_then(|()| {
            if u.iterations < scram::MIN_ITERATIONS {
                return Err(fail(
                    ResponseError::UnacceptableCredential,
                    format!(
                        "too few iterations: {} (at least {})",
                        u.iterations,
                        scram::MIN_ITERATIONS
                    ),
                ));
            }
            if u.iterations > scram::MAX_ITERATIONS {
                return Err(fail(
                    ResponseError::UnacceptableCredential,
                    format!(
                        "too many iterations: {} (at most {})",
                        u.iterations,
                        scram::MAX_ITERATIONS
                    ),
                ));
            }
            if u.salt.is_empty() || u.salted_password.is_empty() {
                return Err(fail(
                    ResponseError::UnacceptableCredential,
                    "the salt and the salted password may not be empty",
                ));
            }
            Ok(())
        });
        match (checked, Mechanism::from_code(u.mechanism)) {
            (Ok(()), Some(m)) => {
                let c =
                    Credential::from_salted(m, u.salt.to_vec(), &u.salted_password, u.iterations);
                ops.upserts.push(ScramUpsert {
                    user: name.clone(),
                    mechanism: m.name().to_string(),
                    credential: ScramCredential {
                        salt: c.salt,
                        stored_key: c.stored_key,
                        server_key: c.server_key,
                        iterations: c.iterations,
                    },
                });
            }
            (Err(e), _) => ops.error = Some(e),
            (Ok(()), None) => {}
        }
    }
    let (mut upserts, mut deletions) = (Vec::new(), Vec::new());
    for ops in users.values_mut().filter(|o| o.error.is_none()) {
        upserts.append(&mut ops.upserts);
        deletions.append(&mut ops.deletions);
    }
    if !upserts.is_empty() || !deletions.is_empty() {
        let outcome = ctx
            .broker
            .submit_everywhere(ControllerRequest::AlterScramCredentials { upserts, deletions })
            .await;
        if let Err(e) = outcome {
            let e = KafkaError::from(&e);
            for ops in users.values_mut().filter(|o| o.error.is_none()) {
                ops.error = Some(e.clone());
            }
        }
    }
    let results = order
        .iter()
        .map(|name| {
            let mut r = AlterUserScramCredentialsResult::default()
                .with_error_message(None)
                .with_user(StrBytes::from_string(name.clone()));
            if let Some(e) = users.get(name).and_then(|o| o.error.clone()) {
                r.error_code = e.code();
                r.error_message = Some(StrBytes::from_string(e.message));
            }
            r
        })
        .collect();
    ResponseKind::AlterUserScramCredentials(
        AlterUserScramCredentialsResponse::default().with_results(results),
    )
}

/// The checks deletions and upsertions share: a name, a known mechanism, and one
/// operation per user and mechanism.
fn check_common(
    name: &str,
    mechanism: i8,
    touched: &BTreeMap<(String, i8), usize>,
) -> Result<(), KafkaError> {
    if name.is_empty() {
        return Err(fail(
            ResponseError::UnacceptableCredential,
            "the user name may not be empty",
        ));
    }
    if Mechanism::from_code(mechanism).is_none() {
        return Err(fail(
            ResponseError::UnsupportedSaslMechanism,
            format!("unknown SCRAM mechanism {mechanism}"),
        ));
    }
    if touched
        .get(&(name.to_string(), mechanism))
        .copied()
        .unwrap_or(0)
        > 1
    {
        return Err(fail(
            ResponseError::DuplicateResource,
            "a user's credential for one mechanism may be changed once per request",
        ));
    }
    Ok(())
}
