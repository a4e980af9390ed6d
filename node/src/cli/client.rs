use std::time::Duration;

use rdkafka::ClientConfig;

use super::CliError;

/// Connection flags shared by every client subcommand, named like Kafka's tools.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "FJORD_BOOTSTRAP_SERVER", default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
    /// Extra librdkafka client properties, KEY=VALUE (repeatable): security.protocol,
    /// sasl.mechanism, sasl.username, sasl.password, ssl.ca.location, ...
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// A file of client properties, one KEY=VALUE per line, as Kafka's tools take it
    /// (`--property` flags win over it).
    #[arg(long, env = "FJORD_COMMAND_CONFIG", value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    /// Give up on the cluster after this long.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub timeout_ms: u64,
}

impl ConnectArgs {
    pub fn config(&self) -> Result<ClientConfig, CliError> {
        self.config_with(&[])
    }

    /// The client config with a command's own `defaults`, which `--property` overrides.
    pub fn config_with(&self, defaults: &[(&str, String)]) -> Result<ClientConfig, CliError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_server);
        c.set("client.id", "fjord-cli");
        c.set("log_level", "3");
        for (k, v) in defaults {
            c.set(*k, v);
        }
        for (k, v) in self.client_properties()? {
            c.set(k, v);
        }
        Ok(c)
    }

    /// The client properties of `--command-config` and `--property`, the latter last.
    pub fn client_properties(&self) -> Result<Vec<(String, String)>, CliError> {
        let mut out = Vec::new();
        if let Some(path) = &self.command_config {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::Usage(format!("--command-config {}: {e}", path.display()))
            })?;
            let lines: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect();
            out.extend(key_values(&lines, "--command-config")?);
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
}

/// Parses `KEY=VALUE` flags into pairs.
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
