//! `fjord config describe|alter` as kafka-configs.sh is used: topics, one broker or the
//! cluster-wide broker default, users (quotas and SCRAM credentials) and client ids,
//! with every config's source, sensitivity and read-only flag.

use std::process::Output;

use super::{ok_stdout, stdout};
use fjord_tests::{run_cli as fjord, Node};

/// The line of config `name` in a describe output.
fn line_of<'a>(out: &'a str, name: &str) -> Option<&'a str> {
    out.lines()
        .map(str::trim)
        .find(|l| l.starts_with(&format!("{name}=")))
}

/// Issue 33: there was no command for topic and broker configs with their sources.
#[test]
fn topic_and_broker_configs_are_described_with_sources_and_altered() {
    let node = Node::start();
    let run = |args: &[&str]| ok_stdout(&node, args);
    run(&[
        "topic",
        "create",
        "cfg",
        "--partitions",
        "1",
        "--config",
        "retention.ms=60000",
    ]);

    // Only what is set on the topic, then everything.
    let dynamic = run(&["config", "describe", "--topic", "cfg"]);
    assert!(
        dynamic.starts_with("Dynamic configs for topic cfg are:"),
        "{dynamic}"
    );
    let retention = line_of(&dynamic, "retention.ms").expect("retention.ms listed");
    assert!(
        retention.contains("source=DYNAMIC_TOPIC_CONFIG")
            && retention.contains("sensitive=false")
            && retention.contains("DYNAMIC_TOPIC_CONFIG:retention.ms=60000"),
        "{retention}"
    );
    assert!(line_of(&dynamic, "segment.bytes").is_none(), "{dynamic}");
    let all = run(&[
        "config",
        "describe",
        "--entity-type",
        "topics",
        "--entity-name",
        "cfg",
        "--all",
    ]);
    let segment = line_of(&all, "segment.bytes").expect("every config with --all");
    assert!(segment.contains("source=DEFAULT_CONFIG"), "{segment}");

    // kafka-configs.sh's --add-config: bracketed lists, several keys, and deletes.
    run(&[
        "config",
        "alter",
        "--topic",
        "cfg",
        "--add-config",
        "cleanup.policy=[compact,delete],max.message.bytes=2000",
        "--delete-config",
        "retention.ms",
    ]);
    let after = run(&["config", "describe", "--topic", "cfg"]);
    assert!(
        line_of(&after, "cleanup.policy")
            .is_some_and(|l| l.starts_with("cleanup.policy=compact,delete ")),
        "{after}"
    );
    assert!(line_of(&after, "max.message.bytes").is_some(), "{after}");
    assert!(line_of(&after, "retention.ms").is_none(), "{after}");
    // `topic describe` shows what is not at its default, and every source on request.
    let described = run(&["topic", "describe", "cfg", "--all-configs"]);
    assert!(described.contains("max.message.bytes=2000"), "{described}");
    assert!(
        described.contains("Config: segment.bytes=1073741824 source=DEFAULT_CONFIG"),
        "{described}"
    );

    // The cluster-wide default, then broker 1's own value over it.
    run(&[
        "config",
        "alter",
        "--entity-type",
        "brokers",
        "--entity-default",
        "--add-config",
        "log.retention.bytes=123456789",
    ]);
    let defaults = run(&["config", "describe", "--broker-defaults"]);
    assert!(
        defaults.starts_with("Default configs for brokers in the cluster are:"),
        "{defaults}"
    );
    assert!(
        line_of(&defaults, "log.retention.bytes")
            .is_some_and(|l| l
                .starts_with("log.retention.bytes=123456789 source=DYNAMIC_DEFAULT_BROKER_CONFIG")),
        "{defaults}"
    );
    run(&[
        "config",
        "alter",
        "--broker",
        "1",
        "--add-config",
        "log.retention.bytes=987654321",
    ]);
    let broker = run(&["config", "describe", "--broker", "1", "--all"]);
    let line = line_of(&broker, "log.retention.bytes").expect("listed");
    assert!(
        line.starts_with("log.retention.bytes=987654321 source=DYNAMIC_BROKER_CONFIG")
            && line.contains("DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.bytes=123456789"),
        "{line}"
    );
    // A static setting is read-only at runtime.
    let listeners = line_of(&broker, "listeners").expect("listeners listed");
    assert!(listeners.contains("read-only=true"), "{listeners}");
    let only_dynamic = run(&["config", "describe", "--broker", "1"]);
    assert!(
        line_of(&only_dynamic, "log.retention.bytes").is_some(),
        "{only_dynamic}"
    );
    assert!(
        line_of(&only_dynamic, "listeners").is_none(),
        "{only_dynamic}"
    );

    // A broker that is not in the cluster, and a name that is not an entity.
    let missing = fjord(&node, &["config", "describe", "--broker", "7"], None);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("broker 7 is not in the cluster"),
        "{missing:?}"
    );
    let bad = fjord(
        &node,
        &["config", "describe", "--topic", "cfg", "--user", "u"],
        None,
    );
    assert_eq!(bad.status.code(), Some(2));
}

/// Users' quotas and SCRAM credentials, and client ids' quotas, as kafka-configs.sh
/// sets them: `--entity-type users --add-config 'SCRAM-SHA-256=[...],producer_byte_rate=...'`.
#[test]
fn user_and_client_configs_are_quotas_and_credentials() {
    let node = Node::start();
    let run = |args: &[&str]| ok_stdout(&node, args);
    run(&[
        "config",
        "alter",
        "--entity-type",
        "users",
        "--entity-name",
        "alice",
        "--add-config",
        "SCRAM-SHA-256=[iterations=8192,password=alice-secret],producer_byte_rate=1048576",
    ]);
    let alice = run(&["config", "describe", "--user", "alice"]);
    assert!(alice.contains("producer_byte_rate=1048576"), "{alice}");
    assert!(
        alice.contains(
            "SCRAM credential configs for user-principal 'alice' are SCRAM-SHA-256=iterations=8192"
        ),
        "{alice}"
    );
    run(&[
        "config",
        "alter",
        "--user",
        "alice",
        "--delete-config",
        "SCRAM-SHA-256,producer_byte_rate",
    ]);
    let gone = run(&["config", "describe", "--user", "alice"]);
    assert!(!gone.contains("SCRAM-SHA-256"), "{gone}");
    assert!(!gone.contains("producer_byte_rate"), "{gone}");

    run(&[
        "config",
        "alter",
        "--entity-type",
        "clients",
        "--entity-default",
        "--add-config",
        "consumer_byte_rate=2048",
    ]);
    run(&[
        "config",
        "alter",
        "--client",
        "reports",
        "--add-config",
        "request_percentage=50",
    ]);
    let defaults = run(&[
        "config",
        "describe",
        "--entity-type",
        "clients",
        "--entity-default",
    ]);
    assert!(
        defaults.contains("client-id=<default>\tconsumer_byte_rate=2048"),
        "{defaults}"
    );
    let reports = run(&["config", "describe", "--client", "reports"]);
    assert!(
        reports.contains("client-id=reports\trequest_percentage=50"),
        "{reports}"
    );
    // A quota needs a number, and a credential a password.
    let bad = fjord(
        &node,
        &[
            "config",
            "alter",
            "--client",
            "x",
            "--add-config",
            "consumer_byte_rate=lots",
        ],
        None,
    );
    assert_eq!(bad.status.code(), Some(2));
    let no_password = fjord(
        &node,
        &[
            "config",
            "alter",
            "--user",
            "bob",
            "--add-config",
            "SCRAM-SHA-512=[iterations=8192]",
        ],
        None,
    );
    assert_eq!(no_password.status.code(), Some(2));
}

/// Issue 33: client profiles. A named command-config, picked by `--profile` or
/// FJORD_PROFILE, gives the bootstrap address and the client settings; an explicit
/// `--bootstrap-server` still wins, and a missing profile is named.
#[test]
fn profiles_pick_the_cluster_and_its_client_settings() {
    let node = Node::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(fjord_tests::fjord_bin());
        cmd.args(args)
            .env_remove("FJORD_BOOTSTRAP_SERVER")
            .env_remove("FJORD_PROFILE")
            .env("FJORD_PROFILES_DIR", dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run fjord")
    };
    let ok = |out: Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    };
    ok(run(
        &[
            "profile",
            "create",
            "local",
            "--bootstrap-server",
            &node.bootstrap(),
            "--property",
            "client.id=profiled",
        ],
        &[],
    ));
    // The wrong protocol for a plaintext listener, with a password to hide.
    ok(run(
        &[
            "profile",
            "create",
            "sasl",
            "--bootstrap-server",
            &node.bootstrap(),
            "--property",
            "security.protocol=SASL_PLAINTEXT",
            "--property",
            "sasl.mechanism=PLAIN",
            "--property",
            "sasl.username=u",
            "--property",
            "sasl.password=very-secret",
        ],
        &[],
    ));
    ok(run(
        &["topic", "create", "via-profile", "--profile", "local"],
        &[],
    ));
    let listed = ok(run(&["topic", "list"], &[("FJORD_PROFILE", "local")]));
    assert!(listed.contains("via-profile"), "{listed}");

    let profiles = ok(run(&["profile", "list"], &[("FJORD_PROFILE", "local")]));
    assert!(
        profiles.contains("* local") && profiles.contains(&node.bootstrap()),
        "{profiles}"
    );
    let shown = ok(run(&["profile", "show", "sasl"], &[]));
    assert!(shown.contains("sasl.password=[hidden]"), "{shown}");
    assert!(!shown.contains("very-secret"), "{shown}");
    let file = std::fs::read_to_string(dir.path().join("sasl.properties")).expect("profile file");
    assert!(file.contains("security.protocol=SASL_PLAINTEXT"), "{file}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("sasl.properties"))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "profiles hold passwords: {mode:o}");
    }

    // The profile's settings are used: SASL against a plaintext listener fails fast.
    let wrong = run(
        &["topic", "list", "--profile", "sasl", "--timeout-ms", "4000"],
        &[],
    );
    assert_eq!(wrong.status.code(), Some(1), "{wrong:?}");
    // An explicit bootstrap address beats the profile's.
    let elsewhere = run(
        &[
            "topic",
            "list",
            "--bootstrap-server",
            "127.0.0.1:1",
            "--timeout-ms",
            "2000",
        ],
        &[("FJORD_PROFILE", "local")],
    );
    assert_eq!(elsewhere.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&elsewhere.stderr).contains("127.0.0.1:1"),
        "{elsewhere:?}"
    );
    // Kafka's --command-config gives the bootstrap address too.
    let config = dir.path().join("client.properties");
    std::fs::write(&config, format!("bootstrap.servers={}\n", node.bootstrap())).expect("write");
    let config = config.display().to_string();
    let listed = ok(run(&["topic", "list", "--command-config", &config], &[]));
    assert!(listed.contains("via-profile"), "{listed}");
    let missing = run(&["topic", "list", "--profile", "nope"], &[]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("nope.properties"),
        "{missing:?}"
    );
}
