//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks them (KIP-84):
//! credential derivation, and the server and client sides of the exchange as pure state
//! machines that take a message and return the next.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// Kafka's bounds on SCRAM iterations (`AlterUserScramCredentials` refuses others).
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-256" => Some(Mechanism::Sha256),
            "SCRAM-SHA-512" => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    /// The code AlterUserScramCredentials and DescribeUserScramCredentials use.
    pub fn code(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(Mechanism::Sha256),
            2 => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // An HMAC takes keys of any length, so `new_from_slice` cannot fail.
        match self {
            Mechanism::Sha256 => {
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Mechanism::Sha512 => {
                let mut m = <Hmac<Sha512> as Mac>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// RFC 5802's Hi(): PBKDF2 with this mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: i32) -> Vec<u8> {
        let rounds = iterations.max(1) as u32;
        match self {
            Mechanism::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, rounds, &mut out);
                out.to_vec()
            }
            Mechanism::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, rounds, &mut out);
                out.to_vec()
            }
        }
    }
}

/// What the broker keeps of a password: enough to check a proof, not to make one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl Credential {
    /// From the salted password a client sends in AlterUserScramCredentials.
    pub fn from_salted(m: Mechanism, salt: Vec<u8>, salted: &[u8], iterations: i32) -> Self {
        let client_key = m.hmac(salted, b"Client Key");
        Credential {
            salt,
            stored_key: m.hash(&client_key),
            server_key: m.hmac(salted, b"Server Key"),
            iterations,
        }
    }

    pub fn from_password(m: Mechanism, password: &str, salt: Vec<u8>, iterations: i32) -> Self {
        let salted = m.salted_password(password.as_bytes(), &salt, iterations);
        Self::from_salted(m, salt, &salted, iterations)
    }

    /// Whether `password` is this credential's (SASL/PLAIN checked against SCRAM
    /// credentials). Constant time in the comparison.
    pub fn matches(&self, m: Mechanism, password: &str) -> bool {
        let candidate = Self::from_password(m, password, self.salt.clone(), self.iterations);
        constant_time_eq(&candidate.stored_key, &self.stored_key)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh nonce: 24 random bytes, printable.
pub fn nonce() -> String {
    let bytes: [u8; 24] = rand::random();
    B64.encode(bytes)
}

/// RFC 5802 `saslname` decoding: `=2C` is a comma, `=3D` an equals sign.
fn decode_name(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

fn encode_name(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// `key=value` attributes of a SCRAM message, in order. Keys are single letters in
/// RFC 5802; anything longer (an extension such as Kafka's `tokenauth`) keeps its whole
/// name so that it can be refused.
fn attributes(msg: &str) -> Vec<(&str, &str)> {
    msg.split(',')
        .filter_map(|part| part.split_once('='))
        .collect()
}

fn attr<'a>(attrs: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    attrs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// Why an exchange failed; every variant is SASL_AUTHENTICATION_FAILED to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("unsupported SCRAM extension or channel binding")]
    Unsupported,
    #[error("invalid credentials")]
    InvalidCredentials,
}

/// The server's side of one exchange.
#[derive(Debug)]
pub enum ScramServer {
    /// Sent server-first; waiting for client-final.
    Challenged {
        mechanism: Mechanism,
        user: String,
        credential: Credential,
        client_first_bare: String,
        server_first: String,
        nonce: String,
        channel_binding: String,
    },
}

/// The first step's result: who the client says it is, so its credential can be found.
pub struct ClientFirst {
    pub user: String,
    bare: String,
    client_nonce: String,
    /// The channel-binding attribute the client-final must carry: the GS2 header, in
    /// base64.
    channel_binding: String,
}

/// Parses the client-first message (`n,,n=user,r=nonce`).
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, ScramError> {
    let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    // gs2 header: no channel binding ("n"), optional authzid, then the bare message.
    let (cbind, rest) = msg
        .split_once(',')
        .ok_or(ScramError::Malformed("no GS2 header"))?;
    if cbind != "n" {
        return Err(ScramError::Unsupported);
    }
    let (_authzid, bare) = rest
        .split_once(',')
        .ok_or(ScramError::Malformed("no GS2 header"))?;
    let attrs = attributes(bare);
    if attrs.iter().any(|(k, _)| !matches!(*k, "n" | "r")) {
        // Kafka's only extension is delegation tokens (tokenauth), which Fjord lacks.
        return Err(ScramError::Unsupported);
    }
    let user = attr(&attrs, "n")
        .and_then(decode_name)
        .ok_or(ScramError::Malformed("no user name"))?;
    let client_nonce = attr(&attrs, "r").ok_or(ScramError::Malformed("no nonce"))?;
    if client_nonce.is_empty() || user.is_empty() {
        return Err(ScramError::Malformed("empty user or nonce"));
    }
    Ok(ClientFirst {
        user,
        bare: bare.to_string(),
        client_nonce: client_nonce.to_string(),
        channel_binding: B64.encode(&msg[..msg.len() - bare.len()]),
    })
}

impl ScramServer {
    /// Answers the client-first message with the server-first, for `credential` (the
    /// user's, looked up by the caller).
    pub fn challenge(
        mechanism: Mechanism,
        first: ClientFirst,
        credential: Credential,
        server_nonce: &str,
    ) -> (ScramServer, Vec<u8>) {
        let nonce = format!("{}{server_nonce}", first.client_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let out = server_first.clone().into_bytes();
        (
            ScramServer::Challenged {
                mechanism,
                user: first.user,
                credential,
                client_first_bare: first.bare,
                server_first,
                nonce,
                channel_binding: first.channel_binding,
            },
            out,
        )
    }

    /// Checks the client-final message; on success returns the user and the
    /// server-final message.
    pub fn finish(self, msg: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
        let ScramServer::Challenged {
            mechanism,
            user,
            credential,
            client_first_bare,
            server_first,
            nonce,
            channel_binding,
        } = self;
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let attrs = attributes(without_proof);
        if attr(&attrs, "c") != Some(channel_binding.as_str()) {
            return Err(ScramError::Unsupported);
        }
        // Kafka accepts a final nonce that ends with the server-first one: librdkafka
        // before 2.3 sends its own nonce once more in front of it.
        if !attr(&attrs, "r").is_some_and(|r| r.ends_with(nonce.as_str())) {
            return Err(ScramError::InvalidCredentials);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = mechanism.hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::InvalidCredentials);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        if !constant_time_eq(&mechanism.hash(&client_key), &credential.stored_key) {
            return Err(ScramError::InvalidCredentials);
        }
        let server_signature = mechanism.hmac(&credential.server_key, auth_message.as_bytes());
        Ok((
            user,
            format!("v={}", B64.encode(server_signature)).into_bytes(),
        ))
    }
}

/// The client's side, for Fjord's own command-line tools.
pub struct ScramClient {
    mechanism: Mechanism,
    user: String,
    password: String,
    client_nonce: String,
}

/// A client exchange between its two messages.
pub struct ScramClientFinal {
    mechanism: Mechanism,
    expected_server_signature: Vec<u8>,
}

impl ScramClient {
    pub fn new(mechanism: Mechanism, user: &str, password: &str) -> Self {
        ScramClient {
            mechanism,
            user: user.to_string(),
            password: password.to_string(),
            client_nonce: nonce(),
        }
    }

    fn bare(&self) -> String {
        format!("n={},r={}", encode_name(&self.user), self.client_nonce)
    }

    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.bare()).into_bytes()
    }

    /// Answers the server-first message with the client-final.
    pub fn client_final(
        self,
        server_first: &[u8],
    ) -> Result<(ScramClientFinal, Vec<u8>), ScramError> {
        let text =
            std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let attrs = attributes(text);
        let nonce = attr(&attrs, "r").ok_or(ScramError::Malformed("no nonce"))?;
        if !nonce.starts_with(&self.client_nonce) {
            return Err(ScramError::InvalidCredentials);
        }
        let salt = attr(&attrs, "s")
            .and_then(|s| B64.decode(s).ok())
            .ok_or(ScramError::Malformed("no salt"))?;
        let iterations: i32 = attr(&attrs, "i")
            .and_then(|i| i.parse().ok())
            .ok_or(ScramError::Malformed("no iteration count"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS * 64).contains(&iterations) {
            return Err(ScramError::Malformed("implausible iteration count"));
        }
        let m = self.mechanism;
        let salted = m.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.bare());
        let signature = m.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = m.hmac(&salted, b"Server Key");
        Ok((
            ScramClientFinal {
                mechanism: m,
                expected_server_signature: m.hmac(&server_key, auth_message.as_bytes()),
            },
            format!("{without_proof},p={}", B64.encode(proof)).into_bytes(),
        ))
    }
}

impl ScramClientFinal {
    /// Checks the server-final message: the server proves it knew the credential too.
    pub fn verify(self, server_final: &[u8]) -> Result<(), ScramError> {
        let text =
            std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let attrs = attributes(text);
        let _ = self.mechanism;
        match attr(&attrs, "v").and_then(|v| B64.decode(v).ok()) {
            Some(sig) if constant_time_eq(&sig, &self.expected_server_signature) => Ok(()),
            _ => Err(ScramError::InvalidCredentials),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example: user "user", password "pencil".
    #[test]
    fn the_rfc_7677_exchange_verifies() {
        let m = Mechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let cred = Credential::from_password(m, "pencil", salt, 4096);
        let first = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").expect("first");
        let (server, server_first) =
            ScramServer::challenge(m, first, cred, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(
            server_first,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (user, server_final) = server
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .expect("proof accepted");
        assert_eq!(user, "user");
        assert_eq!(
            server_final,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn client_and_server_agree_and_a_wrong_password_fails() {
        for m in [Mechanism::Sha256, Mechanism::Sha512] {
            let cred = Credential::from_password(m, "s3cret", b"salt-salt".to_vec(), 4096);
            for (password, ok) in [("s3cret", true), ("wrong", false)] {
                let client = ScramClient::new(m, "al,i=ce", password);
                let first = parse_client_first(&client.client_first()).expect("first");
                assert_eq!(first.user, "al,i=ce", "names are escaped and unescaped");
                let (server, server_first) =
                    ScramServer::challenge(m, first, cred.clone(), &nonce());
                let (pending, client_final) = client.client_final(&server_first).expect("final");
                match server.finish(&client_final) {
                    Ok((_, server_final)) => {
                        assert!(ok, "{m:?}: a wrong password was accepted");
                        pending.verify(&server_final).expect("server proves itself");
                    }
                    Err(e) => {
                        assert!(!ok, "{m:?}: {e}");
                        assert_eq!(e, ScramError::InvalidCredentials);
                    }
                }
            }
            assert!(cred.matches(m, "s3cret"));
            assert!(!cred.matches(m, "s3cret "));
        }
    }

    /// librdkafka before 2.3 repeats its own nonce in front of the server-first one in
    /// its final message; Kafka accepts that, and so must Fjord.
    #[test]
    fn a_final_nonce_with_the_client_nonce_repeated_is_accepted() {
        let m = Mechanism::Sha256;
        let cred = Credential::from_password(m, "pw", b"salt".to_vec(), 4096);
        let first = parse_client_first(b"n,,n=u,r=cnonce").expect("first");
        let (server, server_first) = ScramServer::challenge(m, first, cred, "snonce");
        let server_first = String::from_utf8(server_first).expect("utf8");
        let without_proof = "c=biws,r=cnoncecnoncesnonce";
        let salted = m.salted_password(b"pw", b"salt", 4096);
        let client_key = m.hmac(&salted, b"Client Key");
        let auth = format!("n=u,r=cnonce,{server_first},{without_proof}");
        let sig = m.hmac(&m.hash(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let last = format!("{without_proof},p={}", B64.encode(proof));
        server.finish(last.as_bytes()).expect("accepted");
    }

    #[test]
    fn malformed_and_unsupported_messages_are_refused() {
        for bad in [
            &b""[..],
            b"n,,",
            b"y,,n=u,r=x",
            b"p=tls-unique,,n=u,r=x",
            b"n,,n=u",
            b"n,,n=u,r=x,tokenauth=true",
            b"\xff\xfe",
        ] {
            assert!(
                parse_client_first(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
