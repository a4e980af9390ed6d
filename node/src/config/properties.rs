//! Kafka's config file format, `server.properties`: Java's `Properties.load` rules, so
//! that a file Kafka reads gives Fjord the same keys and values.
//!
//! - `#` or `!` as the first non-blank character makes a comment line; blank lines are
//!   skipped.
//! - The key ends at the first unescaped `=`, `:` or blank; blanks around that one
//!   separator are dropped, and the rest of the line is the value.
//! - A line ending in an odd number of backslashes goes on with the next line, whose
//!   leading blanks are dropped (comment lines do not go on).
//! - `\t`, `\n`, `\r`, `\f` and `\uXXXX` are escapes; a backslash before any other
//!   character stands for that character (`\=`, `\:`, `\ `, `\\`).
//! - A later line with the same key wins.

use std::collections::BTreeMap;

/// Parses `text`; an error names the 1-based line it was found on.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (line_no, logical) in logical_lines(text) {
        let (key, value) = split_entry(&logical).map_err(|e| format!("line {line_no}: {e}"))?;
        out.insert(key, value);
    }
    Ok(out)
}

/// The entries of `text` with their continuation lines joined (the escaping backslash
/// removed), each with the number of the line it starts on. Comments and blank lines
/// are left out.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim_start_matches(is_blank);
        let continuing = current.is_some();
        if !continuing && (trimmed.is_empty() || trimmed.starts_with(['#', '!'])) {
            continue;
        }
        let trailing = trimmed.chars().rev().take_while(|c| *c == '\\').count();
        let goes_on = trailing % 2 == 1;
        let body = if goes_on {
            &trimmed[..trimmed.len() - 1]
        } else {
            trimmed
        };
        let (start, mut joined) = current.take().unwrap_or((i + 1, String::new()));
        joined.push_str(body);
        if goes_on {
            current = Some((start, joined));
        } else {
            out.push((start, joined));
        }
    }
    // A file ending in a continuation: Java keeps what was read.
    if let Some(last) = current {
        out.push(last);
    }
    out
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{c}')
}

/// Splits one logical line into its unescaped key and value.
fn split_entry(line: &str) -> Result<(String, String), String> {
    let mut chars = line.chars().peekable();
    let mut key_raw = String::new();
    // The key: up to an unescaped separator, escapes kept for `unescape`.
    while let Some(&c) = chars.peek() {
        if c == '\\' {
            key_raw.push(c);
            chars.next();
            if let Some(n) = chars.next() {
                key_raw.push(n);
            }
            continue;
        }
        if c == '=' || c == ':' || is_blank(c) {
            break;
        }
        key_raw.push(c);
        chars.next();
    }
    // Blanks, then at most one `=` or `:`, then blanks.
    while chars.peek().is_some_and(|c| is_blank(*c)) {
        chars.next();
    }
    if chars.peek().is_some_and(|c| *c == '=' || *c == ':') {
        chars.next();
        while chars.peek().is_some_and(|c| is_blank(*c)) {
            chars.next();
        }
    }
    let value_raw: String = chars.collect();
    Ok((unescape(&key_raw)?, unescape(&value_raw)?))
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .ok_or_else(|| format!("malformed \\uXXXX escape '\\u{hex}'"))?;
                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(text: &str, key: &str) -> Option<String> {
        parse(text).expect("parses").get(key).cloned()
    }

    #[test]
    fn kafkas_own_file_shapes() {
        let text = "# The role of this server\nprocess.roles=broker,controller\n\n\
                    listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n\
                    log.dirs=/tmp/kraft-combined-logs\n   ! a bang comment\n\
                    num.partitions = 3\nlog.retention.hours:168\nempty=\n";
        let p = parse(text).expect("parses");
        assert_eq!(p["process.roles"], "broker,controller");
        assert_eq!(p["listeners"], "PLAINTEXT://:9092,CONTROLLER://:9093");
        assert_eq!(p["log.dirs"], "/tmp/kraft-combined-logs");
        assert_eq!(p["num.partitions"], "3");
        assert_eq!(p["log.retention.hours"], "168");
        assert_eq!(p["empty"], "");
        assert_eq!(
            p.len(),
            6,
            "comments and blank lines are not entries: {p:?}"
        );
    }

    #[test]
    fn separators_blanks_and_later_duplicates() {
        assert_eq!(
            get("a b c", "a").as_deref(),
            Some("b c"),
            "a blank separates"
        );
        assert_eq!(
            get("a = = b", "a").as_deref(),
            Some("= b"),
            "one separator only"
        );
        assert_eq!(get("a=1\na=2", "a").as_deref(), Some("2"));
        assert_eq!(
            get("key=value  ", "key").as_deref(),
            Some("value  "),
            "trailing blanks stay"
        );
        assert_eq!(get("only.key", "only.key").as_deref(), Some(""));
    }

    #[test]
    fn continuations_and_escapes() {
        let text = "list=a,\\\n    b,\\\n    c\nnot\\\\\nx=1\n";
        let p = parse(text).expect("parses");
        assert_eq!(p["list"], "a,b,c");
        assert_eq!(
            p["not\\"], "",
            "an even number of backslashes does not continue"
        );
        assert_eq!(p["x"], "1");
        assert_eq!(get("k\\=ey=v\\:al", "k=ey").as_deref(), Some("v:al"));
        assert_eq!(get("tab=\\tx\\u0041", "tab").as_deref(), Some("\tx\u{41}"));
        assert_eq!(get("crlf=1\r\nnext=2\r\n", "crlf").as_deref(), Some("1"));
        let err = parse("ok=1\nbad=\\u00zz\n").expect_err("malformed escape");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn comments_do_not_continue() {
        let p = parse("# comment \\\nkey=value\n").expect("parses");
        assert_eq!(p.get("key").map(String::as_str), Some("value"));
    }
}
