use std::time::Duration;

use rdkafka::ClientConfig;

use super::CliError;

/// Connection flags shared by every client subcommand, named like Kafka's tools.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "FJORD_BOOTSTRAP_SERVER", default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
    /// Extra librdkafka client properties, KEY=VALUE (repeatable).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
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
        for (k, v) in key_values(&self.properties, "--property")? {
            c.set(k, v.trim());
        }
        Ok(c)
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
