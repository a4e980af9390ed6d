//! TLS with rustls: PEM keystores and truststores as Kafka names them (KIP-651's PEM
//! type), server configs for Kafka listeners and the rpc listener, client configs for
//! peers and Fjord's own tools, and reloading when the files change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("{0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(path: &Path, why: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// Whether clients must present a certificate (Kafka's `ssl.client.auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

impl ClientAuth {
    pub fn parse(value: &str) -> Result<Self, TlsError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "none" => Ok(ClientAuth::None),
            "requested" => Ok(ClientAuth::Requested),
            "required" => Ok(ClientAuth::Required),
            other => Err(TlsError::Config(format!(
                "ssl.client.auth must be none, requested or required, not '{other}'"
            ))),
        }
    }
}

/// Where a TLS identity and its trust come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM with the private key and the certificate chain (`ssl.keystore.location`).
    pub keystore: Option<PathBuf>,
    /// PEM with the trusted CA certificates (`ssl.truststore.location`).
    pub truststore: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// Check that the peer's certificate names the host connected to (Kafka's
    /// `ssl.endpoint.identification.algorithm=https`); clients only.
    pub verify_hostname: bool,
}

impl TlsFiles {
    fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.keystore.iter().chain(self.truststore.iter())
    }

    /// The files' modification times, to notice a change.
    fn stamp(&self) -> Vec<Option<SystemTime>> {
        self.paths()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn load_identity(
    path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let key = PrivateKeyDer::from_pem_file(path).map_err(|e| {
        file_error(
            path,
            format!("no unencrypted PEM private key ({e}); Fjord reads PEM keystores (ssl.keystore.type=PEM)"),
        )
    })?;
    Ok((load_certs(path)?, key))
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| file_error(path, e))?;
    }
    Ok(roots)
}

/// A server config from `files` (which must name a keystore).
pub fn server_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
    let keystore = files
        .keystore
        .as_ref()
        .ok_or_else(|| TlsError::Config("TLS needs ssl.keystore.location".into()))?;
    let (certs, key) = load_identity(keystore)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match (files.client_auth, &files.truststore) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(TlsError::Config(
                "ssl.client.auth needs ssl.truststore.location (the CA of client certificates)"
                    .into(),
            ))
        }
        (auth, Some(truststore)) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(load_roots(truststore)?),
                provider(),
            );
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError::Config(e.to_string()))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| file_error(keystore, e))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client config from `files`: trust from the truststore, identity from the
/// keystore when there is one.
pub fn client_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<ClientConfig, TlsError> {
    let truststore = files.truststore.as_ref().ok_or_else(|| {
        TlsError::Config("a TLS client needs a truststore (the CA that signed the server)".into())
    })?;
    let roots = Arc::new(load_roots(truststore)?);
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(Arc::clone(&roots));
    let mut config = match &files.keystore {
        Some(keystore) => {
            let (certs, key) = load_identity(keystore)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| file_error(keystore, e))?
        }
        None => builder.with_no_client_auth(),
    };
    if !files.verify_hostname {
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(AnyNameVerifier { inner }));
    }
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Verifies the chain to the trusted CAs but not the host name, for
/// `ssl.endpoint.identification.algorithm=` (empty), as Kafka allows.
#[derive(Debug)]
struct AnyNameVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A config rebuilt whenever its files change: connections made after a certificate is
/// renewed use the new one, and connections already open keep theirs.
/// Builds a config from its files.
type Build<C> = Box<dyn Fn(&TlsFiles) -> Result<C, TlsError> + Send + Sync>;

pub struct Reloading<C> {
    files: TlsFiles,
    build: Build<C>,
    current: RwLock<(Vec<Option<SystemTime>>, Arc<C>)>,
    what: String,
}

impl<C> Reloading<C> {
    pub fn new(
        what: impl Into<String>,
        files: TlsFiles,
        build: impl Fn(&TlsFiles) -> Result<C, TlsError> + Send + Sync + 'static,
    ) -> Result<Self, TlsError> {
        let stamp = files.stamp();
        let config = build(&files)?;
        Ok(Reloading {
            files,
            build: Box::new(build),
            current: RwLock::new((stamp, Arc::new(config))),
            what: what.into(),
        })
    }

    pub fn get(&self) -> Arc<C> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()).1)
    }

    /// Rebuilds the config if a file changed since it was loaded. A file that does not
    /// load (half written, say) keeps the config in use and is tried again next time.
    pub fn reload_if_changed(&self) {
        let stamp = self.files.stamp();
        if self.current.read().unwrap_or_else(|e| e.into_inner()).0 == stamp {
            return;
        }
        match (self.build)(&self.files) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) =
                    (stamp, Arc::new(config));
                tracing::info!(what = %self.what, "TLS certificates reloaded");
            }
            Err(e) => {
                tracing::warn!(what = %self.what, error = %e, "changed TLS files do not load; keeping the ones in use");
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_certs {
    //! A throwaway CA and certificates, made with the openssl tool, for tests.
    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl tool is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Makes `ca.pem` and, for each name, `<name>.pem` (key and chain) signed by it,
    /// valid for 127.0.0.1 and localhost. Returns the directory's path.
    pub fn make(dir: &Path, names: &[&str]) -> PathBuf {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=test-ca",
            ],
        );
        for name in names {
            openssl(
                dir,
                &[
                    "req",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    &format!("/CN={name}"),
                ],
            );
            std::fs::write(
                dir.join("san.ext"),
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
            )
            .expect("ext");
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &format!("{name}.crt"),
                    "-days",
                    "2",
                    "-extfile",
                    "san.ext",
                ],
            );
            let key = std::fs::read_to_string(dir.join(format!("{name}.key"))).expect("key");
            let crt = std::fs::read_to_string(dir.join(format!("{name}.crt"))).expect("crt");
            std::fs::write(dir.join(format!("{name}.pem")), key + &crt).expect("pem");
        }
        dir.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, keystore: &str, client_auth: ClientAuth) -> TlsFiles {
        TlsFiles {
            keystore: Some(dir.join(keystore)),
            truststore: Some(dir.join("ca.pem")),
            client_auth,
            verify_hostname: true,
        }
    }

    #[test]
    fn pem_keystores_and_truststores_load_and_bad_ones_say_why() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = test_certs::make(tmp.path(), &["server", "client"]);
        server_config(&files(&dir, "server.pem", ClientAuth::Required), &[]).expect("server");
        client_config(&files(&dir, "client.pem", ClientAuth::None), &[]).expect("client");
        let err = server_config(&files(&dir, "ca.pem", ClientAuth::None), &[])
            .expect_err("a certificate without its key");
        assert!(err.to_string().contains("private key"), "{err}");
        let missing = TlsFiles {
            truststore: None,
            ..files(&dir, "server.pem", ClientAuth::Required)
        };
        assert!(server_config(&missing, &[]).is_err());
    }

    #[test]
    fn a_config_is_rebuilt_when_its_files_change() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = test_certs::make(tmp.path(), &["a", "b"]);
        std::fs::copy(dir.join("a.pem"), dir.join("live.pem")).expect("copy");
        let r = Reloading::new("test", files(&dir, "live.pem", ClientAuth::None), |f| {
            server_config(f, &[])
        })
        .expect("loads");
        let before = r.get();
        r.reload_if_changed();
        assert!(Arc::ptr_eq(&before, &r.get()), "nothing changed");
        // A half-written file keeps the old config.
        std::fs::write(dir.join("live.pem"), "garbage").expect("write");
        let t = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(dir.join("live.pem"))
            .and_then(|f| f.set_modified(t))
            .expect("touch");
        r.reload_if_changed();
        assert!(Arc::ptr_eq(&before, &r.get()));
        std::fs::copy(dir.join("b.pem"), dir.join("live.pem")).expect("copy");
        std::fs::File::options()
            .write(true)
            .open(dir.join("live.pem"))
            .and_then(|f| f.set_modified(t + std::time::Duration::from_secs(5)))
            .expect("touch");
        r.reload_if_changed();
        assert!(!Arc::ptr_eq(&before, &r.get()), "reloaded");
    }
}
