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
//! - the userinfo is everything before an `@` of the authority (the authority ends at `/`, `?`,
//!   `#`, whitespace, a double quote, a backtick, `<`, `>` or a backslash); where that is
//!   ambiguous (several `@`, or a `'`, which RFC 3986 allows raw in a password but which may
//!   also close a quoted URL), every reading is taken and whatever any of them calls a secret is
//!   masked;
//! - a non-empty password (after the userinfo's first `:`) becomes `***`, the user stays;
//! - for `http`/`https` (also `git+https` and the like), a user without a password is a token
//!   (that is how GitHub tokens are used), so the user becomes `***`;
//! - for other schemes a bare user (`ssh://git@host`) is not a secret and stays;
//! - a malformed URL whose password holds a raw `/` (`https://u:pa/ss@host`) is still redacted:
//!   when the authority has a `:` not followed by a port number and no `@`, the userinfo ends at
//!   the last `@` before the end of the token (whitespace, or an unescaped quote). Erring towards
//!   hiding too much is the safe side.
//!
//! Secrets that never were in a URL (a token read from `PULLSTART_TOKEN` or a token file, a
//! password a credential helper returned) are registered with [`add_secret`] as soon as they are
//! read; from then on [`redact`] also replaces every occurrence of them (and of the forms JSON
//! and `{:?}` escaping give them) with `***`, wherever they are in the text. Secrets shorter than
//! [`MIN_SECRET_LEN`] characters are not registered: masking every `abc` in every line would make
//! the output unreadable while hiding nothing a guess would not find.

use std::borrow::Cow;
use std::sync::RwLock;

/// What replaces a secret.
const MASK: &str = "***";

/// The shortest secret [`add_secret`] registers.
pub const MIN_SECRET_LEN: usize = 4;

/// The registered secrets and their escaped forms, longest first (so that a secret that contains
/// another one is masked whole).
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers `secret` so that [`redact`] masks it wherever it appears, for the rest of the process.
pub fn add_secret(secret: &str) {
    if secret.chars().count() < MIN_SECRET_LEN {
        return;
    }
    let mut forms = vec![secret.to_owned()];
    // As JSON and Rust's Debug escape it (quotes, backslashes, control characters, non-ASCII).
    let json = serde_json::to_string(secret).unwrap_or_default();
    let debug = format!("{secret:?}");
    for quoted in [json, debug] {
        if let Some(inner) = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
            forms.push(inner.to_owned());
        }
    }
    let mut secrets = SECRETS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for form in forms {
        if !secrets.contains(&form) {
            secrets.push(form);
        }
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with the credentials of every URL in it, and every registered secret, replaced by
/// `***`; borrowed when there are none.
pub fn redact(text: &str) -> Cow<'_, str> {
    match redact_urls(text) {
        Cow::Borrowed(text) => mask_secrets(text),
        Cow::Owned(text) => Cow::Owned(mask_secrets(&text).into_owned()),
    }
}

/// Every registered secret in `text` replaced by `***`.
fn mask_secrets(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !secrets.iter().any(|secret| text.contains(secret.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_owned();
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    Cow::Owned(out)
}

/// `text` with the credentials of every URL in it replaced by `***`.
fn redact_urls(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    // How much of `text` has been copied into `out` (or is known to need no change).
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = text[search..].find("://") {
        let separator = search + found;
        let authority = separator + 3;
        search = authority;
        let secrets = secret_ranges(bytes, separator, authority);
        if secrets.is_empty() {
            continue;
        }
        let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
        for secret in secrets {
            // All the delimiters are ASCII, so these are char boundaries.
            buf.push_str(&text[copied..secret.start]);
            buf.push_str(MASK);
            copied = secret.end;
            search = secret.end;
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut buf) => {
            buf.push_str(&text[copied..]);
            Cow::Owned(buf)
        }
    }
}

/// The byte ranges to mask in the URL whose `://` is at `separator`, in order, not overlapping.
///
/// Where the end of the userinfo is ambiguous, every reading is taken and whatever any of them
/// calls a secret is masked:
/// - a `'` is both a character RFC 3986 allows raw in a password and a quote that may close the
///   URL in running text (`http://u:pa'ss@h`, `'http://TOKEN@h'x:y@z`);
/// - with several `@` in the authority, each may end the userinfo: a password may hold an `@`
///   (`https://a:b@c@d`, where the last one does), or text glued to the URL may hold one
///   (`http://TOKEN@host:1@`, where the first one does).
fn secret_ranges(bytes: &[u8], separator: usize, authority: usize) -> Vec<std::ops::Range<usize>> {
    let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
    for quote_closes in [true, false] {
        for at in userinfo_ends(bytes, authority, quote_closes) {
            if let Some(range) = secret_range(bytes, separator, authority, at) {
                ranges.push(range);
            }
        }
    }
    ranges.sort_by_key(|range| (range.start, range.end));
    let mut merged: Vec<std::ops::Range<usize>> = Vec::new();
    for range in ranges {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    // Already masked: leave it, so that redacting twice changes nothing and allocates nothing.
    merged.retain(|range| &bytes[range.clone()] != MASK.as_bytes());
    merged
}

/// The byte range to mask in the URL whose `://` is at `separator`, when its userinfo ends at
/// the `@` at `at`.
fn secret_range(
    bytes: &[u8],
    separator: usize,
    authority: usize,
    at: usize,
) -> Option<std::ops::Range<usize>> {
    let userinfo = &bytes[authority..at];
    match userinfo.iter().position(|&b| b == b':') {
        Some(colon) if colon + 1 < userinfo.len() => Some(authority + colon + 1..at),
        // No password (or an empty one): only for http(s) is the user itself the secret.
        colon => {
            let user_end = authority + colon.unwrap_or(userinfo.len());
            (user_end != authority && is_http(scheme(bytes, separator)))
                .then_some(authority..user_end)
        }
    }
}

/// The positions of the `@`s that may end the userinfo of the authority starting at `start`;
/// `quote_closes`: a `'` ends the URL.
fn userinfo_ends(bytes: &[u8], start: usize, quote_closes: bool) -> Vec<usize> {
    let mut end = start;
    let mut ats = Vec::new();
    let mut first_colon = None;
    let mut in_brackets = false; // an IPv6 literal: its colons are not a port separator
    while end < bytes.len() {
        match bytes[end] {
            b'/' | b'?' | b'#' | b'\\' => break,
            b if ends_token(b, quote_closes) => break,
            b'@' => ats.push(end),
            b'[' => in_brackets = true,
            b']' => in_brackets = false,
            b':' if first_colon.is_none() && !in_brackets => first_colon = Some(end),
            _ => {}
        }
        end += 1;
    }
    if !ats.is_empty() {
        return ats;
    }
    // No `@` in the authority. If it has `user:` followed by something that is not a port, the
    // URL is malformed and may be a password with a raw `/` in it: look further, to the end of
    // the token, for the `@`.
    let Some(colon) = first_colon else {
        return ats;
    };
    if bytes[colon + 1..end].iter().all(u8::is_ascii_digit) {
        return ats;
    }
    let mut i = end;
    while i < bytes.len() {
        match bytes[i] {
            // An escaped quote (as in Debug or JSON output) does not end the token.
            b'\\' => i += 1,
            b'@' => ats.push(i),
            b if ends_token(b, quote_closes) => break,
            _ => {}
        }
        i += 1;
    }
    ats
}

/// Bytes that end a URL in running text: whitespace and control characters, double quotes,
/// backticks and angle brackets (none of which a URL holds raw), and, when `quote_closes`, `'`.
fn ends_token(b: u8, quote_closes: bool) -> bool {
    b.is_ascii_whitespace()
        || b.is_ascii_control()
        || matches!(b, b'"' | b'`' | b'<' | b'>')
        || (quote_closes && b == b'\'')
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
        // `'` is allowed raw in a password, and also closes a quoted URL: both readings count.
        check("http://0:~a'=0_@a", "http://0:***@a");
        check(" http://0:!0_A&'@a ", " http://0:***@a ");
        check("'http://u:a'b@h'", "'http://u:***@h'");
        check("'http://TOKEN@h'x:y@z", "'http://***@h'x:***@z");
        check(
            "'https://u:secret@h' and 'x@y'",
            "'https://u:***@h' and 'x@y'",
        );
        // Text glued to a URL with an `@` in it.
        check(" http://a--aa0@a:0@", " http://***@a:***@");
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
    fn registered_secrets_are_masked_anywhere() {
        // Unique strings: the registry is process-wide and other tests share it.
        let secret = "zq-unit-secret-7Hk\"x\\y";
        add_secret(secret);
        check(&format!("token {secret} in a line"), "token *** in a line");
        // As JSON and Debug escape it.
        let json = serde_json::json!({ "error": format!("bad {secret}") }).to_string();
        assert_eq!(redact(&json), r#"{"error":"bad ***"}"#);
        check(&format!("{:?}", format!("x{secret}x")), "\"x***x\"");
        // Inside a URL as a bare token, and glued to other text.
        check(
            &format!("https://{secret}@h/x and a{secret}b"),
            "https://***@h/x and a***b",
        );
        // A secret that contains another registered one is masked whole.
        add_secret("zq-unit-inner");
        add_secret("zq-unit-inner-and-more");
        check("zq-unit-inner-and-more zq-unit-inner", "*** ***");
        // Short secrets are not registered.
        add_secret("abc");
        unchanged("abc abc");
        unchanged("no secret here");
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
