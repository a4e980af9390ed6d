//! The Kafka config properties Fjord understands, with Kafka's names and defaults.

/// Kafka's `ConfigType` values (DescribeConfigs v3+).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
}

/// How a value is checked beyond its type.
#[derive(Clone, Copy, Debug)]
pub enum Check {
    Any,
    /// Inclusive integer range.
    Range(i64, i64),
    /// Inclusive floating point range.
    DoubleRange(f64, f64),
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A comma-separated list whose items are each one of these strings.
    ListOf(&'static [&'static str]),
}

#[derive(Clone, Copy, Debug)]
pub struct ConfigDef {
    pub name: &'static str,
    pub ty: ConfigType,
    pub default: &'static str,
    pub check: Check,
    pub doc: &'static str,
}

/// A topic config and the broker properties that supply its default, in priority order,
/// each with the factor that converts its unit into the topic config's unit.
#[derive(Clone, Copy, Debug)]
pub struct TopicConfigDef {
    pub def: ConfigDef,
    pub broker_synonyms: &'static [(&'static str, i64)],
}

/// A broker config; `dynamic` ones may be changed at runtime through AlterConfigs.
#[derive(Clone, Copy, Debug)]
pub struct BrokerConfigDef {
    pub def: ConfigDef,
    pub dynamic: bool,
}

const LONG_MAX: &str = "9223372036854775807";
const I64: (i64, i64) = (i64::MIN, i64::MAX);

const fn def(
    name: &'static str,
    ty: ConfigType,
    default: &'static str,
    check: Check,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        ty,
        default,
        check,
        doc,
    }
}

const fn topic(d: ConfigDef, broker_synonyms: &'static [(&'static str, i64)]) -> TopicConfigDef {
    TopicConfigDef {
        def: d,
        broker_synonyms,
    }
}

pub const CLEANUP_POLICIES: &[&str] = &["delete", "compact"];
/// Kafka's `compression.type` values.
pub const COMPRESSION_TYPES: &[&str] =
    &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];
pub const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];

pub static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    topic(def("cleanup.policy", ConfigType::List, "delete", Check::ListOf(CLEANUP_POLICIES),
        "Retention policy for old log segments: delete them, compact them by key, or both."),
        &[("log.cleanup.policy", 1)]),
    topic(def("compression.type", ConfigType::String, "producer", Check::OneOf(COMPRESSION_TYPES),
        "Codec of stored batches: 'producer' keeps each batch as the producer compressed it; a codec name makes the leader recompress batches sent with any other codec."),
        &[("compression.type", 1)]),
    topic(def("compression.gzip.level", ConfigType::Int, "-1", Check::Range(-1, 9),
        "Level of broker-side gzip compression (-1: the codec's default, 6)."),
        &[("compression.gzip.level", 1)]),
    topic(def("compression.lz4.level", ConfigType::Int, "9", Check::Range(1, 17),
        "Level of broker-side lz4 compression."),
        &[("compression.lz4.level", 1)]),
    topic(def("compression.zstd.level", ConfigType::Int, "3", Check::Range(-131072, 22),
        "Level of broker-side zstd compression."),
        &[("compression.zstd.level", 1)]),
    topic(def("delete.retention.ms", ConfigType::Long, "86400000", Check::Range(0, i64::MAX),
        "How long delete tombstones are kept for compacted topics."),
        &[("log.cleaner.delete.retention.ms", 1)]),
    topic(def("file.delete.delay.ms", ConfigType::Long, "60000", Check::Range(0, i64::MAX),
        "Time to wait before deleting a file from the filesystem."),
        &[("log.segment.delete.delay.ms", 1)]),
    topic(def("flush.messages", ConfigType::Long, LONG_MAX, Check::Range(1, i64::MAX),
        "fsync the log after this many records have been appended."),
        &[("log.flush.interval.messages", 1)]),
    topic(def("flush.ms", ConfigType::Long, LONG_MAX, Check::Range(0, i64::MAX),
        "fsync the log when the oldest unflushed record is this old."),
        &[("log.flush.interval.ms", 1)]),
    topic(def("index.interval.bytes", ConfigType::Int, "4096", Check::Range(0, i32::MAX as i64),
        "Bytes of log between two entries of the sparse offset index."),
        &[("log.index.interval.bytes", 1)]),
    topic(def("max.compaction.lag.ms", ConfigType::Long, LONG_MAX, Check::Range(1, i64::MAX),
        "Longest time a record may stay uncompacted."),
        &[("log.cleaner.max.compaction.lag.ms", 1)]),
    topic(def("max.message.bytes", ConfigType::Int, "1048588", Check::Range(0, i32::MAX as i64),
        "Largest record batch the topic accepts."),
        &[("message.max.bytes", 1)]),
    topic(def("message.timestamp.after.max.ms", ConfigType::Long, LONG_MAX, Check::Range(0, i64::MAX),
        "How far in the future a CreateTime timestamp may be."),
        &[("log.message.timestamp.after.max.ms", 1)]),
    topic(def("message.timestamp.before.max.ms", ConfigType::Long, LONG_MAX, Check::Range(0, i64::MAX),
        "How far in the past a CreateTime timestamp may be."),
        &[("log.message.timestamp.before.max.ms", 1)]),
    topic(def("message.timestamp.type", ConfigType::String, "CreateTime", Check::OneOf(TIMESTAMP_TYPES),
        "Whether record timestamps are the producer's (CreateTime) or the broker's (LogAppendTime)."),
        &[("log.message.timestamp.type", 1)]),
    topic(def("min.cleanable.dirty.ratio", ConfigType::Double, "0.5", Check::DoubleRange(0.0, 1.0),
        "Share of the log that must be uncompacted before compaction runs."),
        &[("log.cleaner.min.cleanable.ratio", 1)]),
    topic(def("min.compaction.lag.ms", ConfigType::Long, "0", Check::Range(0, i64::MAX),
        "Shortest time a record stays uncompacted."),
        &[("log.cleaner.min.compaction.lag.ms", 1)]),
    topic(def("min.insync.replicas", ConfigType::Int, "1", Check::Range(1, i32::MAX as i64),
        "Replicas that must acknowledge an acks=all write."),
        &[("min.insync.replicas", 1)]),
    topic(def("preallocate", ConfigType::Boolean, "false", Check::Any,
        "Preallocate segment files (accepted for compatibility; Fjord does not preallocate)."),
        &[("log.preallocate", 1)]),
    topic(def("retention.bytes", ConfigType::Long, "-1", Check::Range(-1, i64::MAX),
        "Delete old segments while a partition is larger than this; -1 for no limit."),
        &[("log.retention.bytes", 1)]),
    topic(def("retention.ms", ConfigType::Long, "604800000", Check::Range(-1, i64::MAX),
        "Delete segments whose newest record is older than this; -1 keeps them forever."),
        &[("log.retention.ms", 1), ("log.retention.minutes", 60_000), ("log.retention.hours", 3_600_000)]),
    topic(def("segment.bytes", ConfigType::Int, "1073741824", Check::Range(14, i32::MAX as i64),
        "Roll a new segment once the active one would grow past this size."),
        &[("log.segment.bytes", 1)]),
    topic(def("segment.index.bytes", ConfigType::Int, "10485760", Check::Range(4, i32::MAX as i64),
        "Roll a new segment once its offset index reaches this size."),
        &[("log.index.size.max.bytes", 1)]),
    topic(def("segment.jitter.ms", ConfigType::Long, "0", Check::Range(0, i64::MAX),
        "Accepted for compatibility; Fjord rolls by segment.ms without jitter."),
        &[("log.roll.jitter.ms", 1), ("log.roll.jitter.hours", 3_600_000)]),
    topic(def("segment.ms", ConfigType::Long, "604800000", Check::Range(1, i64::MAX),
        "Roll a new segment once the active one is this old."),
        &[("log.roll.ms", 1), ("log.roll.hours", 3_600_000)]),
    topic(def("unclean.leader.election.enable", ConfigType::Boolean, "false", Check::Any,
        "Allow a replica outside the ISR to become leader, at the cost of data loss."),
        &[("unclean.leader.election.enable", 1)]),
];

const fn broker(d: ConfigDef, dynamic: bool) -> BrokerConfigDef {
    BrokerConfigDef { def: d, dynamic }
}

pub static BROKER_CONFIGS: &[BrokerConfigDef] = &[
    broker(def("node.id", ConfigType::Int, "1", Check::Range(0, i32::MAX as i64), "This node's id."), false),
    broker(def("broker.rack", ConfigType::String, "", Check::Any, "Rack (zone) of this broker, for rack-aware placement."), false),
    broker(def("process.roles", ConfigType::List, "broker,controller", Check::ListOf(&["broker", "controller"]), "Every Fjord node is both a broker and a Raft voter or learner."), false),
    broker(def("listeners", ConfigType::String, "PLAINTEXT://127.0.0.1:9092", Check::Any, "Kafka listeners, NAME://host:port,... (flag --listeners)."), false),
    broker(def("advertised.listeners", ConfigType::String, "", Check::Any, "Addresses clients are told to use (flag --advertised-listeners); unset means the listeners."), false),
    broker(def("listener.security.protocol.map", ConfigType::String, "", Check::Any, "Listener name to security protocol, NAME:PROTOCOL,...; unset means each name is its protocol."), false),
    broker(def("controller.quorum.voters", ConfigType::List, "", Check::Any, "Every voter's RPC address, ID@host:port,... (flag --voters); unset means this node alone."), false),
    broker(def("log.dirs", ConfigType::String, "./fjord-data", Check::Any, "The data directory (flag --data-dir); partition logs live under its logs/ folder."), false),
    broker(def("num.partitions", ConfigType::Int, "1", Check::Range(1, i32::MAX as i64), "Partitions of an auto-created topic or a CreateTopics without a count."), false),
    broker(def("default.replication.factor", ConfigType::Short, "1", Check::Range(1, i16::MAX as i64), "Replication factor used when a request does not give one."), false),
    broker(def("auto.create.topics.enable", ConfigType::Boolean, "true", Check::Any, "Create a topic when a client asks for its metadata."), false),
    broker(def("delete.topic.enable", ConfigType::Boolean, "true", Check::Any, "Allow DeleteTopics."), false),
    broker(def("fetch.max.bytes", ConfigType::Int, "57671680", Check::Range(1024, i32::MAX as i64), "Most bytes one Fetch answer holds, whatever the request asks (at least one batch is returned)."), false),
    broker(def("socket.request.max.bytes", ConfigType::Int, "104857600", Check::Range(1, i32::MAX as i64), "Largest request frame accepted; larger ones close the connection."), false),
    broker(def("max.partitions.per.broker", ConfigType::Long, "4000", Check::Range(1, i64::MAX), "Fjord: partition replicas one broker may host. CreateTopics and CreatePartitions that would put more on any broker fail with POLICY_VIOLATION (one request may also add at most 10000 partitions, as in Kafka)."), true),
    broker(def("quota.window.num", ConfigType::Int, "11", Check::Range(2, i32::MAX as i64), "Windows over which client quota rates are measured."), false),
    broker(def("quota.window.size.seconds", ConfigType::Int, "1", Check::Range(1, i32::MAX as i64), "Length of one client quota window."), false),
    broker(def("queued.max.request.bytes", ConfigType::Long, "104857600", Check::Range(-1, u32::MAX as i64), "Memory for request frames read and not yet handled, node-wide. Frames are charged at what they may cost once decoded (Produce: about their size; other APIs: 160 times it, so those may be at most a 160th of this); a connection whose frame does not fit waits with its socket unread. Kafka's default is unbounded (-1, which Fjord takes as 4 GiB)."), false),
    broker(def("connections.max.idle.ms", ConfigType::Long, "600000", Check::Range(-1, i64::MAX), "Close a connection that has read and written nothing for this long (-1: never)."), false),
    broker(def("connection.failed.authentication.delay.ms", ConfigType::Int, "100", Check::Range(0, i32::MAX as i64), "How long a failed authentication's answer and close are held back (KIP-306), to slow password guessing."), false),
    broker(def("max.connections", ConfigType::Int, "2147483647", Check::Range(0, i32::MAX as i64), "Connections the node serves at once over all Kafka listeners; at the limit, listeners accept no more until one closes (KIP-402). Fjord also stops at three quarters of the open-files limit, so the logs keep their files."), true),
    broker(def("max.connections.per.ip", ConfigType::Int, "2147483647", Check::Range(0, i32::MAX as i64), "Connections one client address may hold; more are closed at once."), true),
    broker(def("max.connections.per.ip.overrides", ConfigType::String, "", Check::Any, "Per-address exceptions to max.connections.per.ip: ip:count,... (Fjord takes addresses, not host names)."), true),
    broker(def("max.connection.creation.rate", ConfigType::Int, "2147483647", Check::Range(0, i32::MAX as i64), "New connections per second each listener accepts (KIP-612); faster ones wait in the kernel's backlog."), true),
    broker(def("queued.max.response.bytes", ConfigType::Long, "104857600", Check::Range(1, i64::MAX), "Fjord: record bytes held by Fetch answers not yet written to their sockets, node-wide. A fetch reads at most what is left (plus its first batch), so clients that never read their answers cannot pin more."), false),
    broker(def("message.max.bytes", ConfigType::Int, "1048588", Check::Range(0, i32::MAX as i64), "Default max.message.bytes of topics."), true),
    broker(def("min.insync.replicas", ConfigType::Int, "1", Check::Range(1, i32::MAX as i64), "Default min.insync.replicas of topics."), true),
    broker(def("compression.type", ConfigType::String, "producer", Check::OneOf(COMPRESSION_TYPES), "Default compression.type of topics."), true),
    broker(def("compression.gzip.level", ConfigType::Int, "-1", Check::Range(-1, 9), "Default compression.gzip.level of topics."), true),
    broker(def("compression.lz4.level", ConfigType::Int, "9", Check::Range(1, 17), "Default compression.lz4.level of topics."), true),
    broker(def("compression.zstd.level", ConfigType::Int, "3", Check::Range(-131072, 22), "Default compression.zstd.level of topics."), true),
    broker(def("unclean.leader.election.enable", ConfigType::Boolean, "false", Check::Any, "Default unclean.leader.election.enable of topics."), true),
    broker(def("log.cleanup.policy", ConfigType::List, "delete", Check::ListOf(CLEANUP_POLICIES), "Default cleanup.policy of topics."), true),
    broker(def("log.retention.ms", ConfigType::Long, "", Check::Range(-1, i64::MAX), "Default retention.ms of topics; overrides log.retention.minutes/hours."), true),
    broker(def("log.retention.minutes", ConfigType::Int, "", Check::Range(-1, i32::MAX as i64), "Default retention of topics in minutes."), false),
    broker(def("log.retention.hours", ConfigType::Int, "168", Check::Range(-1, i32::MAX as i64), "Default retention of topics in hours."), false),
    broker(def("log.retention.bytes", ConfigType::Long, "-1", Check::Range(-1, i64::MAX), "Default retention.bytes of topics."), true),
    broker(def("log.retention.check.interval.ms", ConfigType::Long, "300000", Check::Range(1, i64::MAX), "How often retention is applied."), false),
    broker(def("log.segment.bytes", ConfigType::Int, "1073741824", Check::Range(14, i32::MAX as i64), "Default segment.bytes of topics."), true),
    broker(def("log.roll.ms", ConfigType::Long, "", Check::Range(1, i64::MAX), "Default segment.ms of topics; overrides log.roll.hours."), true),
    broker(def("log.roll.hours", ConfigType::Int, "168", Check::Range(1, i32::MAX as i64), "Default segment rolling time in hours."), false),
    broker(def("log.roll.jitter.ms", ConfigType::Long, "", Check::Range(0, i64::MAX), "Default segment.jitter.ms of topics."), true),
    broker(def("log.roll.jitter.hours", ConfigType::Int, "0", Check::Range(0, i32::MAX as i64), "Default segment jitter in hours."), false),
    broker(def("log.index.size.max.bytes", ConfigType::Int, "10485760", Check::Range(4, i32::MAX as i64), "Default segment.index.bytes of topics."), true),
    broker(def("log.index.interval.bytes", ConfigType::Int, "4096", Check::Range(0, i32::MAX as i64), "Default index.interval.bytes of topics."), true),
    broker(def("log.flush.interval.messages", ConfigType::Long, LONG_MAX, Check::Range(1, i64::MAX), "Default flush.messages of topics."), true),
    broker(def("log.flush.interval.ms", ConfigType::Long, "", Check::Range(0, i64::MAX), "Default flush.ms of topics."), true),
    broker(def("log.flush.scheduler.interval.ms", ConfigType::Long, "1000", Check::Range(1, i64::MAX), "How often logs are checked against flush.ms."), false),
    broker(def("replica.high.watermark.checkpoint.interval.ms", ConfigType::Long, "5000", Check::Range(1, i64::MAX), "How often each partition's high watermark is written to disk."), false),
    broker(def("log.message.timestamp.type", ConfigType::String, "CreateTime", Check::OneOf(TIMESTAMP_TYPES), "Default message.timestamp.type of topics."), true),
    broker(def("log.message.timestamp.before.max.ms", ConfigType::Long, LONG_MAX, Check::Range(0, i64::MAX), "Default message.timestamp.before.max.ms of topics."), true),
    broker(def("log.message.timestamp.after.max.ms", ConfigType::Long, LONG_MAX, Check::Range(0, i64::MAX), "Default message.timestamp.after.max.ms of topics."), true),
    broker(def("log.preallocate", ConfigType::Boolean, "false", Check::Any, "Default preallocate of topics."), true),
    broker(def("log.segment.delete.delay.ms", ConfigType::Long, "60000", Check::Range(0, i64::MAX), "Default file.delete.delay.ms of topics."), true),
    broker(def("log.cleaner.delete.retention.ms", ConfigType::Long, "86400000", Check::Range(0, i64::MAX), "Default delete.retention.ms of topics."), true),
    broker(def("log.cleaner.min.compaction.lag.ms", ConfigType::Long, "0", Check::Range(0, i64::MAX), "Default min.compaction.lag.ms of topics."), true),
    broker(def("log.cleaner.max.compaction.lag.ms", ConfigType::Long, LONG_MAX, Check::Range(1, i64::MAX), "Default max.compaction.lag.ms of topics."), true),
    broker(def("log.cleaner.enable", ConfigType::Boolean, "true", Check::Any, "Run the log cleaner, which compacts topics with cleanup.policy=compact."), false),
    broker(def("log.cleaner.backoff.ms", ConfigType::Long, "15000", Check::Range(0, i64::MAX), "How long the cleaner rests when no log needs compacting."), true),
    broker(def("log.cleaner.io.max.bytes.per.second", ConfigType::Double, "104857600", Check::DoubleRange(0.0, f64::MAX), "The cleaner's read plus write budget. Kafka leaves it unlimited; Fjord bounds it (100 MiB/s) so compaction cannot starve producers."), true),
    broker(def("log.cleaner.dedupe.buffer.size", ConfigType::Long, "134217728", Check::Range(1, i64::MAX), "Memory for the key index of one compaction pass (24 bytes per key)."), true),
    broker(def("log.cleaner.min.cleanable.ratio", ConfigType::Double, "0.5", Check::DoubleRange(0.0, 1.0), "Default min.cleanable.dirty.ratio of topics."), true),
    broker(def("producer.id.expiration.ms", ConfigType::Int, "86400000", Check::Range(1, i32::MAX as i64), "Forget an idle idempotent producer's sequence state after this long."), true),
    broker(def("fsync.before.ack", ConfigType::Boolean, "false", Check::Any, "Fjord: fsync every append before acknowledging it (stronger than Kafka's default, slower)."), false),
    broker(def("replica.lag.time.max.ms", ConfigType::Long, "30000", Check::Range(1, i64::MAX), "A follower that has not caught up with the leader for this long leaves the ISR."), false),
    broker(def("replica.fetch.max.bytes", ConfigType::Int, "1048576", Check::Range(0, i32::MAX as i64), "Bytes a follower fetches per partition per request."), false),
    broker(def("replica.fetch.response.max.bytes", ConfigType::Int, "10485760", Check::Range(0, i32::MAX as i64), "Bytes a follower fetches per request in all."), false),
    broker(def("num.replica.fetchers", ConfigType::Int, "1", Check::Range(1, 64), "Fetch streams a follower opens to each leader; partitions are spread over them (one partition always on the same stream)."), false),
    broker(def("replica.fetch.wait.max.ms", ConfigType::Int, "500", Check::Range(0, i32::MAX as i64), "How long a leader holds a follower fetch when there is nothing new."), false),
    broker(def("leader.replication.throttled.rate", ConfigType::Long, LONG_MAX, Check::Range(0, i64::MAX), "Bytes per second a leader sends to the replicas a reassignment is adding (Kafka applies it to leader.replication.throttled.replicas; Fjord to exactly the adding replicas). Unlimited by default."), true),
    broker(def("auto.balance.enable", ConfigType::Boolean, "false", Check::Any, "Fjord: the controller moves replicas onto brokers that join, and off brokers fenced longer than auto.balance.grace.ms, in small steps."), false),
    broker(def("auto.balance.grace.ms", ConfigType::Long, "600000", Check::Range(0, i64::MAX), "Fjord: how long a broker may stay fenced before automatic balancing moves its replicas away."), false),
    broker(def("replica.selector.class", ConfigType::String, "", Check::Any, "Set to org.apache.kafka.common.replica.RackAwareReplicaSelector to let consumers with client.rack read from an in-sync follower in their rack (KIP-392)."), false),
    broker(def("auto.leader.rebalance.enable", ConfigType::Boolean, "true", Check::Any, "Move leadership back to each partition's preferred (first) replica when it is in sync."), false),
    broker(def("leader.imbalance.check.interval.seconds", ConfigType::Long, "300", Check::Range(1, i64::MAX), "How often the controller checks leader balance."), false),
    broker(def("leader.imbalance.per.broker.percentage", ConfigType::Int, "10", Check::Range(0, 100), "Share of a broker's preferred partitions it may not lead before leadership is moved back."), false),
    broker(def("broker.session.timeout.ms",
 ConfigType::Int, "9000", Check::Range(100, i32::MAX as i64), "A broker that has not heartbeated for this long is fenced and its partitions get new leaders."), false),
    broker(def("broker.session.disconnect.grace.ms", ConfigType::Int, "500", Check::Range(-1, i32::MAX as i64), "Fjord: a broker whose connections to the controllers all closed (its process died) and that is not back within this is fenced at once, without waiting out broker.session.timeout.ms. -1 turns this off."), false),
    broker(def("broker.heartbeat.interval.ms", ConfigType::Int, "2000", Check::Range(10, i32::MAX as i64), "How often a broker heartbeats to the active controller."), false),
    broker(def("controller.quorum.election.timeout.ms", ConfigType::Int, "1000", Check::Range(50, i32::MAX as i64), "Lower bound of the Raft election timeout."), false),
    broker(def("offsets.topic.num.partitions", ConfigType::Int, "50", Check::Range(1, i32::MAX as i64), "Partitions of __consumer_offsets, fixed when it is created on first use."), false),
    broker(def("offsets.topic.replication.factor", ConfigType::Short, "3", Check::Range(1, i16::MAX as i64), "Replication factor of __consumer_offsets, capped by the number of brokers when it is created."), false),
    broker(def("offsets.topic.segment.bytes", ConfigType::Int, "104857600", Check::Range(1, i32::MAX as i64), "segment.bytes of __consumer_offsets, kept small so compaction has closed segments to clean."), false),
    broker(def("offsets.retention.minutes", ConfigType::Int, "10080", Check::Range(1, i32::MAX as i64), "How long the offsets of an empty group are kept."), false),
    broker(def("offsets.retention.check.interval.ms", ConfigType::Long, "600000", Check::Range(1, i64::MAX), "How often expired offsets are removed."), false),
    broker(def("offsets.commit.timeout.ms", ConfigType::Int, "5000", Check::Range(1, i32::MAX as i64), "How long an offset commit waits for the offsets topic replicas before failing."), false),
    broker(def("offset.metadata.max.bytes", ConfigType::Int, "4096", Check::Range(0, i32::MAX as i64), "Largest metadata string accepted with a committed offset."), false),
    broker(def("group.min.session.timeout.ms", ConfigType::Int, "6000", Check::Range(0, i32::MAX as i64), "Smallest session.timeout.ms a consumer may ask for."), false),
    broker(def("group.max.session.timeout.ms", ConfigType::Int, "1800000", Check::Range(0, i32::MAX as i64), "Largest session.timeout.ms a consumer may ask for."), false),
    broker(def("group.initial.rebalance.delay.ms", ConfigType::Int, "3000", Check::Range(0, i32::MAX as i64), "How long a new group waits for more members before its first generation."), false),
    broker(def("group.max.size", ConfigType::Int, "2147483647", Check::Range(1, i32::MAX as i64), "Most members one group may have."), false),
    broker(def("group.consumer.session.timeout.ms", ConfigType::Int, "45000", Check::Range(1, i32::MAX as i64), "How long a member of a KIP-848 consumer group (group.protocol=consumer) may go without a heartbeat before it is removed."), false),
    broker(def("group.consumer.heartbeat.interval.ms", ConfigType::Int, "5000", Check::Range(1, i32::MAX as i64), "How often members of a KIP-848 consumer group are told to heartbeat; they learn of a new assignment at their next heartbeat."), false),
    broker(def("group.consumer.max.size", ConfigType::Int, "2147483647", Check::Range(1, i32::MAX as i64), "Most members one KIP-848 consumer group may have."), false),
    broker(def("group.consumer.min.session.timeout.ms", ConfigType::Int, "45000", Check::Range(1, i32::MAX as i64), "Smallest consumer.session.timeout.ms a group config may set."), false),
    broker(def("group.consumer.max.session.timeout.ms", ConfigType::Int, "60000", Check::Range(1, i32::MAX as i64), "Largest consumer.session.timeout.ms a group config may set."), false),
    broker(def("group.consumer.min.heartbeat.interval.ms", ConfigType::Int, "5000", Check::Range(1, i32::MAX as i64), "Smallest consumer.heartbeat.interval.ms a group config may set."), false),
    broker(def("group.consumer.max.heartbeat.interval.ms", ConfigType::Int, "15000", Check::Range(1, i32::MAX as i64), "Largest consumer.heartbeat.interval.ms a group config may set."), false),
    broker(def("group.share.session.timeout.ms", ConfigType::Int, "45000", Check::Range(1, i32::MAX as i64), "How long a share group member may go without a heartbeat (default of the share.session.timeout.ms group config)."), false),
    broker(def("group.share.min.session.timeout.ms", ConfigType::Int, "45000", Check::Range(1, i32::MAX as i64), "Smallest share.session.timeout.ms a group config may set."), false),
    broker(def("group.share.max.session.timeout.ms", ConfigType::Int, "60000", Check::Range(1, i32::MAX as i64), "Largest share.session.timeout.ms a group config may set."), false),
    broker(def("group.share.heartbeat.interval.ms", ConfigType::Int, "5000", Check::Range(1, i32::MAX as i64), "How often share group members heartbeat (default of the share.heartbeat.interval.ms group config)."), false),
    broker(def("group.share.min.heartbeat.interval.ms", ConfigType::Int, "5000", Check::Range(1, i32::MAX as i64), "Smallest share.heartbeat.interval.ms a group config may set."), false),
    broker(def("group.share.max.heartbeat.interval.ms", ConfigType::Int, "15000", Check::Range(1, i32::MAX as i64), "Largest share.heartbeat.interval.ms a group config may set."), false),
    broker(def("group.share.record.lock.duration.ms", ConfigType::Int, "30000", Check::Range(1, i32::MAX as i64), "How long a share consumer holds a record before it is offered again (default of the share.record.lock.duration.ms group config)."), false),
    broker(def("group.share.min.record.lock.duration.ms", ConfigType::Int, "15000", Check::Range(1, i32::MAX as i64), "Smallest share.record.lock.duration.ms a group config may set."), false),
    broker(def("group.share.max.record.lock.duration.ms", ConfigType::Int, "60000", Check::Range(1, i32::MAX as i64), "Largest share.record.lock.duration.ms a group config may set."), false),
    broker(def("group.share.max.size", ConfigType::Short, "200", Check::Range(10, 1000), "Most members one share group may have."), false),
    broker(def("group.share.delivery.count.limit", ConfigType::Int, "5", Check::Range(2, 10), "How often a share group may be handed a record before it is archived."), false),
    broker(def("group.share.partition.max.record.locks", ConfigType::Int, "2000", Check::Range(100, 10000), "Most records of one share-partition that may be in flight (acquired or awaiting redelivery) at once."), false),
    broker(def("group.share.max.share.sessions", ConfigType::Int, "2000", Check::Range(1, i32::MAX as i64), "Most share sessions (one per share group member fetching here) a broker keeps; more get SHARE_SESSION_LIMIT_REACHED."), false),
    broker(def("transaction.state.log.num.partitions", ConfigType::Int, "50", Check::Range(1, i32::MAX as i64), "Partitions of __transaction_state, fixed when it is created on first use."), false),
    broker(def("transaction.state.log.replication.factor", ConfigType::Short, "3", Check::Range(1, i16::MAX as i64), "Replication factor of __transaction_state, capped by the number of brokers when it is created."), false),
    broker(def("transaction.state.log.min.isr", ConfigType::Int, "2", Check::Range(1, i32::MAX as i64), "min.insync.replicas of __transaction_state (capped by its replication factor)."), false),
    broker(def("transaction.state.log.segment.bytes", ConfigType::Int, "104857600", Check::Range(1, i32::MAX as i64), "segment.bytes of __transaction_state."), false),
    broker(def("share.coordinator.state.topic.num.partitions", ConfigType::Int, "50", Check::Range(1, i32::MAX as i64), "Partitions of __share_group_state, fixed when it is created on first use."), false),
    broker(def("share.coordinator.state.topic.replication.factor", ConfigType::Short, "3", Check::Range(1, i16::MAX as i64), "Replication factor of __share_group_state, capped by the number of brokers when it is created."), false),
    broker(def("share.coordinator.state.topic.min.isr", ConfigType::Int, "2", Check::Range(1, i32::MAX as i64), "min.insync.replicas of __share_group_state (capped by its replication factor)."), false),
    broker(def("share.coordinator.state.topic.segment.bytes", ConfigType::Int, "104857600", Check::Range(1, i32::MAX as i64), "segment.bytes of __share_group_state."), false),
    broker(def("transaction.max.timeout.ms", ConfigType::Int, "900000", Check::Range(1, i32::MAX as i64), "Largest transaction.timeout.ms a producer may ask for."), false),
    broker(def("transaction.abort.timed.out.transaction.cleanup.interval.ms", ConfigType::Int, "10000", Check::Range(1, i32::MAX as i64), "How often the coordinator looks for transactions past their timeout and aborts them."), false),
    broker(def("transactional.id.expiration.ms", ConfigType::Int, "604800000", Check::Range(1, i32::MAX as i64), "How long an idle transactional id is remembered."), false),
    // Kafka's SASL/GSSAPI settings, dynamic in Kafka: accepted so Kafka's tools can set
    // and read them, with no effect, since Fjord has no Kerberos (GSSAPI) mechanism.
    broker(def("sasl.kerberos.service.name", ConfigType::String, "", Check::Any, "Kafka's Kerberos service name. Fjord has no GSSAPI mechanism: accepted for Kafka's tools, no effect."), true),
    broker(def("sasl.kerberos.kinit.cmd", ConfigType::String, "/usr/bin/kinit", Check::Any, "Kafka's Kerberos kinit command. Fjord has no GSSAPI mechanism: accepted for Kafka's tools, no effect."), true),
    broker(def("sasl.kerberos.min.time.before.relogin", ConfigType::Long, "60000", Check::Range(0, i64::MAX), "Kafka's Kerberos relogin sleep. Fjord has no GSSAPI mechanism: accepted for Kafka's tools, no effect."), true),
    broker(def("sasl.kerberos.ticket.renew.jitter", ConfigType::Double, "0.05", Check::DoubleRange(0.0, f64::MAX), "Kafka's Kerberos ticket renewal jitter. Fjord has no GSSAPI mechanism: accepted for Kafka's tools, no effect."), true),
    broker(def("sasl.kerberos.ticket.renew.window.factor", ConfigType::Double, "0.8", Check::DoubleRange(0.0, f64::MAX), "Kafka's Kerberos ticket renewal window. Fjord has no GSSAPI mechanism: accepted for Kafka's tools, no effect."), true),
    broker(def("controller.quorum.request.timeout.ms", ConfigType::Int, "30000", Check::Range(100, i32::MAX as i64), "How long a metadata write may wait for the quorum."), false),
];

pub fn topic_def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.def.name == name)
}

pub fn broker_def(name: &str) -> Option<&'static BrokerConfigDef> {
    BROKER_CONFIGS.iter().find(|d| d.def.name == name)
}

/// Checks `value` against `def`'s type and constraint; the error is a sentence for the
/// client.
pub fn validate(def: &ConfigDef, value: &str) -> Result<(), String> {
    let bad = |why: String| {
        Err(format!(
            "Invalid value {value} for configuration {}: {why}",
            def.name
        ))
    };
    if def.name == "max.connections.per.ip.overrides" {
        crate::quota::connections::parse_overrides(value)
            .map_err(|e| format!("Invalid value {value} for configuration {}: {e}", def.name))?;
    }
    match def.ty {
        ConfigType::Boolean => {
            if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") {
                return bad("Expected value to be either true or false".into());
            }
        }
        ConfigType::Int | ConfigType::Short | ConfigType::Long => {
            let (lo, hi) = match def.ty {
                ConfigType::Short => (i64::from(i16::MIN), i64::from(i16::MAX)),
                ConfigType::Int => (i64::from(i32::MIN), i64::from(i32::MAX)),
                _ => I64,
            };
            let Ok(n) = value.trim().parse::<i64>() else {
                return bad("Not a number of type INT/LONG".into());
            };
            if n < lo || n > hi {
                return bad("value out of range for its type".into());
            }
            if let Check::Range(min, max) = def.check {
                if n < min || n > max {
                    return bad(if max == i64::MAX || max == i64::from(i32::MAX) {
                        format!("Value must be at least {min}")
                    } else {
                        format!("Value must be between {min} and {max}")
                    });
                }
            }
        }
        ConfigType::Double => {
            let Ok(x) = value.trim().parse::<f64>() else {
                return bad("Not a number of type DOUBLE".into());
            };
            if let Check::DoubleRange(min, max) = def.check {
                if !(min..=max).contains(&x) {
                    return bad(format!("Value must be between {min} and {max}"));
                }
            }
        }
        ConfigType::String => {
            if let Check::OneOf(options) = def.check {
                if !options.contains(&value) {
                    return bad(format!("String must be one of: {}", options.join(", ")));
                }
            }
        }
        ConfigType::List => {
            if let Check::ListOf(options) = def.check {
                let items: Vec<&str> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                if items.is_empty() && !value.is_empty() {
                    return bad("empty list".into());
                }
                if let Some(item) = items.iter().find(|i| !options.contains(i)) {
                    return bad(format!("'{item}' is not one of {}", options.join(", ")));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_valid() {
        for d in TOPIC_CONFIGS {
            validate(&d.def, d.def.default).unwrap_or_else(|e| panic!("{e}"));
        }
        for d in BROKER_CONFIGS.iter().filter(|d| !d.def.default.is_empty()) {
            validate(&d.def, d.def.default).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn values_are_checked() {
        let retention = topic_def("retention.ms").expect("known").def;
        assert!(validate(&retention, "1000").is_ok());
        assert!(validate(&retention, "-2").is_err());
        assert!(validate(&retention, "soon").is_err());
        let policy = topic_def("cleanup.policy").expect("known").def;
        assert!(validate(&policy, "compact,delete").is_ok());
        assert!(validate(&policy, "shred").is_err());
        let ts = topic_def("message.timestamp.type").expect("known").def;
        assert!(validate(&ts, "LogAppendTime").is_ok());
        assert!(validate(&ts, "Now").is_err());
    }
}
