//! Kafka's operator tools as `fjord` runs them, through the real binary against a real
//! node: kafka-configs.sh and client profiles (`config_tool`), kafka-consumer-groups.sh's
//! offset commands (`group_offsets`), kafka-transactions.sh and kafka-log-dirs.sh
//! (`txn_tools`), and the console tools' properties, kafka-delete-records.sh and
//! kafka-get-offsets.sh (`console_tools`). One test binary, so CI links it once.

#[path = "admin_tools/config_tool.rs"]
mod config_tool;
#[path = "admin_tools/console_tools.rs"]
mod console_tools;
#[path = "admin_tools/group_offsets.rs"]
mod group_offsets;
#[path = "admin_tools/txn_tools.rs"]
mod txn_tools;
