//! `fjord user ...`: SCRAM users, like `kafka-configs.sh --entity-type users
//! --add-config 'SCRAM-SHA-256=[password=...]'`, through AlterUserScramCredentials and
//! DescribeUserScramCredentials. The password is salted and hashed here; the cluster
//! never sees it.

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::client::ConnectArgs;
use super::wire::Wire;
use super::CliError;
use crate::security::scram::{self, Mechanism};

#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user, or change its password (SCRAM-SHA-256 and SCRAM-SHA-512 by
    /// default). SASL/PLAIN logins are checked against the same credentials.
    Create {
        #[command(flatten)]
        connect: ConnectArgs,
        name: String,
        #[arg(long)]
        password: String,
        /// Only this mechanism (repeatable).
        #[arg(long = "mechanism", value_name = "SCRAM-SHA-256|SCRAM-SHA-512")]
        mechanisms: Vec<String>,
        #[arg(long, default_value_t = 4096)]
        iterations: i32,
    },
    /// Delete a user's credentials (every mechanism unless one is named).
    Delete {
        #[command(flatten)]
        connect: ConnectArgs,
        name: String,
        #[arg(long = "mechanism", value_name = "SCRAM-SHA-256|SCRAM-SHA-512")]
        mechanisms: Vec<String>,
    },
    /// List the users with SCRAM credentials and their mechanisms.
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

pub fn run(cmd: UserCommand) -> Result<(), CliError> {
    match cmd {
        UserCommand::Create {
            connect,
            name,
            password,
            mechanisms,
            iterations,
        } => create(&connect, &name, &password, &mechanisms, iterations),
        UserCommand::Delete {
            connect,
            name,
            mechanisms,
        } => delete(&connect, &name, &mechanisms),
        UserCommand::List { connect } => list(&connect),
    }
}

fn mechanisms(names: &[String]) -> Result<Vec<Mechanism>, CliError> {
    if names.is_empty() {
        return Ok(vec![Mechanism::Sha256, Mechanism::Sha512]);
    }
    names
        .iter()
        .map(|n| {
            Mechanism::from_name(&n.to_ascii_uppercase()).ok_or_else(|| {
                CliError::Usage(format!(
                    "unknown mechanism {n}: SCRAM-SHA-256 or SCRAM-SHA-512"
                ))
            })
        })
        .collect()
}

fn check_results(results: &[(StrBytes, i16, Option<StrBytes>)]) -> Result<(), CliError> {
    for (user, code, message) in results {
        if *code != 0 {
            let name = kafka_protocol::error::ResponseError::try_from_code(*code)
                .map_or_else(|| format!("error {code}"), |e| format!("{e:?}"));
            return Err(CliError::Kafka(format!(
                "user {user}: {name}{}",
                message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )));
        }
    }
    Ok(())
}

pub(super) fn create(
    connect: &ConnectArgs,
    name: &str,
    password: &str,
    names: &[String],
    iterations: i32,
) -> Result<(), CliError> {
    if !(scram::MIN_ITERATIONS..=scram::MAX_ITERATIONS).contains(&iterations) {
        return Err(CliError::Usage(format!(
            "--iterations must be between {} and {}",
            scram::MIN_ITERATIONS,
            scram::MAX_ITERATIONS
        )));
    }
    let upsertions = mechanisms(names)?
        .into_iter()
        .map(|m| {
            let salt: [u8; 32] = rand::random();
            let salted = m.salted_password(password.as_bytes(), &salt, iterations);
            ScramCredentialUpsertion::default()
                .with_name(StrBytes::from_string(name.to_string()))
                .with_mechanism(m.code())
                .with_iterations(iterations)
                .with_salt(Bytes::copy_from_slice(&salt))
                .with_salted_password(Bytes::from(salted))
        })
        .collect();
    alter(
        &mut Wire::connect(&connect.bootstrap_server, connect)?,
        AlterUserScramCredentialsRequest::default().with_upsertions(upsertions),
    )?;
    outln!("Set the SCRAM credentials of user {name}.");
    Ok(())
}

/// Sends one AlterUserScramCredentials and fails on the first user it refused.
fn alter(wire: &mut Wire, req: AlterUserScramCredentialsRequest) -> Result<(), CliError> {
    let resp = wire.call(0, &req)?;
    check_results(
        &resp
            .results
            .into_iter()
            .map(|r| (r.user, r.error_code, r.error_message))
            .collect::<Vec<_>>(),
    )
}

pub(super) fn delete(connect: &ConnectArgs, name: &str, names: &[String]) -> Result<(), CliError> {
    let mut wire = Wire::connect(&connect.bootstrap_server, connect)?;
    let wanted = if names.is_empty() {
        // Every mechanism the user has.
        let described = wire.call(
            0,
            &DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
                UserName::default().with_name(StrBytes::from_string(name.to_string())),
            ])),
        )?;
        let r = described
            .results
            .into_iter()
            .next()
            .ok_or_else(|| CliError::Kafka("no answer for the user".into()))?;
        check_results(&[(r.user.clone(), r.error_code, r.error_message.clone())])?;
        r.credential_infos
            .iter()
            .filter_map(|c| Mechanism::from_code(c.mechanism))
            .collect()
    } else {
        mechanisms(names)?
    };
    let deletions = wanted
        .into_iter()
        .map(|m| {
            ScramCredentialDeletion::default()
                .with_name(StrBytes::from_string(name.to_string()))
                .with_mechanism(m.code())
        })
        .collect();
    alter(
        &mut wire,
        AlterUserScramCredentialsRequest::default().with_deletions(deletions),
    )?;
    outln!("Deleted the SCRAM credentials of user {name}.");
    Ok(())
}

fn list(connect: &ConnectArgs) -> Result<(), CliError> {
    let resp = Wire::connect(&connect.bootstrap_server, connect)?
        .call(0, &DescribeUserScramCredentialsRequest::default())?;
    if resp.error_code != 0 {
        check_results(&[(StrBytes::default(), resp.error_code, resp.error_message)])?;
    }
    for r in resp.results {
        let mechs: Vec<String> = r
            .credential_infos
            .iter()
            .filter_map(|c| {
                Mechanism::from_code(c.mechanism)
                    .map(|m| format!("{} (iterations {})", m.name(), c.iterations))
            })
            .collect();
        outln!("{}\t{}", r.user, mechs.join(", "));
    }
    Ok(())
}

/// A user's SCRAM mechanisms and iterations, as kafka-configs.sh prints them; nothing
/// for a user without credentials.
pub(super) fn describe_credentials(connect: &ConnectArgs, name: &str) -> Result<(), CliError> {
    let resp = Wire::connect(&connect.bootstrap_server, connect)?.call(
        0,
        &DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
            UserName::default().with_name(StrBytes::from_string(name.to_string()))
        ])),
    )?;
    if resp.error_code != 0 {
        check_results(&[(StrBytes::default(), resp.error_code, resp.error_message)])?;
    }
    for r in resp.results {
        if r.error_code == kafka_protocol::error::ResponseError::ResourceNotFound.code() {
            continue;
        }
        check_results(&[(r.user.clone(), r.error_code, r.error_message.clone())])?;
        let mechs: Vec<String> = r
            .credential_infos
            .iter()
            .filter_map(|c| {
                Mechanism::from_code(c.mechanism)
                    .map(|m| format!("{}=iterations={}", m.name(), c.iterations))
            })
            .collect();
        outln!(
            "SCRAM credential configs for user-principal '{}' are {}",
            r.user,
            mechs.join(", ")
        );
    }
    Ok(())
}
