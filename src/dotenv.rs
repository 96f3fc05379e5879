//! `.env` files as Compose reads them (compose-go's `dotenv` parser).
//!
//! The format: `KEY=value` or `KEY: value` statements, an optional `export ` before the key,
//! `#` comments (on their own line, or after an unquoted value behind a space), blank lines;
//! values unquoted (to the end of the line, trailing blanks dropped), single-quoted (taken as
//! they are, across lines) or double-quoted (across lines, `\n` and `\r` escapes, `\"` and `\\`
//! unescaped). In unquoted and double-quoted values `$VAR`, `${VAR}` and `${VAR:-default}` are
//! expanded from earlier keys and the environment.
//! A bare `KEY` takes the value from the environment. What compose would reject (a quote that is
//! never closed, a key with odd characters) ends the parse: the statements before it stand, as
//! nothing after it can be trusted to mean what compose reads.

use std::collections::BTreeMap;

/// The most of a `.env` file that is read: compose projects keep a few variables there.
pub const MAX_DOTENV_BYTES: u64 = 1024 * 1024;

/// The variables of the `.env` text `text`, `environment` answering `${VAR}` for keys not set
/// earlier in the file and bare `KEY` statements.
pub fn parse(text: &str, environment: impl Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some(statement) = statement_start(rest) {
        let Some((key, after_key, inherited)) = key_name(statement) else {
            break;
        };
        if inherited {
            if let Some(value) = environment(key) {
                out.insert(key.to_owned(), value);
            }
            rest = after_key;
            continue;
        }
        let Some((value, after_value)) = value(after_key, &out, &environment) else {
            break;
        };
        out.insert(key.to_owned(), value);
        rest = after_value;
    }
    out
}

/// `text` from its next statement on, past blank space and comment lines; `None` at the end.
fn statement_start(mut text: &str) -> Option<&str> {
    loop {
        text = text.trim_start();
        if text.is_empty() {
            return None;
        }
        if !text.starts_with('#') {
            return Some(text);
        }
        text = &text[text.find('\n')?..];
    }
}

/// The key at the start of `text`, what follows its `=` (or `:`), and whether it was a bare
/// key (ended by a newline or the end: inherited from the environment).
fn key_name(text: &str) -> Option<(&str, &str, bool)> {
    let text = match text.strip_prefix("export") {
        Some(after) if after.starts_with([' ', '\t']) => after.trim_start_matches([' ', '\t']),
        _ => text,
    };
    let end = text.find(['=', ':', '\n']).unwrap_or(text.len());
    let key = text[..end].trim_end_matches([' ', '\t', '\r']);
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.');
    if !valid {
        return None;
    }
    let inherited = text[end..].chars().next().is_none_or(|c| c == '\n');
    let after = text.get(end + 1..).unwrap_or_default();
    Some((key, after.trim_start_matches([' ', '\t', '\r']), inherited))
}

/// The value at the start of `text` and what follows it; `None` for an unterminated quote.
fn value<'t>(
    text: &'t str,
    earlier: &BTreeMap<String, String>,
    environment: &impl Fn(&str) -> Option<String>,
) -> Option<(String, &'t str)> {
    let lookup = |name: &str| earlier.get(name).cloned().or_else(|| environment(name));
    match text.chars().next() {
        Some(quote @ ('"' | '\'')) => {
            let close = closing_quote(text, quote)?;
            let inner = &text[1..close];
            let value = if quote == '"' {
                expand_variables(&unescape(inner), &lookup)
            } else {
                inner.to_owned()
            };
            Some((value, &text[close + 1..]))
        }
        _ => {
            let end = text.find('\n').unwrap_or(text.len());
            let line = &text[..end];
            // `#` starts a comment only after a blank, so that `URL=http://x/#frag` survives.
            let line = match line.find(" #").or_else(|| line.find("\t#")) {
                Some(comment) => &line[..comment],
                None => line,
            };
            let line = if line.starts_with('#') { "" } else { line };
            Some((expand_variables(line.trim_end(), &lookup), &text[end..]))
        }
    }
}

/// The byte index of the quote that closes the one `text` starts with: the next one not
/// preceded by a backslash.
fn closing_quote(text: &str, quote: char) -> Option<usize> {
    let bytes = text.as_bytes();
    (1..bytes.len()).find(|&i| bytes[i] == quote as u8 && bytes[i - 1] != b'\\')
}

/// Double-quoted escapes: `\n`, `\r`, and a backslash before any other character but `$`
/// dropped (`\"` is `"`, `\\` is `\`).
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek().copied() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('$') | None => {
                out.push('\\');
                continue;
            }
            Some(other) => out.push(other),
        }
        chars.next();
    }
    out
}

/// `$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR-default}` replaced by their values (empty
/// when unset); `\$` stays a literal `$`.
fn expand_variables(text: &str, lookup: &impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        if rest[..dollar].ends_with('\\') {
            out.push_str(&rest[..dollar - 1]);
            out.push('$');
            rest = &rest[dollar + 1..];
            continue;
        }
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(braced) = after.strip_prefix('{') {
            let Some(close) = braced.find('}') else {
                out.push_str(&rest[dollar..]);
                return out;
            };
            out.push_str(&braced_value(&braced[..close], lookup));
            rest = &braced[close + 1..];
        } else {
            let name_len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if name_len == 0 {
                out.push('$');
            } else {
                out.push_str(&lookup(&after[..name_len]).unwrap_or_default());
            }
            rest = &after[name_len..];
        }
    }
    out.push_str(rest);
    out
}

/// The value of `VAR`, `VAR:-default` or `VAR-default` (the inside of `${...}`).
fn braced_value(inside: &str, lookup: &impl Fn(&str) -> Option<String>) -> String {
    if let Some((name, default)) = inside.split_once(":-") {
        return lookup(name)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned());
    }
    if let Some((name, default)) = inside.split_once('-') {
        return lookup(name).unwrap_or_else(|| default.to_owned());
    }
    lookup(inside).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> BTreeMap<String, String> {
        parse(text, |name| (name == "FROM_ENV").then(|| "env".to_owned()))
    }

    fn get(text: &str, key: &str) -> Option<String> {
        parsed(text).get(key).cloned()
    }

    #[test]
    fn plain_exported_and_commented_statements() {
        let text = "# a comment\n\nA=1\nexport B=two words  # note\n  C = spaced\nD: yaml\nE=\nURL=http://x/#frag\n";
        let vars = parsed(text);
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "spaced");
        assert_eq!(vars["D"], "yaml");
        assert_eq!(vars["E"], "");
        assert_eq!(vars["URL"], "http://x/#frag");
        assert_eq!(get("exportX=1\n", "exportX").as_deref(), Some("1"));
    }

    #[test]
    fn quoted_values_span_lines() {
        let text = "COMPOSE_FILE=\"a.yml:\nb.yml\"\nSINGLE='x\\ny $A'\nNEXT=after\n";
        let vars = parsed(text);
        assert_eq!(vars["COMPOSE_FILE"], "a.yml:\nb.yml");
        assert_eq!(vars["SINGLE"], "x\\ny $A", "single quotes keep everything");
        assert_eq!(vars["NEXT"], "after");
        // A statement inside a multi-line value is not a statement.
        let text = "V=\"first\nCOMPOSE_FILE=/dev/zero\nlast\"\n";
        assert_eq!(get(text, "COMPOSE_FILE"), None);
        assert_eq!(
            get(text, "V").unwrap(),
            "first\nCOMPOSE_FILE=/dev/zero\nlast"
        );
    }

    #[test]
    fn double_quoted_escapes_and_variables() {
        let text = "A=one\nB=\"$A-${A}-\\n-\\\"q\\\"-${MISSING:-dflt}-${FROM_ENV}-\\$A\"\n";
        assert_eq!(get(text, "B").unwrap(), "one-one-\n-\"q\"-dflt-env-$A");
        assert_eq!(get("A=${FROM_ENV}/x\n", "A").unwrap(), "env/x");
    }

    #[test]
    fn a_bare_key_comes_from_the_environment() {
        let vars = parsed("FROM_ENV\nOTHER\nA=1");
        assert_eq!(vars["FROM_ENV"], "env");
        assert!(!vars.contains_key("OTHER"));
        assert_eq!(vars["A"], "1");
    }

    #[test]
    fn what_compose_rejects_ends_the_parse() {
        let vars = parsed("A=1\nB=\"never closed\nC=3\n");
        assert_eq!(vars.get("A").map(String::as_str), Some("1"));
        assert!(!vars.contains_key("B") && !vars.contains_key("C"));
        assert_eq!(parsed("A=1\nbad key=2\nC=3\n").len(), 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            failure_persistence: None,
            ..Default::default()
        })]

        /// Whatever a push puts in `.env`, the parse ends without a panic, and every key it
        /// returns is a valid name.
        #[test]
        fn any_text_parses_without_panic(text in "(?s)[A-Za-z_=:#'\"\\\\$ {}\n\t.é-]{0,80}") {
            for key in parsed(&text).keys() {
                proptest::prop_assert!(!key.is_empty() && !key.contains([' ', '\n', '=']));
            }
        }
    }
}
