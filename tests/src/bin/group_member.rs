//! One consumer-group member built on the `rdkafka` crate, for the group tests. Speaks the
//! same JSON-lines protocol as `tests/python/group_member.py`:
//!
//! group-member --bootstrap-server B --group G --topic T [--instance-id I]
//!              [--session-timeout-ms MS] [--commit none|sync] [--log-records]
//!              [--property KEY=VALUE]...   (client settings, e.g. security)
//!
//! It runs until standard input closes, then closes the consumer (leaving the group).

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientConfig, ClientContext, Message, TopicPartitionList};

fn emit(event: &str, mut fields: serde_json::Value) {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    fields["event"] = event.into();
    fields["t"] = t.into();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{fields}");
    let _ = out.flush();
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    let mut ps: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    ps.sort_unstable();
    ps
}

struct Events;

impl ClientContext for Events {}

impl ConsumerContext for Events {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            emit(
                "revoked",
                serde_json::json!({ "partitions": partitions(tpl) }),
            );
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            emit(
                "assigned",
                serde_json::json!({ "partitions": partitions(tpl) }),
            );
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut bootstrap = String::new();
    let mut group = String::new();
    let mut topic = String::new();
    let mut instance: Option<String> = None;
    let mut session_timeout = "6000".to_string();
    let mut commit = "none".to_string();
    let mut log_records = false;
    let mut properties: Vec<(String, String)> = Vec::new();
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match a.as_str() {
            "--bootstrap-server" => bootstrap = value(),
            "--group" => group = value(),
            "--topic" => topic = value(),
            "--instance-id" => instance = Some(value()),
            "--session-timeout-ms" => session_timeout = value(),
            "--commit" => commit = value(),
            "--log-records" => log_records = true,
            "--property" => {
                let kv = value();
                match kv.split_once('=') {
                    Some((k, v)) => properties.push((k.to_string(), v.to_string())),
                    None => {
                        eprintln!("--property wants KEY=VALUE, not {kv}");
                        std::process::exit(2);
                    }
                }
            }
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .set(
            "client.id",
            format!("rdkafka-{}", instance.as_deref().unwrap_or("dynamic")),
        )
        .set("session.timeout.ms", &session_timeout)
        .set("heartbeat.interval.ms", "500")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("partition.assignment.strategy", "range")
        .set("log_level", "3");
    if let Some(i) = &instance {
        config.set("group.instance.id", i);
    }
    for (k, v) in &properties {
        config.set(k, v);
    }
    let consumer: BaseConsumer<Events> = match config.create_with_context(Events) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot create consumer: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = consumer.subscribe(&[&topic]) {
        eprintln!("cannot subscribe: {e}");
        std::process::exit(1);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stop_reader = Arc::clone(&stop);
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        stop_reader.store(true, Ordering::Release);
    });
    while !stop.load(Ordering::Acquire) {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let (p, o) = (m.partition(), m.offset());
        if log_records {
            emit("record", serde_json::json!({ "p": p, "o": o }));
        }
        if commit == "sync" {
            match consumer.commit_message(&m, CommitMode::Sync) {
                Ok(()) => emit("committed", serde_json::json!({ "p": p, "o": o + 1 })),
                Err(e) => emit(
                    "commit-failed",
                    serde_json::json!({ "p": p, "error": e.to_string() }),
                ),
            }
        }
    }
    consumer.unsubscribe();
    drop(consumer);
    emit("closed", serde_json::json!({}));
}
