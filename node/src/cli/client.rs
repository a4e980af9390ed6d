use std::time::{Duration, Instant};

use rdkafka::ClientConfig;

use super::CliError;

/// Connection flags shared by every client subcommand, named like Kafka's tools.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT...] (`--broker-list`, the older
    /// console tools' name, works too).
    #[arg(
        long,
        visible_alias = "broker-list",
        env = "FJORD_BOOTSTRAP_SERVER",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_server: String,
    /// Extra librdkafka client properties, KEY=VALUE (repeatable): security.protocol,
    /// sasl.mechanism, sasl.username, sasl.password, ssl.ca.location, ...
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// A file of client properties, one KEY=VALUE per line, as Kafka's tools take it
    /// (`--property` flags win over it).
    #[arg(long, env = "FJORD_COMMAND_CONFIG", value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    /// A client profile (`fjord profile create`): its bootstrap.servers and client
    /// properties, under --bootstrap-server, --command-config and --property.
    #[arg(long, env = "FJORD_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// Give up on the cluster after this long.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub timeout_ms: u64,
}

impl ConnectArgs {
    pub fn config(&self) -> Result<ClientConfig, CliError> {
        self.config_with(&[])
    }

    /// The client config with a command's own `defaults`, which `--property` overrides.
    /// The first call of a process also checks that the cluster answers (see
    /// [`Self::check_reachable`]), so a wrong address fails fast with its cause.
    pub fn config_with(&self, defaults: &[(&str, String)]) -> Result<ClientConfig, CliError> {
        let c = self.base_config(defaults)?;
        self.check_reachable_once(&c)?;
        Ok(c)
    }

    fn base_config(&self, defaults: &[(&str, String)]) -> Result<ClientConfig, CliError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_server);
        c.set("client.id", "fjord-cli");
        c.set("log_level", "3");
        for (k, v) in defaults {
            c.set(*k, v);
        }
        for (k, v) in self.client_properties()? {
            // The bootstrap address is `bootstrap_server`, where a profile's is the default.
            if !CONSOLE_PROPERTIES.contains(&k.as_str()) && k != "bootstrap.servers" {
                c.set(k, v);
            }
        }
        Ok(c)
    }

    /// A console-tool property (`--property print.key=true`), as given: not trimmed,
    /// since separators may be blanks. `None` when not given.
    pub fn console_property(&self, key: &str) -> Result<Option<String>, CliError> {
        debug_assert!(CONSOLE_PROPERTIES.contains(&key));
        Ok(key_values(&self.properties, "--property")?
            .into_iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| unescape_separator(&v)))
    }

    /// A boolean console-tool property; `default` when not given.
    pub fn console_flag(&self, key: &str, default: bool) -> Result<bool, CliError> {
        match self.console_property(key)? {
            None => Ok(default),
            Some(v) if v.trim().eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.trim().eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(CliError::Usage(format!(
                "--property {key}={v}: expected true or false"
            ))),
        }
    }

    /// The client properties of the profile, `--command-config` and `--property`, in
    /// that order (a later one wins).
    pub fn client_properties(&self) -> Result<Vec<(String, String)>, CliError> {
        let mut out = Vec::new();
        if let Some(name) = self.profile.as_deref().filter(|n| !n.is_empty()) {
            out.extend(super::profile::load(name)?);
        }
        if let Some(path) = &self.command_config {
            out.extend(read_command_config(path)?);
        }
        out.extend(key_values(&self.properties, "--property")?);
        Ok(out
            .into_iter()
            .map(|(k, v)| (k, v.trim().to_string()))
            .collect())
    }

    /// One client property, as the last of `--command-config` and `--property` sets it.
    pub fn property(&self, key: &str) -> Result<Option<String>, CliError> {
        Ok(self
            .client_properties()?
            .into_iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Checks, once per process, that the cluster answers with these connection
    /// settings (for commands that speak the protocol themselves).
    pub fn ensure_reachable(&self) -> Result<(), CliError> {
        self.check_reachable_once(&self.base_config(&[])?)
    }

    /// Checks, once per process, that the cluster answers: see [`Self::check_reachable`].
    fn check_reachable_once(&self, config: &ClientConfig) -> Result<(), CliError> {
        static CHECKED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
        CHECKED
            .get_or_init(|| self.check_reachable(config).map_err(|e| e.to_string()))
            .clone()
            .map_err(CliError::Kafka)
    }

    /// Asks the cluster for its metadata with these connection settings and at most
    /// [`REACH_WITHIN`] of patience. librdkafka would otherwise retry for the command's
    /// whole timeout and then say only "Broker transport failure"; its first error
    /// names the address and the cause (connection refused, connection setup timed out,
    /// SSL handshake failed and why, SASL authentication failed, or a disconnect that
    /// hints at the wrong `security.protocol`), and that is what the user sees.
    fn check_reachable(&self, config: &ClientConfig) -> Result<(), CliError> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let within = self.timeout().min(REACH_WITHIN);
        let mut probe = config.clone();
        probe.set(
            "socket.connection.setup.timeout.ms",
            within.as_millis().max(1000).to_string(),
        );
        // A consumer needs no group to ask for metadata.
        probe.remove("group.id");
        let capture = FirstError::default();
        let consumer: BaseConsumer<FirstError> = probe
            .create_with_context(capture)
            .map_err(|e| CliError::Usage(format!("client settings: {e}")))?;
        // Asked in short steps, so a cause that persists (connection refused, a failed
        // handshake) is reported after FAIL_AFTER rather than at the end of `within`.
        let deadline = Instant::now() + within;
        let mut failing_since: Option<Instant> = None;
        loop {
            let step = deadline
                .saturating_duration_since(Instant::now())
                .min(REACH_STEP);
            let e = match consumer.fetch_metadata(None, step) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            // Error reports wait in the client's event queue until it is polled.
            let _ = consumer.poll(Duration::ZERO);
            let cause = consumer.context().first();
            if cause.is_some() {
                failing_since.get_or_insert_with(Instant::now);
            }
            let settled = failing_since.is_some_and(|t| t.elapsed() >= FAIL_AFTER);
            if settled || Instant::now() >= deadline {
                let cause = cause
                    .unwrap_or_else(|| format!("no answer within {} ms ({e})", within.as_millis()));
                return Err(CliError::Kafka(format!(
                    "cannot reach the cluster at {}: {cause}",
                    self.bootstrap_server
                )));
            }
        }
    }
}

/// A `--command-config` file, read as Kafka's tools read it (Java properties rules).
pub fn read_command_config(path: &std::path::Path) -> Result<Vec<(String, String)>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("--command-config {}: {e}", path.display())))?;
    let props = crate::config::properties::parse(&text)
        .map_err(|e| CliError::Usage(format!("--command-config {}: {e}", path.display())))?;
    Ok(props.into_iter().collect())
}

/// How long a command waits for the cluster to answer at all before it reports why not.
const REACH_WITHIN: Duration = Duration::from_secs(5);
/// How long a known cause of failure (refused, TLS or SASL failure) may persist before it
/// is reported: long enough to ride out a node that is just starting.
const FAIL_AFTER: Duration = Duration::from_secs(1);
/// How often the reachability check asks again.
const REACH_STEP: Duration = Duration::from_millis(200);

/// Keeps librdkafka's first error report, which names the broker and the cause.
#[derive(Default)]
struct FirstError(std::sync::Mutex<Option<String>>);

impl FirstError {
    fn first(&self) -> Option<String> {
        self.0.lock().ok().and_then(|f| f.clone())
    }
}

impl rdkafka::ClientContext for FirstError {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode;
        // "1/1 brokers are down" follows the error that says why; keep the why.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            return;
        }
        if let Ok(mut first) = self.0.lock() {
            first.get_or_insert_with(|| {
                if reason.is_empty() {
                    error.to_string()
                } else {
                    reason.to_string()
                }
            });
        }
    }

    /// librdkafka logs a failed connection (facility FAIL) as it happens, with the
    /// broker's address and the cause; its error events wait for a poll.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel;
        let serious = matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
                | RDKafkaLogLevel::Warning
        );
        if fac == "FAIL" && serious {
            // "[thrd:host:port/bootstrap]: host:port/bootstrap: Connect to ... failed: ..."
            let message = log_message
                .split_once("]: ")
                .filter(|(thread, _)| thread.starts_with("[thrd:"))
                .map_or(log_message, |(_, rest)| rest);
            if let Ok(mut first) = self.0.lock() {
                first.get_or_insert_with(|| message.to_string());
            }
        }
    }
}

impl rdkafka::consumer::ConsumerContext for FirstError {}

/// Parses `KEY=VALUE` flags into pairs.
/// The properties of Kafka's console producer and consumer (its line reader and
/// message formatter), which are the tool's own settings, not the client's: they are
/// not passed to librdkafka, which would refuse them as unknown.
pub const CONSOLE_PROPERTIES: &[&str] = &[
    "parse.key",
    "key.separator",
    "print.timestamp",
    "print.key",
    "print.value",
    "print.partition",
    "print.offset",
    "print.headers",
    "line.separator",
    "headers.separator",
    "null.literal",
];

/// `\t`, `\n` and `\r` written out in a separator mean the character, as a shell user
/// types `key.separator=\t`.
fn unescape_separator(v: &str) -> String {
    v.replace("\\t", "\t")
        .replace("\\n", "\n")
        .replace("\\r", "\r")
}

pub fn key_values(items: &[String], flag: &str) -> Result<Vec<(String, String)>, CliError> {
    items
        .iter()
        .map(|i| {
            i.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| CliError::Usage(format!("{flag} '{i}' must look like KEY=VALUE")))
        })
        .collect()
}

/// A topic-level error from Metadata, worded as Kafka's tools word it.
pub fn topic_error(topic: &str, err: rdkafka::types::RDKafkaRespErr) -> CliError {
    use rdkafka::types::RDKafkaErrorCode;
    match RDKafkaErrorCode::from(err) {
        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
            CliError::Kafka(format!("topic '{topic}' does not exist"))
        }
        code => CliError::Kafka(format!("{topic}: {code}")),
    }
}
