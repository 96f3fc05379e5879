//! Hiding credentials in URLs before any text leaves the process.
//!
//! The contract: a URL `https://user:TOKEN@host/x.git` shows as `https://user:***@host/x.git` in
//! every output, error and log line. [`redact`] is applied to arbitrary text (messages, cause
//! chains, JSON lines), so it finds URLs itself, wherever they are in the text.
//!
//! It is hand-rolled rather than built on the `regex` crate on purpose: it runs on every line we
//! print, the grammar it needs is tiny (find `://`, find the userinfo's `@`), and a regex would
//! get the awkward cases wrong anyway (an `@` inside the password means the *last* `@` of the
//! authority ends the userinfo; a raw `/` in a malformed password must still be hidden). Text
//! without `://` is returned borrowed, without allocating.
//!
//! The rules, for each `scheme://` found in the text:
//! - the userinfo is everything before the last `@` of the authority (the authority ends at `/`,
//!   `?`, `#`, whitespace, a quote, a backtick, `<`, `>` or a backslash);
//! - a non-empty password (after the userinfo's first `:`) becomes `***`, the user stays;
//! - for `http`/`https` (also `git+https` and the like), a user without a password is a token
//!   (that is how GitHub tokens are used), so the user becomes `***`;
//! - for other schemes a bare user (`ssh://git@host`) is not a secret and stays;
//! - a malformed URL whose password holds a raw `/` (`https://u:pa/ss@host`) is still redacted:
//!   when the authority has a `:` not followed by a port number and no `@`, the userinfo ends at
//!   the last `@` before the end of the token (whitespace, or an unescaped quote). Erring towards
//!   hiding too much is the safe side.

use std::borrow::Cow;

/// What replaces a secret.
const MASK: &str = "***";

/// `text` with the credentials of every URL in it replaced by `***`; borrowed when there are none.
pub fn redact(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    // How much of `text` has been copied into `out` (or is known to need no change).
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = text[search..].find("://") {
        let separator = search + found;
        let authority = separator + 3;
        search = authority;
        let Some(secret) = secret_range(bytes, separator, authority) else {
            continue;
        };
        let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
        // All the delimiters are ASCII, so these are char boundaries.
        buf.push_str(&text[copied..secret.start]);
        buf.push_str(MASK);
        copied = secret.end;
        search = secret.end;
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut buf) => {
            buf.push_str(&text[copied..]);
            Cow::Owned(buf)
        }
    }
}

/// The byte range to mask in the URL whose `://` is at `separator`, if any.
fn secret_range(
    bytes: &[u8],
    separator: usize,
    authority: usize,
) -> Option<std::ops::Range<usize>> {
    let at = userinfo_end(bytes, authority)?;
    let userinfo = &bytes[authority..at];
    let range = match userinfo.iter().position(|&b| b == b':') {
        Some(colon) if colon + 1 < userinfo.len() => authority + colon + 1..at,
        // No password (or an empty one): only for http(s) is the user itself the secret.
        colon => {
            let user_end = authority + colon.unwrap_or(userinfo.len());
            if user_end == authority || !is_http(scheme(bytes, separator)) {
                return None;
            }
            authority..user_end
        }
    };
    // Already masked: leave it, so that redacting twice changes nothing and allocates nothing.
    (&bytes[range.clone()] != MASK.as_bytes()).then_some(range)
}

/// The position of the `@` that ends the userinfo of the authority starting at `start`, if any.
fn userinfo_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut end = start;
    let mut last_at = None;
    let mut first_colon = None;
    let mut in_brackets = false; // an IPv6 literal: its colons are not a port separator
    while end < bytes.len() {
        match bytes[end] {
            b'/' | b'?' | b'#' | b'\\' => break,
            b if ends_token(b) => break,
            b'@' => last_at = Some(end),
            b'[' => in_brackets = true,
            b']' => in_brackets = false,
            b':' if first_colon.is_none() && !in_brackets => first_colon = Some(end),
            _ => {}
        }
        end += 1;
    }
    if last_at.is_some() {
        return last_at;
    }
    // No `@` in the authority. If it has `user:` followed by something that is not a port, the
    // URL is malformed and may be a password with a raw `/` in it: look further, to the end of
    // the token, for the `@`.
    let colon = first_colon?;
    if bytes[colon + 1..end].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut i = end;
    while i < bytes.len() {
        match bytes[i] {
            // An escaped quote (as in Debug or JSON output) does not end the token.
            b'\\' => i += 1,
            b'@' => last_at = Some(i),
            b if ends_token(b) => break,
            _ => {}
        }
        i += 1;
    }
    last_at
}

/// Bytes that end a URL in running text: whitespace and control characters, quotes, backticks
/// and angle brackets.
fn ends_token(b: u8) -> bool {
    b.is_ascii_whitespace()
        || b.is_ascii_control()
        || matches!(b, b'"' | b'\'' | b'`' | b'<' | b'>')
}

/// The scheme before the `://` at `separator`: the longest run of scheme characters.
fn scheme(bytes: &[u8], separator: usize) -> &[u8] {
    let start = bytes[..separator]
        .iter()
        .rposition(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
        .map_or(0, |p| p + 1);
    &bytes[start..separator]
}

/// `http`, `https`, or a `something+http(s)` scheme, in any case.
fn is_http(scheme: &[u8]) -> bool {
    let last = scheme.rsplit(|&b| b == b'+').next().unwrap_or(scheme);
    last.eq_ignore_ascii_case(b"http") || last.eq_ignore_ascii_case(b"https")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: &str) {
        let got = redact(input);
        assert_eq!(got, expected, "redacting {input:?}");
        // Redacting is idempotent.
        assert_eq!(redact(&got), expected, "redacting twice {input:?}");
    }

    #[track_caller]
    fn unchanged(input: &str) {
        match redact(input) {
            Cow::Borrowed(s) => assert_eq!(s, input),
            Cow::Owned(s) => panic!("{input:?} should be borrowed unchanged, got {s:?}"),
        }
    }

    #[test]
    fn password_is_masked_user_kept() {
        check(
            "https://user:TOKEN@host/x.git",
            "https://user:***@host/x.git",
        );
        check("ssh://git:hunter2@host:22/x", "ssh://git:***@host:22/x");
        check("git://u:p@host", "git://u:***@host");
        check("HTTPS://u:p@host", "HTTPS://u:***@host");
        check("ftp://u:p@h/f", "ftp://u:***@h/f");
    }

    #[test]
    fn http_user_without_password_is_a_token() {
        check(
            "https://ghp_abc123@github.com/o/r.git",
            "https://***@github.com/o/r.git",
        );
        check("http://TOKEN@host", "http://***@host");
        check("git+https://TOKEN@host/x", "git+https://***@host/x");
        // An empty password: the user may still be the token.
        check("https://TOKEN:@host/x", "https://***:@host/x");
    }

    #[test]
    fn ssh_and_other_users_without_password_stay() {
        unchanged("ssh://git@github.com/o/r.git");
        unchanged("git+ssh://git@host/r");
        unchanged("ssh://git:@host/r");
        unchanged("fetching from ssh://deploy@10.0.0.1:2222/srv/app.git failed");
    }

    #[test]
    fn text_without_credentials_is_borrowed() {
        unchanged("");
        unchanged("no url here at all");
        unchanged("https://github.com/o/r.git");
        unchanged("https://host:8443/path/@scope/pkg");
        unchanged("http://[::1]:8080/x@y");
        unchanged("`/srv/app` is not a url, nor is user@host:path");
        unchanged("mail me@example.com about http://host/x");
        unchanged("https://");
        unchanged("://");
        unchanged("a://");
        unchanged("https://@host/x");
        unchanged("https://***@host/x");
        unchanged("https://user:***@host/x");
        unchanged("file:///srv/repo.git");
        unchanged("git://host/u@x");
    }

    #[test]
    fn several_urls_in_one_text() {
        check(
            "failed to fetch `main` from `https://u:p1@a/x`, then `http://TOK@b/y` and ssh://git@c/z",
            "failed to fetch `main` from `https://u:***@a/x`, then `http://***@b/y` and ssh://git@c/z",
        );
        check(
            "https://a:1@h https://b:2@h",
            "https://a:***@h https://b:***@h",
        );
        check(
            "https://a:1@h,https://b:2@h",
            "https://a:***@h,https://b:***@h",
        );
    }

    #[test]
    fn urls_in_quotes_backticks_and_json() {
        check("\"https://u:secret@h/x\"", "\"https://u:***@h/x\"");
        check("'https://u:secret@h'", "'https://u:***@h'");
        check("`https://u:secret@h`", "`https://u:***@h`");
        check("<https://u:secret@h>", "<https://u:***@h>");
        check("(https://u:secret@h)", "(https://u:***@h)");
        check(
            r#"{"url":"https://TOKEN@host","mail":"a@b","other":"https://u:p@h2"}"#,
            r#"{"url":"https://***@host","mail":"a@b","other":"https://u:***@h2"}"#,
        );
        // A URL ending right before a quote followed by an `@` elsewhere.
        check(
            r#"["https://h", "x@y", "https://u:p@z"]"#,
            r#"["https://h", "x@y", "https://u:***@z"]"#,
        );
    }

    #[test]
    fn hostile_passwords() {
        // `@` in the password: the last `@` of the authority ends the userinfo.
        check("https://a:b@c@d/x", "https://a:***@d/x");
        check("https://a:b@c@d", "https://a:***@d");
        // No user.
        check("http://:pw@h", "http://:***@h");
        check("http://:pw@h/", "http://:***@h/");
        // Percent-encoded.
        check("https://u:p%40ss%2Fw@h/x", "https://u:***@h/x");
        check("https://us%3Aer:p@h", "https://us%3Aer:***@h");
        // A second `:` belongs to the password.
        check("https://u:a:b@h", "https://u:***@h");
        // Malformed: a raw `/` or `?` in the password still does not leak it.
        check("https://u:pa/ss@host/x", "https://u:***@host/x");
        check("https://u:pa?ss@host", "https://u:***@host");
        check("https://u:pa/s@s@host/x", "https://u:***@host/x");
        // An escaped quote in the password, as Debug or JSON prints it.
        check(r#""https://u:p\"w@h/x""#, r#""https://u:***@h/x""#);
        check(
            r#"{"u":"https://u:p\"w@h/x","m":"a@b"}"#,
            r#"{"u":"https://u:***@h/x","m":"a@b"}"#,
        );
        // A password that looks like a mask but is not one.
        check("https://u:****@h", "https://u:***@h");
    }

    #[test]
    fn url_at_the_end_of_the_text() {
        check("cannot reach https://u:p@h", "cannot reach https://u:***@h");
        check("cannot reach https://u:p@", "cannot reach https://u:***@");
        check("cannot reach https://TOKEN@", "cannot reach https://***@");
        unchanged("cannot reach https://u:p");
    }

    #[test]
    fn scheme_is_found_in_running_text() {
        check("x=https://u:p@h", "x=https://u:***@h");
        check("(ssh://u:p@h)", "(ssh://u:***@h)");
        // A `://` without a scheme still loses its password.
        check("://u:p@h", "://u:***@h");
        check("a://b://c:d@e", "a://b://c:***@e");
    }

    #[test]
    fn non_ascii_text_and_credentials() {
        check(
            "ошибка: https://пользователь:пароль@хост/репо — снова",
            "ошибка: https://пользователь:***@хост/репо — снова",
        );
        check("🚀 https://tök€n@höst/x 🚀", "🚀 https://***@höst/x 🚀");
        unchanged("日本語のテキスト、URLなし");
        unchanged("ssh://gït@höst/x");
    }

    #[test]
    fn ipv6_hosts() {
        check("https://u:p@[::1]:8443/x", "https://u:***@[::1]:8443/x");
        check("https://TOKEN@[fe80::1]/x", "https://***@[fe80::1]/x");
        unchanged("git://[::1]:9418/repo");
    }

    #[test]
    fn control_characters_end_a_url() {
        check(
            "https://u:p@h\nhttps://v:q@h",
            "https://u:***@h\nhttps://v:***@h",
        );
        check("https://u:p@h\tx@y", "https://u:***@h\tx@y");
        unchanged("http://h:x\n@y");
    }
}
