//! `fjord produce`: the console producer.

use std::io::BufRead;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::client::{key_values, ConnectArgs};
use super::CliError;

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Topic to write to.
    #[arg(long)]
    topic: String,
    /// Split each line into key and value at the first occurrence of this separator.
    #[arg(long)]
    key_separator: Option<String>,
    /// Header added to every record, KEY=VALUE (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// Write to this partition instead of letting the key choose.
    #[arg(long)]
    partition: Option<i32>,
    /// acks: all (-1), 1 or 0.
    #[arg(long, default_value = "all")]
    acks: String,
    /// Compression codec: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
}

/// Collects the records the cluster refused, so each is reported and the exit code says
/// whether everything was written.
#[derive(Default)]
struct Deliveries {
    failures: Mutex<Vec<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    /// The record's line number in standard input.
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, line: Box<u64>) {
        if let Err((e, msg)) = result {
            let partition = match msg.partition() {
                p if p >= 0 => format!(" (partition {p})"),
                _ => String::new(),
            };
            let line = format!("record {line}{partition}: {e}");
            if let Ok(mut f) = self.failures.lock() {
                f.push(line);
            }
        }
    }
}

pub fn run(args: ProduceArgs) -> Result<(), CliError> {
    let mut config = args.connect.config()?;
    config.set("acks", &args.acks);
    config.set("compression.type", &args.compression);
    config.set("message.timeout.ms", args.connect.timeout_ms.to_string());
    let producer: ThreadedProducer<Deliveries> =
        config.create_with_context(Deliveries::default())?;
    let headers = key_values(&args.headers, "--header")?;
    // Kafka's console producer: `--property parse.key=true` splits each line at
    // `key.separator` (a tab unless given).
    let key_separator = match &args.key_separator {
        Some(sep) => Some(sep.clone()),
        None if args.connect.console_flag("parse.key", false)? => Some(
            args.connect
                .console_property("key.separator")?
                .unwrap_or_else(|| "\t".to_string()),
        ),
        None => None,
    };
    let stdin = std::io::stdin();
    let mut count = 0u64;
    for line in stdin.lock().lines() {
        let line = line?;
        let (key, value) = match &key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.to_string()), v.to_string()),
                None => {
                    return Err(CliError::Usage(format!(
                        "line {} has no key separator '{sep}': {line}",
                        count + 1
                    )))
                }
            },
            None => (None, line),
        };
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in &headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut record: BaseRecord<'_, String, String, Box<u64>> =
            BaseRecord::with_opaque_to(&args.topic, Box::new(count + 1))
                .payload(&value)
                .headers(owned);
        if let Some(k) = &key {
            record = record.key(k);
        }
        if let Some(p) = args.partition {
            record = record.partition(p);
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    producer.poll(Duration::from_millis(10));
                    record = r;
                }
                Err((e, _)) => {
                    if let Ok(mut f) = producer.context().failures.lock() {
                        f.push(format!("record {}: {e}", count + 1));
                    }
                    break;
                }
            }
        }
        count += 1;
    }
    producer.flush(args.connect.timeout())?;
    let unanswered = u64::try_from(producer.in_flight_count()).unwrap_or(0);
    let failures = producer
        .context()
        .failures
        .lock()
        .map(|f| f.clone())
        .unwrap_or_default();
    for f in &failures {
        eprintln!("error: {f}");
    }
    let failed = failures.len() as u64 + unanswered;
    if failed > 0 {
        let mut why = format!(
            "{failed} of {count} records were not written to {}",
            args.topic
        );
        if unanswered > 0 {
            why.push_str(&format!(" ({unanswered} not acknowledged in time)"));
        }
        return Err(CliError::Kafka(why));
    }
    eprintln!("Produced {count} records to {}.", args.topic);
    Ok(())
}
