//! Client profiles: named command-configs, as rpk's profiles, so a person switching
//! between clusters types `--profile prod` (or sets FJORD_PROFILE) instead of a bootstrap
//! address and a file of security settings on every command.
//!
//! A profile is a Kafka client properties file, `<dir>/NAME.properties`, where `<dir>`
//! is `$FJORD_PROFILES_DIR`, else `$XDG_CONFIG_HOME/fjord/profiles`, else
//! `~/.config/fjord/profiles`. Its `bootstrap.servers` is the default bootstrap address;
//! its other properties come before `--command-config` and `--property`.

use std::path::{Path, PathBuf};

use super::client::{key_values, read_command_config};
use super::CliError;

#[derive(clap::Subcommand, Debug)]
pub enum ProfileCommand {
    /// Create or replace a profile.
    Create {
        name: String,
        /// The cluster's bootstrap servers, HOST:PORT[,HOST:PORT...].
        #[arg(long)]
        bootstrap_server: String,
        /// A client property, KEY=VALUE (repeatable): security.protocol, sasl.*, ssl.*.
        #[arg(long = "property", value_name = "KEY=VALUE")]
        properties: Vec<String>,
        /// Copy the properties of this file (Kafka's --command-config) into the profile.
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
    },
    /// List the profiles and their bootstrap servers.
    List,
    /// Print a profile's properties (passwords hidden).
    Show { name: String },
    /// Delete a profile.
    Delete { name: String },
}

/// The environment variable that picks a profile when `--profile` is not given.
pub const PROFILE_ENV: &str = "FJORD_PROFILE";
const BOOTSTRAP_ENV: &str = "FJORD_BOOTSTRAP_SERVER";

/// The folder profiles live in.
pub fn dir() -> Result<PathBuf, CliError> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = env("FJORD_PROFILES_DIR") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = env("XDG_CONFIG_HOME") {
        return Ok(Path::new(&d).join("fjord").join("profiles"));
    }
    env("HOME")
        .map(|h| Path::new(&h).join(".config").join("fjord").join("profiles"))
        .ok_or_else(|| CliError::Usage("no profile folder: set FJORD_PROFILES_DIR or HOME".into()))
}

fn path_of(name: &str) -> Result<PathBuf, CliError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if !valid {
        return Err(CliError::Usage(format!(
            "profile name '{name}': use letters, digits, '-', '_' and '.'"
        )));
    }
    Ok(dir()?.join(format!("{name}.properties")))
}

/// A profile's properties, in file order.
pub fn load(name: &str) -> Result<Vec<(String, String)>, CliError> {
    let path = path_of(name)?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        CliError::Usage(format!(
            "profile {name} ({}): {e}; `fjord profile list` shows the profiles",
            path.display()
        ))
    })?;
    let props = crate::config::properties::parse(&text)
        .map_err(|e| CliError::Usage(format!("profile {name} ({}): {e}", path.display())))?;
    Ok(props.into_iter().collect())
}

/// Makes `bootstrap.servers` of the command-config, else of the chosen profile, the
/// default bootstrap address, before the command line is parsed: an explicit
/// `--bootstrap-server` or FJORD_BOOTSTRAP_SERVER still wins. Errors name the file.
pub fn apply_bootstrap_default(args: &[String]) -> Result<(), CliError> {
    // A node and the profile commands themselves take no profile.
    if matches!(args.get(1).map(String::as_str), Some("serve" | "profile")) {
        return Ok(());
    }
    let explicit = flag_value(args, "--bootstrap-server").is_some()
        || flag_value(args, "--broker-list").is_some();
    if explicit || std::env::var_os(BOOTSTRAP_ENV).is_some() {
        return Ok(());
    }
    let bootstrap = |props: Vec<(String, String)>| {
        props
            .into_iter()
            .rev()
            .find(|(k, _)| k == "bootstrap.servers")
            .map(|(_, v)| v)
    };
    let from_file = match flag_value(args, "--command-config").or_else(|| env(COMMAND_CONFIG_ENV)) {
        Some(path) => bootstrap(read_command_config(Path::new(&path))?),
        None => None,
    };
    let servers = match (
        from_file,
        flag_value(args, "--profile").or_else(|| env(PROFILE_ENV)),
    ) {
        (Some(s), _) => Some(s),
        (None, Some(name)) => bootstrap(load(&name)?),
        (None, None) => None,
    };
    if let Some(servers) = servers {
        // Sound: this runs first thing in main, before any other thread exists.
        std::env::set_var(BOOTSTRAP_ENV, servers);
    }
    Ok(())
}

const COMMAND_CONFIG_ENV: &str = "FJORD_COMMAND_CONFIG";

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// The value of `--flag VALUE` or `--flag=VALUE` in the command line (before `--`).
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == flag {
            return it.next().cloned();
        }
        if let Some(v) = a.strip_prefix(flag).and_then(|v| v.strip_prefix('=')) {
            return Some(v.to_string());
        }
    }
    None
}

fn is_secret(key: &str) -> bool {
    key.contains("password") || key.contains("secret") || key == "sasl.jaas.config"
}

pub fn run(cmd: ProfileCommand) -> Result<(), CliError> {
    match cmd {
        ProfileCommand::Create {
            name,
            bootstrap_server,
            properties,
            from_file,
        } => {
            let mut props = vec![("bootstrap.servers".to_string(), bootstrap_server)];
            if let Some(file) = &from_file {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| CliError::Usage(format!("--from-file {}: {e}", file.display())))?;
                let from = crate::config::properties::parse(&text)
                    .map_err(|e| CliError::Usage(format!("--from-file {}: {e}", file.display())))?;
                props.extend(from.into_iter().filter(|(k, _)| k != "bootstrap.servers"));
            }
            props.extend(key_values(&properties, "--property")?);
            let path = path_of(&name)?;
            write_private(&path, &render(&props))?;
            outln!("Saved profile {name} to {}.", path.display());
            Ok(())
        }
        ProfileCommand::List => {
            let dir = dir()?;
            let mut names: Vec<String> = match std::fs::read_dir(&dir) {
                Ok(entries) => entries
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()
                            .and_then(|n| n.strip_suffix(".properties"))
                            .map(str::to_string)
                    })
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(CliError::Usage(format!("{}: {e}", dir.display()))),
            };
            names.sort();
            let current = std::env::var(PROFILE_ENV).unwrap_or_default();
            outln!("{:<2}{:<24} BOOTSTRAP-SERVERS", "", "PROFILE");
            for n in names {
                let servers = load(&n)
                    .ok()
                    .and_then(|p| p.into_iter().find(|(k, _)| k == "bootstrap.servers"))
                    .map_or_else(|| "-".to_string(), |(_, v)| v);
                let mark = if n == current { "*" } else { "" };
                outln!("{mark:<2}{n:<24} {servers}");
            }
            Ok(())
        }
        ProfileCommand::Show { name } => {
            for (k, v) in load(&name)? {
                let v = if is_secret(&k) {
                    "[hidden]".to_string()
                } else {
                    v
                };
                outln!("{k}={v}");
            }
            Ok(())
        }
        ProfileCommand::Delete { name } => {
            let path = path_of(&name)?;
            std::fs::remove_file(&path).map_err(|e| {
                CliError::Usage(format!("profile {name} ({}): {e}", path.display()))
            })?;
            outln!("Deleted profile {name}.");
            Ok(())
        }
    }
}

/// Properties-file text that Java's `Properties.load` reads back as `props`.
fn render(props: &[(String, String)]) -> String {
    let escape = |s: &str, key: bool| {
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '=' | ':' | '#' | '!' if key => {
                    out.push('\\');
                    out.push(c);
                }
                ' ' if key || i == 0 => out.push_str("\\ "),
                _ => out.push(c),
            }
        }
        out
    };
    let mut text = String::from("# A fjord client profile (Kafka client properties).\n");
    for (k, v) in props {
        text.push_str(&format!("{}={}\n", escape(k, true), escape(v, false)));
    }
    text
}

/// Writes a file only its owner can read: profiles hold passwords.
fn write_private(path: &Path, text: &str) -> Result<(), CliError> {
    use std::io::Write as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| CliError::Usage(format!("{}: {e}", parent.display())))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_profiles_read_back_as_written() {
        let props = vec![
            ("bootstrap.servers".to_string(), "a:9092,b:9092".to_string()),
            (
                "sasl.jaas.config".to_string(),
                "org.Plain required username=\"u\" password=\"p=q\";".to_string(),
            ),
            (
                "odd key:x".to_string(),
                " leading blank\tand tab\\".to_string(),
            ),
        ];
        let parsed = crate::config::properties::parse(&render(&props)).expect("parses");
        for (k, v) in &props {
            assert_eq!(parsed.get(k), Some(v), "{k}");
        }
    }

    #[test]
    fn flags_are_found_in_both_spellings() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            flag_value(
                &args(&["fjord", "topic", "list", "--profile", "prod"]),
                "--profile"
            ),
            Some("prod".to_string())
        );
        assert_eq!(
            flag_value(
                &args(&["fjord", "topic", "list", "--profile=dev"]),
                "--profile"
            ),
            Some("dev".to_string())
        );
        assert_eq!(
            flag_value(
                &args(&["fjord", "produce", "--", "--profile=x"]),
                "--profile"
            ),
            None
        );
        assert_eq!(
            flag_value(&args(&["fjord", "x", "--profiles=x"]), "--profile"),
            None
        );
        assert!(path_of("../etc/passwd").is_err());
        assert!(path_of(".hidden").is_err());
        assert!(path_of("prod-eu_1.2").is_ok() || dir().is_err());
    }
}
