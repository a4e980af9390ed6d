//! `fjord consume`: the console consumer.

use std::io::Write;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
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
    /// Consume as a member of this consumer group: partitions are assigned by the group,
    /// reading starts at its committed offsets, and offsets of printed records are
    /// committed (`--property group.id=G` does the same).
    #[arg(long, conflicts_with_all = ["partition", "offset"])]
    group: Option<String>,
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
    /// Print each record's timestamp, in ISO-8601 UTC.
    #[arg(long)]
    print_timestamp: bool,
    /// With --print-timestamp: epoch milliseconds instead, for scripts.
    #[arg(long)]
    raw_timestamps: bool,
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
    let group = match &args.group {
        Some(g) => Some(g.clone()),
        None => args.connect.property("group.id")?,
    };
    if group.is_some() && args.partition.is_some() {
        return Err(CliError::Usage(
            "a group assigns partitions itself: drop --partition or the group".into(),
        ));
    }
    let format = Format::from_args(&args)?;
    let stop = StopSignal::install()?;
    let consumer = match &group {
        Some(g) => subscribe(&args, g)?,
        None => assign(&args, start)?,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut seen = 0u64;
    let mut last = Instant::now();
    loop {
        if args.max_messages.is_some_and(|m| seen >= m) || stop.received().is_some() {
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
        format.write(&mut out, &msg)?;
        out.flush()?;
        if group.is_some() {
            // Committed only once printed: a crash re-prints rather than skips.
            consumer.store_offset_from_message(&msg)?;
        }
    }
    if group.is_some() {
        commit_stored(&consumer)?;
    }
    // Closing leaves the group (LeaveGroup), so the next member is assigned the
    // partitions at once instead of after this one's session timeout.
    drop(consumer);
    match stop.received() {
        // Kafka's console consumer, stopped by a signal: the count on standard error and
        // the exit status of a process the signal ended.
        Some(signal) => {
            eprintln!("Processed a total of {seen} messages");
            Err(CliError::Stopped(signal))
        }
        None => Ok(()),
    }
}

/// How records are printed: with Fjord's flags, the chosen fields joined by
/// `--separator`; with Kafka's console-consumer properties (`--property print.key=true`
/// and the like), as Kafka's default formatter prints them: `CreateTime:<ms>`,
/// `Partition:<n>`, `Offset:<n>`, headers as `k:v` joined by `headers.separator`, key and
/// value (`null.literal` for a missing one), joined by `key.separator`, each record ended
/// by `line.separator`.
struct Format {
    kafka: bool,
    timestamp: bool,
    raw_timestamps: bool,
    partition: bool,
    offset: bool,
    headers: bool,
    key: bool,
    value: bool,
    separator: String,
    line_separator: String,
    headers_separator: String,
    null_literal: String,
}

impl Format {
    fn from_args(args: &ConsumeArgs) -> Result<Self, CliError> {
        let c = &args.connect;
        let mut kafka = false;
        for p in [
            "print.timestamp",
            "print.key",
            "print.value",
            "print.partition",
            "print.offset",
            "print.headers",
            "key.separator",
            "line.separator",
        ] {
            kafka |= c.console_property(p)?.is_some();
        }
        let text = |key: &str, default: &str| -> Result<String, CliError> {
            Ok(c.console_property(key)?
                .unwrap_or_else(|| default.to_string()))
        };
        Ok(Format {
            kafka,
            timestamp: args.print_timestamp || c.console_flag("print.timestamp", false)?,
            raw_timestamps: args.raw_timestamps,
            // Fjord's --print-offset prints both as partition:offset.
            partition: c.console_flag("print.partition", false)?,
            offset: args.print_offset || c.console_flag("print.offset", false)?,
            headers: args.print_headers || c.console_flag("print.headers", false)?,
            key: args.print_key || c.console_flag("print.key", false)?,
            value: c.console_flag("print.value", true)?,
            separator: if kafka {
                text("key.separator", "\t")?
            } else {
                args.separator.clone()
            },
            line_separator: text("line.separator", "\n")?,
            headers_separator: text("headers.separator", ",")?,
            null_literal: text("null.literal", "null")?,
        })
    }

    fn write(&self, out: &mut impl Write, msg: &impl Message) -> std::io::Result<()> {
        let mut fields: Vec<Vec<u8>> = Vec::new();
        let bytes = |b: Option<&[u8]>| {
            b.map_or_else(|| self.null_literal.as_bytes().to_vec(), <[u8]>::to_vec)
        };
        if self.kafka {
            if self.timestamp {
                fields.push(kafka_timestamp(msg.timestamp()).into_bytes());
            }
            if self.partition {
                fields.push(format!("Partition:{}", msg.partition()).into_bytes());
            }
            if self.offset {
                fields.push(format!("Offset:{}", msg.offset()).into_bytes());
            }
        } else {
            if self.offset {
                fields.push(format!("{}:{}", msg.partition(), msg.offset()).into_bytes());
            }
            if self.timestamp {
                let ms = msg.timestamp().to_millis().unwrap_or(-1);
                let shown = if self.raw_timestamps {
                    ms.to_string()
                } else {
                    crate::time::iso8601_ms(ms)
                };
                fields.push(shown.into_bytes());
            }
        }
        if self.headers {
            let (pair, none) = if self.kafka {
                (":", "NO_HEADERS")
            } else {
                ("=", "")
            };
            let parts: Vec<String> = msg
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|header| {
                            let value = header.value.map_or_else(
                                || self.null_literal.clone(),
                                |v| String::from_utf8_lossy(v).into_owned(),
                            );
                            format!("{}{pair}{value}", header.key)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let joined = if parts.is_empty() {
                none.to_string()
            } else {
                parts.join(if self.kafka {
                    &self.headers_separator
                } else {
                    ","
                })
            };
            fields.push(joined.into_bytes());
        }
        if self.key {
            fields.push(if self.kafka {
                bytes(msg.key())
            } else {
                msg.key().unwrap_or_default().to_vec()
            });
        }
        if self.value || !self.kafka {
            fields.push(if self.kafka {
                bytes(msg.payload())
            } else {
                msg.payload().unwrap_or_default().to_vec()
            });
        }
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.write_all(self.separator.as_bytes())?;
            }
            out.write_all(f)?;
        }
        out.write_all(self.line_separator.as_bytes())
    }
}

/// A timestamp as Kafka's console consumer prints it.
fn kafka_timestamp(t: rdkafka::Timestamp) -> String {
    match t {
        rdkafka::Timestamp::CreateTime(ms) => format!("CreateTime:{ms}"),
        rdkafka::Timestamp::LogAppendTime(ms) => format!("LogAppendTime:{ms}"),
        rdkafka::Timestamp::NotAvailable => "NO_TIMESTAMP".to_string(),
    }
}

/// SIGINT (Ctrl-C) or SIGTERM, once received: the poll loop ends and the consumer commits
/// and leaves its group rather than dying with the process. A second signal while that
/// runs (an unreachable broker) exits at once.
struct StopSignal {
    received: Arc<AtomicI32>,
}

impl StopSignal {
    fn install() -> Result<Self, CliError> {
        use tokio::signal::unix::{signal, SignalKind};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        // Registered before any record is read, so no signal finds the default action.
        let (mut interrupt, mut terminate) = runtime.block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ))
        })?;
        let received = Arc::new(AtomicI32::new(0));
        let seen = Arc::clone(&received);
        std::thread::spawn(move || {
            runtime.block_on(async {
                loop {
                    let signal = tokio::select! {
                        _ = interrupt.recv() => libc::SIGINT,
                        _ = terminate.recv() => libc::SIGTERM,
                    };
                    if seen.swap(signal, Ordering::AcqRel) != 0 {
                        std::process::exit(128 + signal);
                    }
                }
            })
        });
        Ok(StopSignal { received })
    }

    fn received(&self) -> Option<i32> {
        Some(self.received.load(Ordering::Acquire)).filter(|&s| s != 0)
    }
}

/// A group member: partitions come from the group, reading starts at its committed
/// offsets (or --from-beginning's earliest where it has none).
fn subscribe(args: &ConsumeArgs, group: &str) -> Result<BaseConsumer, CliError> {
    let reset = if args.from_beginning {
        "earliest"
    } else {
        "latest"
    };
    let consumer: BaseConsumer = args
        .connect
        .config_with(&[
            ("group.id", group.to_string()),
            ("auto.offset.reset", reset.into()),
            ("enable.auto.commit", "true".into()),
            ("enable.auto.offset.store", "false".into()),
        ])?
        .create()?;
    ensure_topic(&consumer, args)?;
    consumer.subscribe(&[args.topic.as_str()])?;
    Ok(consumer)
}

/// A standalone reader of chosen partitions and offsets; it commits nothing.
fn assign(args: &ConsumeArgs, start: Offset) -> Result<BaseConsumer, CliError> {
    let consumer: BaseConsumer = args
        .connect
        .config_with(&[
            ("group.id", "fjord-console-consumer".into()),
            ("enable.auto.commit", "false".into()),
            ("enable.auto.offset.store", "false".into()),
        ])?
        .create()?;
    let topic = ensure_topic(&consumer, args)?;
    let mut tpl = TopicPartitionList::new();
    for p in topic {
        if args.partition.is_none_or(|want| want == p) {
            tpl.add_partition_offset(&args.topic, p, start)?;
        }
    }
    if tpl.count() == 0 {
        return Err(CliError::Kafka(format!(
            "topic {} has no partition {:?}",
            args.topic, args.partition
        )));
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}

/// The topic's partition ids; an error naming the topic when it does not exist.
fn ensure_topic(consumer: &BaseConsumer, args: &ConsumeArgs) -> Result<Vec<i32>, CliError> {
    let md = consumer.fetch_metadata(Some(&args.topic), args.connect.timeout())?;
    let topic = md
        .topics()
        .iter()
        .find(|t| t.name() == args.topic)
        .ok_or_else(|| CliError::Kafka(format!("topic '{}' does not exist", args.topic)))?;
    if let Some(e) = topic.error() {
        return Err(super::client::topic_error(&args.topic, e));
    }
    Ok(topic.partitions().iter().map(|p| p.id()).collect())
}

/// Commits the offsets stored so far before leaving the group.
fn commit_stored(consumer: &BaseConsumer) -> Result<(), CliError> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => Ok(()),
        // Nothing was printed since the last automatic commit.
        Err(e) if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::NoOffset) => {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
