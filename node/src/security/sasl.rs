//! SASL authentication of Kafka clients (SaslHandshake v1 and SaslAuthenticate):
//! PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, against the SCRAM credentials of the
//! metadata log and the static users of the node's config. Pure: an exchange takes a
//! token and returns the next, and the connection keeps the state.

use std::collections::HashMap;

use fjord_controller::ClusterMetadata;

use super::scram::{self, Credential, Mechanism, ScramServer};

/// A SASL mechanism Fjord serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Scram(Mechanism),
}

impl SaslMechanism {
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => Some(SaslMechanism::Plain),
            other => Mechanism::from_name(other).map(SaslMechanism::Scram),
        }
    }
}

/// Users defined in the node's config (`sasl.users.file`, and `user_NAME="password"`
/// entries of a `sasl.jaas.config` as Kafka's PLAIN login module takes them), with
/// SCRAM credentials derived once when they are loaded.
#[derive(Debug, Default)]
pub struct StaticUsers {
    users: HashMap<String, StaticUser>,
}

#[derive(Debug)]
struct StaticUser {
    password: String,
    scram: HashMap<Mechanism, Credential>,
}

impl StaticUsers {
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let users = pairs
            .into_iter()
            .map(|(name, password)| {
                let scram = [Mechanism::Sha256, Mechanism::Sha512]
                    .into_iter()
                    .map(|m| {
                        let salt: [u8; 16] = rand::random();
                        (
                            m,
                            Credential::from_password(
                                m,
                                &password,
                                salt.to_vec(),
                                scram::MIN_ITERATIONS,
                            ),
                        )
                    })
                    .collect();
                (name, StaticUser { password, scram })
            })
            .collect();
        StaticUsers { users }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// `name:password` lines (blank lines and `#` comments ignored), as a users file holds
/// them.
pub fn parse_users_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, password) = line
            .split_once(':')
            .ok_or_else(|| format!("line {}: expected name:password", i + 1))?;
        if name.trim().is_empty() || password.is_empty() {
            return Err(format!("line {}: empty name or password", i + 1));
        }
        out.push((name.trim().to_string(), password.to_string()));
    }
    Ok(out)
}

/// The `user_NAME="password"` entries of a JAAS config line (Kafka's PlainLoginModule).
pub fn parse_jaas_users(jaas: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = jaas;
    while let Some(i) = rest.find("user_") {
        let after = &rest[i + 5..];
        let Some((name, tail)) = after.split_once('=') else {
            break;
        };
        let Some(quoted) = tail.trim_start().strip_prefix('"') else {
            rest = tail;
            continue;
        };
        let Some(end) = quoted.find('"') else { break };
        if !name.is_empty() && name.bytes().all(|b| !b.is_ascii_whitespace()) {
            out.push((name.to_string(), quoted[..end].to_string()));
        }
        rest = &quoted[end + 1..];
    }
    out
}

/// Where credentials are looked up: static users first, then the metadata log.
pub struct Credentials<'a> {
    pub statics: &'a StaticUsers,
    pub metadata: &'a ClusterMetadata,
}

impl Credentials<'_> {
    fn scram(&self, user: &str, m: Mechanism) -> Option<Credential> {
        if let Some(c) = self.statics.users.get(user).and_then(|u| u.scram.get(&m)) {
            return Some(c.clone());
        }
        let stored = self.metadata.scram_credentials.get(user)?.get(m.name())?;
        Some(Credential {
            salt: stored.salt.clone(),
            stored_key: stored.stored_key.clone(),
            server_key: stored.server_key.clone(),
            iterations: stored.iterations,
        })
    }

    /// SASL/PLAIN: the static password, or any SCRAM credential the password matches.
    fn check_password(&self, user: &str, password: &str) -> bool {
        if let Some(u) = self.statics.users.get(user) {
            let (a, b) = (u.password.as_bytes(), password.as_bytes());
            return a.len() == b.len()
                && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        }
        [Mechanism::Sha512, Mechanism::Sha256]
            .into_iter()
            .find_map(|m| self.scram(user, m).map(|c| (m, c)))
            .is_some_and(|(m, c)| c.matches(m, password))
    }
}

/// Why authentication failed: the client gets SASL_AUTHENTICATION_FAILED with this, and
/// the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("Authentication failed: invalid username or password")]
    InvalidCredentials,
    #[error("Authentication failed: {0}")]
    Malformed(String),
}

/// One exchange in progress.
#[derive(Debug)]
pub enum Exchange {
    /// The handshake chose this mechanism; the first token is next.
    Started(SaslMechanism),
    /// A SCRAM challenge was sent; the client-final message is next.
    Scram(Box<ScramServer>),
}

/// What to answer a token with.
#[derive(Debug)]
pub enum Step {
    /// Send this and wait for the next token.
    Challenge(Exchange, Vec<u8>),
    /// Authenticated as `user`; send `reply` (SCRAM's server-final, or nothing).
    Done { user: String, reply: Vec<u8> },
}

impl Exchange {
    pub fn step(self, token: &[u8], creds: &Credentials<'_>) -> Result<Step, SaslError> {
        match self {
            Exchange::Started(SaslMechanism::Plain) => {
                let (user, password) = parse_plain(token)?;
                if creds.check_password(&user, &password) {
                    Ok(Step::Done {
                        user,
                        reply: Vec::new(),
                    })
                } else {
                    Err(SaslError::InvalidCredentials)
                }
            }
            Exchange::Started(SaslMechanism::Scram(m)) => {
                let first = scram::parse_client_first(token)
                    .map_err(|e| SaslError::Malformed(e.to_string()))?;
                let credential = creds
                    .scram(&first.user, m)
                    .ok_or(SaslError::InvalidCredentials)?;
                let (server, challenge) =
                    ScramServer::challenge(m, first, credential, &scram::nonce());
                Ok(Step::Challenge(
                    Exchange::Scram(Box::new(server)),
                    challenge,
                ))
            }
            Exchange::Scram(server) => {
                let (user, reply) = server.finish(token).map_err(|e| match e {
                    scram::ScramError::InvalidCredentials => SaslError::InvalidCredentials,
                    other => SaslError::Malformed(other.to_string()),
                })?;
                Ok(Step::Done { user, reply })
            }
        }
    }
}

/// `[authzid] NUL authcid NUL password` (RFC 4616); Kafka accepts an authorization id
/// only when it names the authenticating user.
fn parse_plain(token: &[u8]) -> Result<(String, String), SaslError> {
    let text = std::str::from_utf8(token)
        .map_err(|_| SaslError::Malformed("PLAIN token is not UTF-8".into()))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed(
            "PLAIN token must be authzid NUL user NUL password".into(),
        ));
    };
    if user.is_empty() || password.is_empty() {
        return Err(SaslError::Malformed("empty user name or password".into()));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(SaslError::Malformed(
            "the authorization id must be the authenticating user".into(),
        ));
    }
    Ok((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_controller::metadata::ScramCredential;
    use scram::ScramClient;

    fn metadata_with(user: &str, password: &str) -> ClusterMetadata {
        let mut md = ClusterMetadata::default();
        let c = Credential::from_password(Mechanism::Sha256, password, b"saltsalt".to_vec(), 4096);
        md.scram_credentials.entry(user.into()).or_default().insert(
            "SCRAM-SHA-256".into(),
            ScramCredential {
                salt: c.salt,
                stored_key: c.stored_key,
                server_key: c.server_key,
                iterations: c.iterations,
            },
        );
        md
    }

    #[test]
    fn plain_checks_static_users_and_scram_credentials() {
        let statics = StaticUsers::new([("admin".to_string(), "admin-secret".to_string())]);
        let md = metadata_with("alice", "alice-secret");
        let creds = Credentials {
            statics: &statics,
            metadata: &md,
        };
        let plain = |token: &[u8]| Exchange::Started(SaslMechanism::Plain).step(token, &creds);
        assert!(
            matches!(plain(b"\0admin\0admin-secret"), Ok(Step::Done { user, .. }) if user == "admin")
        );
        assert!(matches!(
            plain(b"alice\0alice\0alice-secret"),
            Ok(Step::Done { .. })
        ));
        assert_eq!(
            plain(b"\0alice\0wrong").expect_err("refused"),
            SaslError::InvalidCredentials
        );
        assert_eq!(
            plain(b"\0nobody\0x").expect_err("refused"),
            SaslError::InvalidCredentials
        );
        assert!(matches!(
            plain(b"bob\0alice\0alice-secret"),
            Err(SaslError::Malformed(_))
        ));
        assert!(matches!(
            plain(b"no separators"),
            Err(SaslError::Malformed(_))
        ));
    }

    #[test]
    fn scram_authenticates_static_and_stored_users() {
        let statics = StaticUsers::new([("admin".to_string(), "admin-secret".to_string())]);
        let md = metadata_with("alice", "alice-secret");
        let creds = Credentials {
            statics: &statics,
            metadata: &md,
        };
        for (m, user, password, ok) in [
            (Mechanism::Sha256, "alice", "alice-secret", true),
            (Mechanism::Sha256, "alice", "nope", false),
            (Mechanism::Sha512, "admin", "admin-secret", true),
            (Mechanism::Sha512, "alice", "alice-secret", false), // no SHA-512 credential
        ] {
            let client = ScramClient::new(m, user, password);
            let result = Exchange::Started(SaslMechanism::Scram(m))
                .step(&client.client_first(), &creds)
                .and_then(|step| match step {
                    Step::Challenge(exchange, challenge) => {
                        let (pending, last) =
                            client.client_final(&challenge).expect("client final");
                        let step = exchange.step(&last, &creds)?;
                        if let Step::Done { reply, .. } = &step {
                            pending.verify(reply).expect("server proof");
                        }
                        Ok(step)
                    }
                    done => Ok(done),
                });
            assert_eq!(result.is_ok(), ok, "{m:?} {user}/{password}: {result:?}");
        }
    }

    #[test]
    fn users_come_from_files_and_jaas_lines() {
        let users = parse_users_file("# admins\nadmin:s3cr:et\n\n bob : pw\n").expect("parses");
        assert_eq!(
            users,
            vec![
                ("admin".to_string(), "s3cr:et".to_string()),
                ("bob".to_string(), " pw".to_string())
            ]
        );
        assert!(parse_users_file("nocolon").is_err());
        let jaas = r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice pw";"#;
        assert_eq!(
            parse_jaas_users(jaas),
            vec![
                ("admin".to_string(), "admin-secret".to_string()),
                ("alice".to_string(), "alice pw".to_string())
            ]
        );
    }
}
