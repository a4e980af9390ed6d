//! Log levels changed at runtime through Kafka's BROKER_LOGGER config resource (KIP-412):
//! DescribeConfigs lists the loggers (`root` and every target with a level of its own)
//! and their levels; IncrementalAlterConfigs SETs a logger's level or DELETEs it back to
//! the root's. As in Kafka, a change applies to the broker that received it and lasts
//! until it restarts.
//!
//! Loggers are `tracing` targets (module paths such as `fjord_node::replica`, or
//! `openraft`); a level applies to the target and everything under it. The pure part,
//! [`Levels`], turns the startup filter and the changes into one filter string; the
//! process-wide part reloads the subscriber's filter with it.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock, PoisonError};

/// The logger every target without a level of its own follows.
pub const ROOT: &str = "root";

/// The levels Kafka's BROKER_LOGGER takes (log4j's names), and the `tracing` level each
/// means. FATAL is ERROR here; ALL is TRACE.
const LEVELS: &[(&str, &str)] = &[
    ("ALL", "trace"),
    ("TRACE", "trace"),
    ("DEBUG", "debug"),
    ("INFO", "info"),
    ("WARN", "warn"),
    ("ERROR", "error"),
    ("FATAL", "error"),
    ("OFF", "off"),
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogLevelError {
    #[error(
        "{0} is not a valid log level: use one of ALL, TRACE, DEBUG, INFO, WARN, ERROR, FATAL, OFF"
    )]
    InvalidLevel(String),
    #[error("{0:?} is not a logger name: a logger is a module path such as fjord_node::replica")]
    InvalidLogger(String),
    #[error("the root logger's level can be set but not removed")]
    RootRemoved,
    #[error("runtime log levels are not available in this process")]
    Unavailable,
    #[error("cannot apply the log levels: {0}")]
    Reload(String),
}

/// Kafka's name for a `tracing` level directive (`info` -> `INFO`).
fn kafka_name(level: &str) -> String {
    match level {
        "off" => "OFF".into(),
        other => other.to_ascii_uppercase(),
    }
}

fn tracing_level(kafka: &str) -> Result<&'static str, LogLevelError> {
    LEVELS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(kafka.trim()))
        .map(|(_, t)| *t)
        .ok_or_else(|| LogLevelError::InvalidLevel(kafka.to_string()))
}

fn valid_logger(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.' | '-'))
}

/// The startup filter and the changes made since, as one set of directives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Levels {
    root: String,
    /// Targets with a level of their own: from the startup filter, then changes.
    targets: BTreeMap<String, String>,
    /// The startup filter's own target levels, which DELETE returns to.
    startup: BTreeMap<String, String>,
    /// Startup directives this module does not model (spans, fields): kept verbatim.
    other: Vec<String>,
}

impl Levels {
    /// Reads a filter such as `info,openraft=error,sled=warn`.
    pub fn parse(filter: &str) -> Levels {
        let mut root = "info".to_string();
        let mut targets = BTreeMap::new();
        let mut other = Vec::new();
        for d in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            match d.split_once('=') {
                None if tracing_level(d).is_ok() => root = d.to_ascii_lowercase(),
                Some((target, level)) if valid_logger(target) && tracing_level(level).is_ok() => {
                    targets.insert(target.to_string(), level.to_ascii_lowercase());
                }
                _ => other.push(d.to_string()),
            }
        }
        Levels {
            root,
            startup: targets.clone(),
            targets,
            other,
        }
    }

    /// Every logger with its level, Kafka-style: `root` first, then each target.
    pub fn describe(&self) -> Vec<(String, String)> {
        std::iter::once((ROOT.to_string(), kafka_name(&self.root)))
            .chain(self.targets.iter().map(|(t, l)| (t.clone(), kafka_name(l))))
            .collect()
    }

    /// Checks a SET without applying it.
    pub fn check_set(logger: &str, level: &str) -> Result<(), LogLevelError> {
        tracing_level(level)?;
        if logger != ROOT && !valid_logger(logger) {
            return Err(LogLevelError::InvalidLogger(logger.to_string()));
        }
        Ok(())
    }

    /// Checks a DELETE without applying it.
    pub fn check_delete(logger: &str) -> Result<(), LogLevelError> {
        if logger == ROOT {
            return Err(LogLevelError::RootRemoved);
        }
        if !valid_logger(logger) {
            return Err(LogLevelError::InvalidLogger(logger.to_string()));
        }
        Ok(())
    }

    pub fn set(&mut self, logger: &str, level: &str) -> Result<(), LogLevelError> {
        Self::check_set(logger, level)?;
        let level = tracing_level(level)?.to_string();
        if logger == ROOT {
            self.root = level;
        } else {
            self.targets.insert(logger.to_string(), level);
        }
        Ok(())
    }

    /// Back to what the logger had at startup: its own level there, or the root's.
    pub fn delete(&mut self, logger: &str) -> Result<(), LogLevelError> {
        Self::check_delete(logger)?;
        match self.startup.get(logger) {
            Some(level) => self.targets.insert(logger.to_string(), level.clone()),
            None => self.targets.remove(logger),
        };
        Ok(())
    }

    /// The filter directives for `tracing_subscriber::EnvFilter`.
    pub fn filter(&self) -> String {
        std::iter::once(self.root.clone())
            .chain(self.targets.iter().map(|(t, l)| format!("{t}={l}")))
            .chain(self.other.iter().cloned())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Replaces the running subscriber's filter with the given directives.
pub type Reload = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

struct Global {
    levels: Mutex<Levels>,
    reload: Reload,
}

static GLOBAL: OnceLock<Global> = OnceLock::new();

/// Called once by the process that logs: the filter it started with, and how to replace
/// that filter.
pub fn install(startup_filter: &str, reload: Reload) {
    let _ = GLOBAL.set(Global {
        levels: Mutex::new(Levels::parse(startup_filter)),
        reload,
    });
}

fn global() -> Result<&'static Global, LogLevelError> {
    GLOBAL.get().ok_or(LogLevelError::Unavailable)
}

/// The loggers and their levels now.
pub fn describe() -> Result<Vec<(String, String)>, LogLevelError> {
    Ok(global()?
        .levels
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .describe())
}

/// One change of an IncrementalAlterConfigs: `Some(level)` sets, `None` deletes.
pub type Change = (String, Option<String>);

/// Checks every change, then (unless `validate_only`) applies them all at once.
pub fn apply(changes: &[Change], validate_only: bool) -> Result<(), LogLevelError> {
    for (logger, level) in changes {
        match level {
            Some(level) => Levels::check_set(logger, level)?,
            None => Levels::check_delete(logger)?,
        }
    }
    let g = global()?;
    if validate_only {
        return Ok(());
    }
    let mut levels = g.levels.lock().unwrap_or_else(PoisonError::into_inner);
    let mut next = levels.clone();
    for (logger, level) in changes {
        match level {
            Some(level) => next.set(logger, level)?,
            None => next.delete(logger)?,
        }
    }
    (g.reload)(&next.filter()).map_err(LogLevelError::Reload)?;
    tracing::info!(filter = %next.filter(), "log levels changed");
    *levels = next;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_filter_is_described_kafka_style() {
        let l = Levels::parse("info,openraft=error,sled=warn");
        assert_eq!(
            l.describe(),
            vec![
                ("root".to_string(), "INFO".to_string()),
                ("openraft".to_string(), "ERROR".to_string()),
                ("sled".to_string(), "WARN".to_string()),
            ]
        );
        assert_eq!(l.filter(), "info,openraft=error,sled=warn");
    }

    #[test]
    fn set_and_delete_change_one_logger() {
        let mut l = Levels::parse("info,openraft=error");
        l.set("fjord_node::replica", "debug").expect("set");
        l.set("openraft", "WARN").expect("set");
        l.set(ROOT, "warn").expect("root");
        assert_eq!(l.filter(), "warn,fjord_node::replica=debug,openraft=warn");
        // DELETE goes back to the startup level, or to following the root.
        l.delete("openraft").expect("delete");
        l.delete("fjord_node::replica").expect("delete");
        assert_eq!(l.filter(), "warn,openraft=error");
    }

    #[test]
    fn bad_levels_loggers_and_root_removal_are_refused() {
        let mut l = Levels::parse("info");
        assert_eq!(
            l.set("x", "LOUD"),
            Err(LogLevelError::InvalidLevel("LOUD".into()))
        );
        assert!(matches!(
            l.set("a b", "INFO"),
            Err(LogLevelError::InvalidLogger(_))
        ));
        assert_eq!(l.delete(ROOT), Err(LogLevelError::RootRemoved));
        assert_eq!(l.filter(), "info");
        l.set("x", "FATAL").expect("FATAL is error");
        assert_eq!(l.describe()[1], ("x".to_string(), "ERROR".to_string()));
    }
}
