//! Kafka's rules for topic names.

pub const MAX_NAME_LENGTH: usize = 249;

/// Checks a topic name the way Kafka does: 1 to 249 characters of `[a-zA-Z0-9._-]`, and
/// not "." or "..".
pub fn validate(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > MAX_NAME_LENGTH {
        return Err(format!(
            "Topic name is illegal, it can't be longer than {MAX_NAME_LENGTH} characters, topic name: {name}"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "Topic name {name:?} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-' ({c:?})"
        ));
    }
    Ok(())
}

/// '.' and '_' collide in metric names, so Kafka refuses a topic that differs from an
/// existing one only by them.
pub fn collides(a: &str, b: &str) -> bool {
    a != b && a.replace('.', "_") == b.replace('.', "_")
}

pub fn is_internal(name: &str) -> bool {
    name.starts_with("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_name_rules() {
        assert!(validate("orders.v2_eu-1").is_ok());
        assert!(validate("").is_err());
        assert!(validate("..").is_err());
        assert!(validate("has space").is_err());
        assert!(validate("ünicode").is_err());
        assert!(validate(&"x".repeat(250)).is_err());
        assert!(validate(&"x".repeat(249)).is_ok());
        assert!(collides("a.b", "a_b"));
        assert!(!collides("a.b", "a.b"));
    }
}
