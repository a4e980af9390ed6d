//! `fjord bench produce|consume|e2e`: the equivalent of kafka-producer-perf-test and
//! kafka-consumer-perf-test, on librdkafka, with latency percentiles for produce
//! acknowledgements and for end-to-end delivery.

mod baseline;
mod consumer;
mod latency;
mod meter;
mod producer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Offset;

use self::consumer::Assignment;
use self::meter::{Goal, Meter, Progress, Summary};
use super::client::ConnectArgs;
use super::CliError;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Produce fixed-size records; report throughput and acknowledgement latency.
    Produce(BenchArgs),
    /// Consume what the topic holds from the beginning; report throughput.
    Consume(BenchArgs),
    /// Produce and consume at once; report throughput, acknowledgement and end-to-end
    /// (send to receipt) latency.
    E2e(BenchArgs),
    /// Measure the machine: loopback TCP and sequential disk write throughput, the
    /// limits the other figures are compared with.
    Baseline(BaselineArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct BaselineArgs {
    /// Directory to write the test file into (use the broker's data directory).
    #[arg(long, default_value = ".")]
    dir: std::path::PathBuf,
    /// Seconds of loopback streaming.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// MiB to write to disk.
    #[arg(long, default_value_t = 2048)]
    write_mib: u64,
    /// End with one JSON object on standard output.
    #[arg(long)]
    json: bool,
}

/// Flags named like Kafka's perf tools.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Topic to use; created with --partitions and --replication-factor if missing.
    #[arg(long)]
    topic: String,
    /// Value size of each record in bytes.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Records to produce (consume: to read; default all the topic holds).
    #[arg(long)]
    num_records: Option<u64>,
    /// Run for this many seconds instead of a number of records.
    #[arg(long, value_name = "SECONDS", conflicts_with = "num_records")]
    duration: Option<f64>,
    /// Records per second over all producers; -1 for no limit.
    #[arg(long, default_value_t = -1.0)]
    throughput: f64,
    /// Records whose acknowledgements are the warm-up: left out of the steady-state
    /// latency figures the run also reports (as kafka-producer-perf-test's flag).
    #[arg(long, default_value_t = 0, value_name = "RECORDS")]
    warmup_records: u64,
    /// acks: all (-1), 1 or 0.
    #[arg(long, default_value = "all")]
    acks: String,
    /// Compression codec: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Partitions of the topic when this command creates it.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Replication factor of the topic when this command creates it (-1: the broker's
    /// default.replication.factor).
    #[arg(long, default_value_t = -1)]
    replication_factor: i32,
    /// Producer threads, each with its own connection.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consumer threads, each reading its share of the partitions.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Cycle through this many distinct keys (0: no keys, records spread by librdkafka's
    /// sticky partitioner).
    #[arg(long, default_value_t = 0)]
    keys: u64,
    /// Milliseconds between progress lines on standard error.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    reporting_interval: u64,
    /// End with one JSON object on standard output.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: BenchCommand) -> Result<(), CliError> {
    let (summaries, args) = match cmd {
        BenchCommand::Produce(a) => (vec![produce(&a)?], a),
        BenchCommand::Consume(a) => (vec![consume(&a)?], a),
        BenchCommand::E2e(a) => (e2e(&a)?, a),
        BenchCommand::Baseline(a) => return baseline(&a),
    };
    for s in &summaries {
        for line in s.lines() {
            outln!("{line}");
        }
    }
    if args.json {
        // End-to-end runs report the consumer side, with the producer's ack latency.
        let mut last = summaries
            .last()
            .map(Summary::json)
            .unwrap_or(serde_json::Value::Null);
        if let [p, _] = summaries.as_slice() {
            last["produce"] = p.json();
        }
        outln!("{last}");
    }
    if summaries.iter().any(|s| s.errors > 0) {
        return Err(CliError::Kafka(
            "some records were not delivered (see errors above)".into(),
        ));
    }
    Ok(())
}

fn baseline(args: &BaselineArgs) -> Result<(), CliError> {
    if !(args.duration > 0.0 && args.duration.is_finite()) || args.write_mib == 0 {
        return Err(CliError::Usage(
            "--duration and --write-mib must be positive".into(),
        ));
    }
    let tcp = baseline::loopback(Duration::from_secs_f64(args.duration))?;
    outln!("loopback TCP, one stream: {tcp:.0} MB/s");
    let disk = baseline::disk_write(&args.dir, args.write_mib << 20)?;
    outln!(
        "sequential buffered write to {}, fsync included: {disk:.0} MB/s",
        args.dir.display()
    );
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "loopback_mb_per_sec": tcp,
                "disk_write_mb_per_sec": disk,
                "limit_mb_per_sec": tcp.min(disk),
            })
        );
    }
    Ok(())
}

impl BenchArgs {
    fn validate(&self) -> Result<(), CliError> {
        if self.producers == 0 || self.consumers == 0 {
            return Err(CliError::Usage(
                "--producers and --consumers must be at least 1".into(),
            ));
        }
        if self.throughput == 0.0 {
            return Err(CliError::Usage(
                "--throughput must be positive or -1".into(),
            ));
        }
        if self.duration.is_some_and(|d| d <= 0.0 || !d.is_finite()) {
            return Err(CliError::Usage("--duration must be positive".into()));
        }
        Ok(())
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.reporting_interval.max(100))
    }

    /// Where a producing run ends: the records of [`Self::producer_plans`], or a time.
    fn goal(&self) -> Goal {
        match (self.num_records, self.duration) {
            (Some(r), _) => Goal::Records(r),
            (None, Some(d)) => Goal::Time(Duration::from_secs_f64(d)),
            (None, None) => Goal::Records(1_000_000),
        }
    }

    fn producer_plans(&self, stamp: bool) -> Vec<producer::Plan> {
        let n = self.producers as u64;
        let total = match (self.num_records, self.duration) {
            (Some(r), _) => Some(r),
            (None, Some(_)) => None,
            (None, None) => Some(1_000_000),
        };
        let until = self
            .duration
            .map(|d| Instant::now() + Duration::from_secs_f64(d));
        (0..n)
            .map(|i| producer::Plan {
                topic: self.topic.clone(),
                record_size: self.record_size,
                records: total.map(|t| t / n + u64::from(i < t % n)),
                until,
                rate: (self.throughput > 0.0).then(|| self.throughput / n as f64),
                keys: self.keys,
                stamp,
                seed: 0x9E37_79B9_7F4A_7C15 ^ (i + 1),
            })
            .collect()
    }

    fn producer_config(&self) -> Result<rdkafka::ClientConfig, CliError> {
        self.connect.config_with(&[
            ("client.id", "fjord-bench".into()),
            ("acks", self.acks.clone()),
            ("compression.type", self.compression.clone()),
            ("message.timeout.ms", self.connect.timeout_ms.to_string()),
            // Batches like the Java producer's perf test gets with linger 5 ms.
            ("linger.ms", "5".into()),
            ("batch.size", "1048576".into()),
            ("queue.buffering.max.kbytes", "131072".into()),
        ])
    }

    fn consumer_config(&self) -> Result<rdkafka::ClientConfig, CliError> {
        self.connect.config_with(&[
            ("client.id", "fjord-bench".into()),
            ("group.id", "fjord-bench".into()),
            ("enable.auto.commit", "false".into()),
            ("fetch.wait.max.ms", "100".into()),
            // librdkafka stops prefetching at 100k queued records by default; with small
            // records that starves the poll loop between fetches.
            ("queued.min.messages", "1000000".into()),
        ])
    }
}

/// The topic's partitions, creating the topic first if it does not exist. Creation comes
/// first: asking for the metadata of a missing topic can auto-create it with the
/// broker's default partition count instead of --partitions.
fn ensure_topic(args: &BenchArgs) -> Result<Vec<i32>, CliError> {
    let admin: AdminClient<DefaultClientContext> = args.connect.config()?.create()?;
    let timeout = args.connect.timeout();
    let topic = NewTopic::new(
        &args.topic,
        args.partitions,
        TopicReplication::Fixed(args.replication_factor),
    );
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results = futures::executor::block_on(admin.create_topics([&topic], &options))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(CliError::Kafka(format!("{name}: {code}"))),
        }
    }
    let started = Instant::now();
    loop {
        let md = admin.inner().fetch_metadata(Some(&args.topic), timeout)?;
        let found = md.topics().iter().find(|t| t.name() == args.topic);
        if let Some(t) = found.filter(|t| t.error().is_none() && !t.partitions().is_empty()) {
            let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            ids.sort_unstable();
            return Ok(ids);
        }
        if started.elapsed() > timeout {
            return Err(CliError::Kafka(format!(
                "topic {} has no partitions after {} ms",
                args.topic, args.connect.timeout_ms
            )));
        }
        // Polling the cluster's metadata for the new topic, not synchronization.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs the producer threads to completion.
fn run_producers(
    args: &BenchArgs,
    plans: Vec<producer::Plan>,
    meter: &Arc<Meter>,
) -> Result<(), CliError> {
    let config = args.producer_config()?;
    let flush = args.connect.timeout();
    let results: Vec<Result<(), CliError>> = std::thread::scope(|s| {
        let handles: Vec<_> = plans
            .iter()
            .map(|plan| {
                let (config, meter) = (&config, Arc::clone(meter));
                s.spawn(move || producer::run(config, plan, meter, flush))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(CliError::Kafka("a producer thread panicked".into())))
            })
            .collect()
    });
    results.into_iter().collect()
}

fn produce(args: &BenchArgs) -> Result<Summary, CliError> {
    args.validate()?;
    ensure_topic(args)?;
    let meter = Arc::new(Meter::default());
    meter.set_warmup_records(args.warmup_records);
    let plans = args.producer_plans(false);
    let started = Instant::now();
    let progress = Progress::start("produce", Arc::clone(&meter), args.interval(), args.goal());
    run_producers(args, plans, &meter)?;
    drop(progress);
    Ok(Summary::of("produce", &meter, started.elapsed()))
}

/// Splits partitions round-robin over the consumer threads.
fn assignments(args: &BenchArgs, starts: &[(i32, Offset)], stamped: bool) -> Vec<Assignment> {
    let n = args.consumers.min(starts.len()).max(1);
    (0..n)
        .map(|i| Assignment {
            topic: args.topic.clone(),
            partitions: starts.iter().skip(i).step_by(n).copied().collect(),
            stamped,
        })
        .collect()
}

/// Starts consumer threads; they run until `stop` is set.
fn spawn_consumers(
    args: &BenchArgs,
    assignments: Vec<Assignment>,
    meter: &Arc<Meter>,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<std::thread::JoinHandle<Result<(), CliError>>>, CliError> {
    let config = args.consumer_config()?;
    Ok(assignments
        .into_iter()
        .map(|a| {
            let (config, meter, stop) = (config.clone(), Arc::clone(meter), Arc::clone(stop));
            std::thread::spawn(move || consumer::run(&config, &a, meter, stop))
        })
        .collect())
}

fn join_all(handles: Vec<std::thread::JoinHandle<Result<(), CliError>>>) -> Result<(), CliError> {
    for h in handles {
        h.join()
            .unwrap_or_else(|_| Err(CliError::Kafka("a consumer thread panicked".into())))?;
    }
    Ok(())
}

/// Waits until `done` holds, no record has arrived for the client timeout, or the run's
/// deadline passes. Returns when the last record arrived.
fn wait_consumed(
    meter: &Meter,
    timeout: Duration,
    deadline: Option<Instant>,
    done: impl Fn(u64) -> bool,
) -> Instant {
    let mut last = (meter.records(), Instant::now());
    loop {
        let records = meter.records();
        if records != last.0 {
            last = (records, Instant::now());
        }
        if done(records)
            || last.1.elapsed() >= timeout
            || deadline.is_some_and(|d| Instant::now() >= d)
        {
            return last.1;
        }
        // Polling the shared counter, not synchronization.
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Low and high watermarks of every partition.
fn watermarks(args: &BenchArgs, partitions: &[i32]) -> Result<Vec<(i32, i64, i64)>, CliError> {
    let consumer: BaseConsumer = args.consumer_config()?.create()?;
    partitions
        .iter()
        .map(|p| {
            let (lo, hi) = consumer.fetch_watermarks(&args.topic, *p, args.connect.timeout())?;
            Ok((*p, lo, hi))
        })
        .collect()
}

fn consume(args: &BenchArgs) -> Result<Summary, CliError> {
    args.validate()?;
    let partitions = ensure_topic(args)?;
    let marks = watermarks(args, &partitions)?;
    let available: u64 = marks
        .iter()
        .map(|(_, lo, hi)| (hi - lo).max(0) as u64)
        .sum();
    let target = args.num_records.unwrap_or(available);
    let starts: Vec<(i32, Offset)> = marks
        .iter()
        .map(|(p, _, _)| (*p, Offset::Beginning))
        .collect();
    let meter = Arc::new(Meter::default());
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    let started = Instant::now();
    let goal = match args.duration {
        Some(d) => Goal::Time(Duration::from_secs_f64(d)),
        None => Goal::Records(target),
    };
    let progress = Progress::start("consume", Arc::clone(&meter), args.interval(), goal);
    let handles = spawn_consumers(args, assignments(args, &starts, false), &meter, &stop)?;
    let last = wait_consumed(&meter, args.connect.timeout(), deadline, |r| {
        target > 0 && r >= target
    });
    stop.store(true, Ordering::Relaxed);
    join_all(handles)?;
    drop(progress);
    Ok(Summary::of("consume", &meter, last.duration_since(started)))
}

fn e2e(args: &BenchArgs) -> Result<Vec<Summary>, CliError> {
    args.validate()?;
    if args.record_size < 8 {
        return Err(CliError::Usage(
            "e2e needs --record-size of at least 8 (the send time travels in the value)".into(),
        ));
    }
    let partitions = ensure_topic(args)?;
    // Consumers start at today's end, so they see exactly what this run produces.
    let starts: Vec<(i32, Offset)> = watermarks(args, &partitions)?
        .iter()
        .map(|(p, _, hi)| (*p, Offset::Offset(*hi)))
        .collect();
    let produced = Arc::new(Meter::default());
    let consumed = Arc::new(Meter::default());
    let stop = Arc::new(AtomicBool::new(false));
    let handles = spawn_consumers(args, assignments(args, &starts, true), &consumed, &stop)?;
    let started = Instant::now();
    let progress = Progress::start("e2e", Arc::clone(&consumed), args.interval(), args.goal());
    let result = run_producers(args, args.producer_plans(true), &produced);
    let produce_elapsed = started.elapsed();
    let target = produced.records();
    let last = wait_consumed(&consumed, args.connect.timeout(), None, |r| r >= target);
    stop.store(true, Ordering::Relaxed);
    let joined = join_all(handles);
    drop(progress);
    result?;
    joined?;
    if consumed.records() < target {
        consumed.error();
        eprintln!(
            "only {} of {} acknowledged records arrived at the consumers",
            consumed.records(),
            target
        );
    }
    Ok(vec![
        Summary::of("produce", &produced, produce_elapsed),
        Summary::of("e2e", &consumed, last.duration_since(started)),
    ])
}
