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
    let group = match &args.group {
        Some(g) => Some(g.clone()),
        None => args.connect.property("group.id")?,
    };
    if group.is_some() && args.partition.is_some() {
        return Err(CliError::Usage(
            "a group assigns partitions itself: drop --partition or the group".into(),
        ));
    }
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
