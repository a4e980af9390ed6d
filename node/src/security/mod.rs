//! Who may connect and what they may do: TLS on Kafka listeners (`SSL`, `SASL_SSL`),
//! SASL authentication (`SASL_PLAINTEXT`, `SASL_SSL`), ACLs, and mutual TLS between
//! nodes. Settings use Kafka's names (`ssl.keystore.location`, `ssl.client.auth`,
//! `sasl.enabled.mechanisms`, `authorizer.class.name`, `super.users`, ...), each one
//! overridable per listener as `listener.name.<name>.<setting>`.

pub mod authorizer;
pub mod principal;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use fjord_proto::peer::{ClusterSecret, PeerLinks};
use rustls::ServerConfig;

use self::authorizer::Authorizer;
use self::sasl::{SaslMechanism, StaticUsers};
use self::tls::{ClientAuth, Reloading, TlsFiles};
use crate::config::{ListenerSpec, NodeConfig};

/// Kafka's values of `authorizer.class.name` that turn ACLs on.
const AUTHORIZERS: &[&str] = &[
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
    "kafka.security.auth.SimpleAclAuthorizer",
];

/// How often TLS and user files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// `sasl.enabled.mechanisms` when not set: every mechanism Fjord serves.
pub const DEFAULT_SASL_MECHANISMS: &str = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512";
/// The only key and trust store format Fjord reads (`ssl.keystore.type`, `ssl.truststore.type`).
pub const STORE_TYPE: &str = "PEM";
/// `ssl.client.auth` when unset: client certificates are not asked for.
pub const DEFAULT_CLIENT_AUTH: &str = "none";
/// `ssl.endpoint.identification.algorithm` when unset: peers' host names are verified.
pub const DEFAULT_ENDPOINT_IDENTIFICATION: &str = "https";

/// The configuration keys this module reads, for the unknown-property warning.
pub const KEYS: &[&str] = &[
    "ssl.keystore.location",
    "ssl.keystore.type",
    "ssl.truststore.location",
    "ssl.truststore.type",
    "ssl.client.auth",
    "ssl.endpoint.identification.algorithm",
    "sasl.enabled.mechanisms",
    "sasl.jaas.config",
    "sasl.users.file",
    "sasl.mechanism.inter.broker.protocol",
    "connections.max.reauth.ms",
    "authorizer.class.name",
    "super.users",
    "allow.everyone.if.no.acl.found",
    "rpc.auth.secret.file",
    "rpc.allow.unauthenticated",
    "rpc.ssl.keystore.location",
    "rpc.ssl.truststore.location",
    "rpc.ssl.endpoint.identification.algorithm",
];

/// Kafka's listener security protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "PLAINTEXT" => Some(Protocol::Plaintext),
            "SSL" => Some(Protocol::Ssl),
            "SASL_PLAINTEXT" => Some(Protocol::SaslPlaintext),
            "SASL_SSL" => Some(Protocol::SaslSsl),
            _ => None,
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }
}

/// One Kafka listener's security.
pub struct ListenerSecurity {
    pub protocol: Protocol,
    pub tls: Option<Reloading<ServerConfig>>,
    /// The mechanisms clients may choose (`sasl.enabled.mechanisms`).
    pub mechanisms: Vec<SaslMechanism>,
}

impl ListenerSecurity {
    pub fn plaintext() -> Self {
        ListenerSecurity {
            protocol: Protocol::Plaintext,
            tls: None,
            mechanisms: Vec::new(),
        }
    }
}

/// A setting for `listener`: its `listener.name.<listener>.<key>` override, else the
/// node-wide `<key>`.
fn lookup<'a>(props: &'a BTreeMap<String, String>, listener: &str, key: &str) -> Option<&'a str> {
    props
        .get(&format!(
            "listener.name.{}.{key}",
            listener.to_ascii_lowercase()
        ))
        .or_else(|| props.get(key))
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

fn tls_files(
    props: &BTreeMap<String, String>,
    listener: &str,
    prefix: &str,
) -> Result<TlsFiles, String> {
    let key = |k: &str| format!("{prefix}{k}");
    for store in ["keystore", "truststore"] {
        if let Some(t) = lookup(props, listener, &key(&format!("ssl.{store}.type"))) {
            if !t.eq_ignore_ascii_case(STORE_TYPE) {
                return Err(format!(
                    "{}={t}: Fjord reads PEM files only (convert with openssl, \
                     ssl.{store}.type=PEM)",
                    key(&format!("ssl.{store}.type"))
                ));
            }
        }
    }
    Ok(TlsFiles {
        keystore: lookup(props, listener, &key("ssl.keystore.location")).map(PathBuf::from),
        truststore: lookup(props, listener, &key("ssl.truststore.location")).map(PathBuf::from),
        client_auth: ClientAuth::parse(
            lookup(props, listener, &key("ssl.client.auth")).unwrap_or(DEFAULT_CLIENT_AUTH),
        )
        .map_err(|e| e.to_string())?,
        verify_hostname: lookup(
            props,
            listener,
            &key("ssl.endpoint.identification.algorithm"),
        )
        .unwrap_or(DEFAULT_ENDPOINT_IDENTIFICATION)
        .eq_ignore_ascii_case("https"),
    })
}

/// Every `user_NAME="password"` of the JAAS configs, node-wide or per listener.
fn jaas_users(props: &BTreeMap<String, String>) -> Vec<(String, String)> {
    props
        .iter()
        .filter(|(k, _)| {
            *k == "sasl.jaas.config"
                || (k.starts_with("listener.name.") && k.ends_with(".sasl.jaas.config"))
        })
        .flat_map(|(_, v)| sasl::parse_jaas_users(v))
        .collect()
}

fn read_users_file(path: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("sasl.users.file {}: {e}", path.display()))?;
    sasl::parse_users_file(&text).map_err(|e| format!("sasl.users.file {}: {e}", path.display()))
}

/// The node's security settings, built once at start-up; TLS and user files are
/// reloaded when they change.
pub struct Security {
    pub listeners: BTreeMap<String, Arc<ListenerSecurity>>,
    pub authorizer: Authorizer,
    /// `connections.max.reauth.ms` (KIP-368): 0 lets a session last as long as its
    /// connection.
    pub reauth_ms: i64,
    users: RwLock<Arc<StaticUsers>>,
    /// The users of JAAS configs, kept when the users file is reloaded.
    jaas_users: Vec<(String, String)>,
    users_file: Option<(PathBuf, RwLock<Option<SystemTime>>)>,
    /// Mutual TLS between nodes (`rpc.ssl.*`).
    pub rpc: Option<RpcTls>,
    /// The cluster secret every node proves it holds on the rpc port.
    pub rpc_secret: Option<ClusterSecret>,
}

/// Refuses a call on the rpc port from a node other than it claims, or one the
/// metadata does not know as a broker; counted by `fjord_rpc_calls_refused_total`.
pub fn check_peer<T>(
    req: &tonic::Request<T>,
    claimed: Option<u64>,
    md: &fjord_controller::ClusterMetadata,
    call: &'static str,
) -> Result<(), tonic::Status> {
    fjord_proto::peer::check_caller(fjord_proto::peer::caller(req), claimed, |id| {
        i32::try_from(id).is_ok_and(|id| md.brokers.contains_key(&id))
    })
    .map_err(|why| refuse_peer(call, why))
}

pub fn refuse_peer(call: &'static str, why: String) -> tonic::Status {
    fjord_controller::network::server::refuse(call, why)
}

/// How this node reaches the others: TLS and the cluster secret, as configured.
pub fn peer_links(security: &Arc<Security>, node_id: i32) -> PeerLinks {
    PeerLinks {
        tls: rpc_client_tls(security),
        auth: security
            .rpc_secret
            .clone()
            .map(|s| (s, u64::try_from(node_id).unwrap_or_default())),
    }
}

/// The rpc client config, as the inter-node channels take it (`None`: plain TCP).
fn rpc_client_tls(security: &Arc<Security>) -> Option<fjord_proto::tls::ClientTls> {
    security.rpc.as_ref()?;
    let security = Arc::clone(security);
    Some(fjord_proto::tls::ClientTls(Arc::new(move || {
        security
            .rpc
            .as_ref()
            .map(|r| r.client.get())
            .unwrap_or_else(|| unreachable!("checked above: the rpc settings never go away"))
    })))
}

/// The rpc server config, as the rpc listener takes it (`None`: plain TCP).
pub fn rpc_server_tls(security: &Arc<Security>) -> Option<fjord_proto::tls::ServerTls> {
    security.rpc.as_ref()?;
    let security = Arc::clone(security);
    Some(fjord_proto::tls::ServerTls(Arc::new(move || {
        security
            .rpc
            .as_ref()
            .map(|r| r.server.get())
            .unwrap_or_else(|| unreachable!("checked above: the rpc settings never go away"))
    })))
}

/// Refuses an rpc listener that anyone on the network could use: one bound beyond
/// loopback needs the cluster secret or mutual TLS, unless
/// `rpc.allow.unauthenticated=true` says otherwise, which is then logged at every start.
fn rpc_exposure(config: &NodeConfig, tls: bool, secret: bool) -> Result<(), String> {
    if tls || secret || is_loopback(&config.rpc_listener) {
        return Ok(());
    }
    let allowed = config
        .static_props
        .get("rpc.allow.unauthenticated")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !allowed {
        return Err(format!(
            "the rpc listener {} is reachable beyond this host but has no authentication: \
             anyone who reaches it could rewrite the cluster's metadata and read every \
             partition. Give every node the same secret (--cluster-secret-file FILE or \
             FJORD_CLUSTER_SECRET, e.g. from `openssl rand -hex 32`), or set \
             rpc.ssl.keystore.location and rpc.ssl.truststore.location, or bind it to \
             loopback. rpc.allow.unauthenticated=true starts anyway.",
            config.rpc_listener
        ));
    }
    tracing::warn!(
        rpc_listener = %config.rpc_listener,
        "the rpc listener accepts unauthenticated peers (rpc.allow.unauthenticated=true): \
         anyone who reaches it can rewrite the cluster"
    );
    Ok(())
}

/// Whether `host:port` is bound to loopback only.
fn is_loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Both sides of mutual TLS on the rpc listener.
pub struct RpcTls {
    pub server: Reloading<ServerConfig>,
    pub client: Reloading<rustls::ClientConfig>,
}

impl Security {
    pub fn from_config(config: &NodeConfig) -> Result<Self, String> {
        let props = &config.static_props;
        let mut listeners = BTreeMap::new();
        for l in &config.listeners {
            listeners.insert(l.name.clone(), Arc::new(Self::listener(props, l)?));
        }
        let authorizer_class = props
            .get("authorizer.class.name")
            .map(|s| s.trim())
            .unwrap_or("");
        if !authorizer_class.is_empty() && !AUTHORIZERS.contains(&authorizer_class) {
            return Err(format!(
                "authorizer.class.name={authorizer_class} is not supported; use {}",
                AUTHORIZERS[0]
            ));
        }
        let authorizer = Authorizer {
            enabled: !authorizer_class.is_empty(),
            super_users: Authorizer::parse_super_users(
                props.get("super.users").map(String::as_str).unwrap_or(""),
            ),
            allow_if_no_acl: props
                .get("allow.everyone.if.no.acl.found")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        };
        let reauth_ms = props
            .get("connections.max.reauth.ms")
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("connections.max.reauth.ms={v} is not a number"))
            })
            .transpose()?
            .unwrap_or(0)
            .max(0);
        let jaas_users = jaas_users(props);
        let users_file = props.get("sasl.users.file").map(PathBuf::from);
        let stamp = users_file
            .as_ref()
            .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        let mut users = jaas_users.clone();
        if let Some(path) = &users_file {
            users.extend(read_users_file(path)?);
        }
        let rpc_files = tls_files(props, "", "rpc.")?;
        let rpc = match (&rpc_files.keystore, &rpc_files.truststore) {
            (None, None) => None,
            (Some(_), Some(_)) => {
                let server_files = TlsFiles {
                    client_auth: ClientAuth::Required,
                    ..rpc_files.clone()
                };
                Some(RpcTls {
                    server: Reloading::new("rpc listener", server_files, |f| {
                        tls::server_config(f, &[b"h2"])
                    })
                    .map_err(|e| e.to_string())?,
                    client: Reloading::new("rpc client", rpc_files, |f| {
                        tls::client_config(f, &[b"h2"])
                    })
                    .map_err(|e| e.to_string())?,
                })
            }
            _ => {
                return Err(
                    "mutual TLS between nodes needs both rpc.ssl.keystore.location and \
                     rpc.ssl.truststore.location"
                        .into(),
                )
            }
        };
        let rpc_secret = config
            .cluster_secret
            .as_deref()
            .map(ClusterSecret::new)
            .transpose()
            .map_err(|e| format!("cluster secret: {e}"))?;
        rpc_exposure(config, rpc.is_some(), rpc_secret.is_some())?;
        Ok(Security {
            listeners,
            authorizer,
            reauth_ms,
            users: RwLock::new(Arc::new(StaticUsers::new(users))),
            jaas_users,
            users_file: users_file.map(|p| (p, RwLock::new(stamp))),
            rpc,
            rpc_secret,
        })
    }

    fn listener(
        props: &BTreeMap<String, String>,
        l: &ListenerSpec,
    ) -> Result<ListenerSecurity, String> {
        let protocol = Protocol::parse(&l.security_protocol).ok_or_else(|| {
            format!(
                "listener {} has an unknown security protocol {}",
                l.name, l.security_protocol
            )
        })?;
        let tls = if protocol.tls() {
            let files = tls_files(props, &l.name, "")?;
            Some(
                Reloading::new(format!("listener {}", l.name), files, |f| {
                    tls::server_config(f, &[])
                })
                .map_err(|e| format!("listener {}: {e}", l.name))?,
            )
        } else {
            None
        };
        let mechanisms = if protocol.sasl() {
            let names = lookup(props, &l.name, "sasl.enabled.mechanisms")
                .unwrap_or(DEFAULT_SASL_MECHANISMS);
            names
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| {
                    SaslMechanism::from_name(n).ok_or_else(|| {
                        format!(
                            "listener {}: SASL mechanism {n} is not supported (PLAIN, \
                             SCRAM-SHA-256 and SCRAM-SHA-512 are)",
                            l.name
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        if protocol.sasl() && mechanisms.is_empty() {
            return Err(format!("listener {} enables no SASL mechanism", l.name));
        }
        Ok(ListenerSecurity {
            protocol,
            tls,
            mechanisms,
        })
    }

    pub fn listener_security(&self, name: &str) -> Arc<ListenerSecurity> {
        self.listeners
            .get(name)
            .cloned()
            .unwrap_or_else(|| Arc::new(ListenerSecurity::plaintext()))
    }

    pub fn static_users(&self) -> Arc<StaticUsers> {
        Arc::clone(&self.users.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reloads TLS files and the users file where they changed.
    pub fn reload_if_changed(&self) {
        for l in self.listeners.values() {
            if let Some(t) = &l.tls {
                t.reload_if_changed();
            }
        }
        if let Some(rpc) = &self.rpc {
            rpc.server.reload_if_changed();
            rpc.client.reload_if_changed();
        }
        if let Some((path, stamp)) = &self.users_file {
            let now = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            if *stamp.read().unwrap_or_else(|e| e.into_inner()) == now {
                return;
            }
            match read_users_file(path) {
                Ok(file_users) => {
                    let mut users = self.jaas_users.clone();
                    users.extend(file_users);
                    let n = users.len();
                    *self.users.write().unwrap_or_else(|e| e.into_inner()) =
                        Arc::new(StaticUsers::new(users));
                    *stamp.write().unwrap_or_else(|e| e.into_inner()) = now;
                    tracing::info!(path = %path.display(), users = n, "SASL users reloaded");
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "the changed SASL users file does not load; keeping the users in use");
                }
            }
        }
    }
}
