//! `fjord consume`: the console consumer.

use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::client::ConnectArgs;
use super::CliError;

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Topic to read.
    #[arg(long)]
    topic: String,
    /// Start at the earliest offset instead of the latest.
    #[arg(long)]
    from_beginning: bool,
    /// Read only this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// Start at this offset (needs --partition); "earliest" and "latest" also work.
    #[arg(long)]
    offset: Option<String>,
    /// Exit after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Exit after this long without a record.
    #[arg(long, value_name = "MS")]
    idle_timeout_ms: Option<u64>,
    /// Print each record's key before the value.
    #[arg(long)]
    print_key: bool,
    /// Print each record's headers.
    #[arg(long)]
    print_headers: bool,
    /// Print each record's partition and offset.
    #[arg(long)]
    print_offset: bool,
    /// Print each record's timestamp.
    #[arg(long)]
    print_timestamp: bool,
    /// Separator between printed fields.
    #[arg(long, default_value = "\t")]
    separator: String,
}

pub fn run(args: ConsumeArgs) -> Result<(), CliError> {
    let start = match (&args.offset, args.partition) {
        (Some(_), None) => return Err(CliError::Usage("--offset needs --partition".into())),
        (Some(o), Some(_)) => match o.as_str() {
            "earliest" => Offset::Beginning,
            "latest" => Offset::End,
            n => Offset::Offset(
                n.parse()
                    .map_err(|_| CliError::Usage(format!("--offset '{n}' is not a number")))?,
            ),
        },
        (None, _) if args.from_beginning => Offset::Beginning,
        (None, _) => Offset::End,
    };
    let mut config = args.connect.config()?;
    config.set("group.id", "fjord-console-consumer");
    config.set("enable.auto.commit", "false");
    config.set("enable.auto.offset.store", "false");
    let consumer: BaseConsumer = config.create()?;
    let md = consumer.fetch_metadata(Some(&args.topic), args.connect.timeout())?;
    let topic = md
        .topics()
        .iter()
        .find(|t| t.name() == args.topic)
        .ok_or_else(|| CliError::Kafka(format!("topic {} not found", args.topic)))?;
    if let Some(e) = topic.error() {
        return Err(CliError::Kafka(format!("{}: {:?}", args.topic, e)));
    }
    let mut tpl = TopicPartitionList::new();
    for p in topic.partitions() {
        if args.partition.is_none_or(|want| want == p.id()) {
            tpl.add_partition_offset(&args.topic, p.id(), start)?;
        }
    }
    if tpl.count() == 0 {
        return Err(CliError::Kafka(format!(
            "topic {} has no partition {:?}",
            args.topic, args.partition
        )));
    }
    consumer.assign(&tpl)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut seen = 0u64;
    let mut last = Instant::now();
    loop {
        if args.max_messages.is_some_and(|m| seen >= m) {
            break;
        }
        if args
            .idle_timeout_ms
            .is_some_and(|t| last.elapsed() >= Duration::from_millis(t))
        {
            break;
        }
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg?;
        last = Instant::now();
        seen += 1;
        let sep = &args.separator;
        if args.print_offset {
            write!(out, "{}:{}{sep}", msg.partition(), msg.offset())?;
        }
        if args.print_timestamp {
            write!(out, "{}{sep}", msg.timestamp().to_millis().unwrap_or(-1))?;
        }
        if args.print_headers {
            let mut parts = Vec::new();
            if let Some(h) = msg.headers() {
                for header in h.iter() {
                    parts.push(format!(
                        "{}={}",
                        header.key,
                        String::from_utf8_lossy(header.value.unwrap_or_default())
                    ));
                }
            }
            write!(out, "{}{sep}", parts.join(","))?;
        }
        if args.print_key {
            write!(
                out,
                "{}{sep}",
                String::from_utf8_lossy(msg.key().unwrap_or_default())
            )?;
        }
        out.write_all(msg.payload().unwrap_or_default())?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    Ok(())
}
