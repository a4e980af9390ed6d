//! The `fjord` command line: `serve` runs a node; the other subcommands are Kafka clients
//! (built on librdkafka) that talk to any Kafka-compatible cluster.

/// `println!` that does not panic when standard output is a closed pipe (`| head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod acl;
mod bench;
mod client;
mod cluster;
mod config;
mod consume;
mod elect;
mod group;
mod move_progress;
mod offsets;
mod produce;
mod profile;
mod quota;
mod reassign;
mod records;
mod topic;
mod txn;
mod user;
mod wire;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{LogFormat, NodeConfig, ServeArgs};

#[derive(Parser, Debug)]
#[command(
    name = "fjord",
    version,
    about = "Fjord: a Kafka-compatible event streaming cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node (with no flags: a single-node cluster on 127.0.0.1:9092).
    Serve(ServeArgs),
    /// Create, list, describe, delete and configure topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Console producer: one record per line of standard input.
    Produce(produce::ProduceArgs),
    /// Console consumer: print records to standard output.
    Consume(consume::ConsumeArgs),
    /// Describe and alter the configs of topics, brokers, broker loggers, users and
    /// client ids (kafka-configs.sh).
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Inspect the metadata quorum and brokers, and change the voter set.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// List, describe and delete consumer groups, and reset their offsets.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Delete records before an offset (kafka-delete-records.sh).
    #[command(subcommand)]
    Records(records::RecordsCommand),
    /// List and describe transactions.
    #[command(subcommand)]
    Txn(txn::TxnCommand),
    /// Describe and alter client quotas per user and client id.
    #[command(subcommand)]
    Quota(quota::QuotaCommand),
    /// Add, remove and list ACLs.
    #[command(subcommand)]
    Acl(acl::AclCommand),
    /// Create, delete and list SCRAM users.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Named client settings (bootstrap servers, security) for --profile / FJORD_PROFILE.
    #[command(subcommand)]
    Profile(profile::ProfileCommand),
    /// Measure throughput and latency: produce, consume, or both end to end.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Failures of client subcommands, printed as one line for a person to read.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Kafka(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Stopped by this signal after a clean finish; the exit status says so (128 + it).
    #[error("stopped by signal {0}")]
    Stopped(i32),
}

impl From<rdkafka::error::KafkaError> for CliError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        CliError::Kafka(e.to_string())
    }
}

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Err(e) = profile::apply_bootstrap_default(&args) {
        return report(Err(e));
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Topic(cmd) => report(topic::run(cmd)),
        Command::Produce(args) => report(produce::run(args)),
        Command::Consume(args) => report(consume::run(args)),
        Command::Records(cmd) => report(records::run(cmd)),
        Command::Config(cmd) => report(config::run(cmd)),
        Command::Cluster(cmd) => report(cluster::run(cmd)),
        Command::Group(cmd) => report(group::run(cmd)),
        Command::Txn(cmd) => report(txn::run(cmd)),
        Command::Quota(cmd) => report(quota::run(cmd)),
        Command::Acl(cmd) => report(acl::run(cmd)),
        Command::User(cmd) => report(user::run(cmd)),
        Command::Profile(cmd) => report(profile::run(cmd)),
        Command::Bench(cmd) => report(bench::run(cmd)),
    }
}

fn report(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Stopped(signal)) => {
            ExitCode::from(u8::try_from(128 + signal).unwrap_or(u8::MAX))
        }
        Err(CliError::Usage(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // openraft logs every failed heartbeat with its whole error chain; the network layer
    // reports each unreachable peer once instead.
    const DEFAULT: &str = "info,openraft=error,sled=warn,h2=warn,tower=warn,hyper=warn";
    let directives = ["FJORD_LOG", "RUST_LOG"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|d| EnvFilter::try_new(d).is_ok())
        .unwrap_or_else(|| DEFAULT.to_string());
    let filter = EnvFilter::new(&directives);
    // Logs go to standard error, coloured only for a person at a terminal (and never
    // with NO_COLOR set): files, pipes, journald and `docker logs` get plain text.
    use std::io::IsTerminal as _;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    // The filter is reloadable: BROKER_LOGGER configs change levels at runtime.
    fn reloader<L, S>(handle: tracing_subscriber::reload::Handle<L, S>) -> crate::log_levels::Reload
    where
        L: From<EnvFilter> + 'static,
        S: 'static,
        tracing_subscriber::reload::Handle<L, S>: Send + Sync,
    {
        Box::new(move |directives| {
            let filter = EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
            handle.reload(filter).map_err(|e| e.to_string())
        })
    }
    match format {
        LogFormat::Text => {
            let builder = fmt.with_env_filter(filter).with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            crate::log_levels::install(&directives, reloader(handle));
        }
        LogFormat::Json => {
            let builder = fmt
                .json()
                .flatten_event(true)
                .with_env_filter(filter)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            crate::log_levels::install(&directives, reloader(handle));
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    init_logging(args.log_format);
    let config = match NodeConfig::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        // TLS files, SASL users and the authorizer are checked as start-up would.
        if let Err(e) = crate::security::Security::from_config(&config) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        print!("{}", config.describe());
        let unknown = config.unknown_props_with_hints();
        for (key, hint) in &unknown {
            eprintln!("error: {}", crate::config::unknown_message(key, *hint));
        }
        return if unknown.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::server::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
