//! Which files of a build context can reach the image built from it, so that a change to a file
//! that cannot (a README the Dockerfile never copies, a path `.dockerignore` excludes) does not
//! rebuild.
//!
//! Two things are read, both from the checkout as it is before the update (a change to either
//! file itself rebuilds, so the old copy is the one that decides only when it did not change):
//!
//! - the ignore file BuildKit uses: `<Dockerfile>.dockerignore` beside the Dockerfile when it
//!   exists, else `.dockerignore` at the context's root. Its lines are read as moby's
//!   `ignorefile.ReadAll` reads them and matched as `patternmatcher.MatchesOrParentMatches`
//!   matches them (ported below): a pattern matches a path or any of its parent directories,
//!   `*` and `?` stop at `/`, `**` crosses directories, the last matching line decides, and `!`
//!   re-includes even below an excluded directory. This is not gitignore (`*.md` matches only at
//!   the context's root), so neither `ignore` nor `globset` gives these semantics;
//! - the Dockerfile's context sources: the sources of `COPY` and `ADD` without `--from`, and
//!   the `source` of `RUN --mount=type=bind` without `from`. Where that cannot be read simply
//!   (a variable in a source, a base image named `*onbuild*` whose triggers copy unknown
//!   sources, a line that does not parse), every file not ignored counts.

use std::path::{Path, PathBuf};

use gix::bstr::{BStr, BString, ByteSlice};

/// What of a build context reaches the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    /// The ignore file in effect (repo-relative) and its patterns; `None` when there is none
    /// (or it could not be read: then BuildKit fails the build, and every file counts here).
    pub ignore: Option<(BString, Patterns)>,
    /// The Dockerfile's context sources; `None` when they could not be read simply: every file
    /// not ignored counts.
    pub sources: Option<Patterns>,
}

impl Reach {
    /// Whether a file at `relative` (to the context) can reach the image.
    pub fn includes(&self, relative: &BStr) -> bool {
        let ignored = self
            .ignore
            .as_ref()
            .is_some_and(|(_, patterns)| patterns.matches(relative));
        !ignored && self.sources.as_ref().is_none_or(|s| s.matches(relative))
    }
}

/// The ignore file and the Dockerfile's sources of a context, as BuildKit would read them.
/// `dockerfile` is the Dockerfile's path (`None` for `dockerfile_inline`) and `text` its
/// content (`None` when it cannot be read). Returns the ignore files whose change changes what
/// the build is sent (absolute), and the [`Reach`] with the ignore file still absolute.
pub fn inspect(
    context: &Path,
    dockerfile: Option<&Path>,
    text: Option<&str>,
) -> (Vec<PathBuf>, Option<(PathBuf, Patterns)>, Option<Patterns>) {
    let root_ignore = context.join(".dockerignore");
    let own_ignore = dockerfile.map(|d| {
        let mut name = d.as_os_str().to_owned();
        name.push(".dockerignore");
        PathBuf::from(name)
    });
    // BuildKit prefers the Dockerfile's own ignore file; adding one changes what is sent too.
    let (candidates, in_effect) = match own_ignore {
        Some(own) if own.is_file() => (vec![own.clone()], Some(own)),
        Some(own) => (vec![own, root_ignore.clone()], Some(root_ignore)),
        None => (vec![root_ignore.clone()], Some(root_ignore)),
    };
    let ignore = in_effect.and_then(|file| {
        let text = std::fs::read_to_string(&file).ok()?;
        Patterns::from_ignore_file(&text).ok().map(|p| (file, p))
    });
    (candidates, ignore, text.and_then(dockerfile_sources))
}

/// `.dockerignore` patterns (or `COPY` sources), matched as moby's `patternmatcher` does.
#[derive(Clone, Default)]
pub struct Patterns {
    patterns: Vec<Pattern>,
}

#[derive(Clone)]
struct Pattern {
    /// The cleaned pattern without its `!`.
    text: String,
    exclusion: bool,
    matcher: Matcher,
}

#[derive(Clone)]
enum Matcher {
    Exact,
    /// `foo/**`: the text before the `**`.
    Prefix,
    /// `**/foo`: the text after the `**`.
    Suffix,
    Regex(regex::bytes::Regex),
}

impl PartialEq for Patterns {
    fn eq(&self, other: &Self) -> bool {
        self.texts().eq(other.texts())
    }
}

impl Eq for Patterns {}

impl std::fmt::Debug for Patterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.texts()).finish()
    }
}

impl Patterns {
    /// Compile `lines` as `patternmatcher.New` does; `Err` for a pattern BuildKit refuses too.
    pub fn new<S: AsRef<str>>(lines: &[S]) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for line in lines {
            let line = line.as_ref().trim();
            if line.is_empty() {
                continue;
            }
            let cleaned = clean(line);
            let (exclusion, text) = match cleaned.strip_prefix('!') {
                Some("") => return Err("illegal exclusion pattern: \"!\"".into()),
                Some(rest) => (true, rest.to_string()),
                None => (false, cleaned),
            };
            let matcher = compile(&text).map_err(|e| format!("bad pattern `{text}`: {e}"))?;
            patterns.push(Pattern {
                text,
                exclusion,
                matcher,
            });
        }
        Ok(Patterns { patterns })
    }

    /// The patterns of an ignore file's text, read as `ignorefile.ReadAll` reads them.
    pub fn from_ignore_file(text: &str) -> Result<Self, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = Vec::new();
        for line in text.lines() {
            // A comment only where `#` is the first character, before trimming.
            if line.starts_with('#') {
                continue;
            }
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (invert, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let mut pattern = if pattern.is_empty() {
                String::new()
            } else {
                clean(pattern)
            };
            if pattern.len() > 1 && pattern.starts_with('/') {
                pattern.remove(0);
            }
            lines.push(if invert {
                format!("!{pattern}")
            } else {
                pattern
            });
        }
        Self::new(&lines)
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as cleaned, `, `-separated.
    pub fn list(&self) -> String {
        self.texts().collect::<Vec<_>>().join(", ")
    }

    fn texts(&self) -> impl Iterator<Item = String> + '_ {
        self.patterns.iter().map(|p| {
            if p.exclusion {
                format!("!{}", p.text)
            } else {
                p.text.clone()
            }
        })
    }

    /// `MatchesOrParentMatches`: whether `path` (relative, slash-separated, clean) or one of its
    /// parent directories matches, the last matching pattern deciding.
    pub fn matches(&self, path: &BStr) -> bool {
        let parents: Vec<&[u8]> = path
            .find_iter("/")
            .map(|slash| &path.as_bytes()[..slash])
            .collect();
        let mut matched = false;
        for pattern in &self.patterns {
            // An inclusion cannot change a match, nor an exclusion a non-match.
            if pattern.exclusion != matched {
                continue;
            }
            if pattern.is_match(path) || parents.iter().any(|dir| pattern.is_match(dir)) {
                matched = !pattern.exclusion;
            }
        }
        matched
    }
}

impl Pattern {
    fn is_match(&self, path: &[u8]) -> bool {
        let text = self.text.as_bytes();
        match &self.matcher {
            Matcher::Exact => path == text,
            Matcher::Prefix => path.starts_with(&text[..text.len() - 2]),
            Matcher::Suffix => {
                let suffix = &text[2..];
                // `**/foo` also matches `foo` itself.
                path.ends_with(suffix) || (suffix.first() == Some(&b'/') && path == &suffix[1..])
            }
            Matcher::Regex(re) => re.is_match(path),
        }
    }
}

/// patternmatcher's translation of a cleaned pattern into a matcher: exact text, a prefix
/// (`foo/**`), a suffix (`**/foo`) or a regular expression.
fn compile(pattern: &str) -> Result<Matcher, String> {
    #[derive(PartialEq)]
    enum Kind {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut re = String::from("^");
    let mut kind = Kind::Exact;
    let mut chars = pattern.chars().peekable();
    let mut first = true;
    while let Some(ch) = chars.next() {
        match ch {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next(); // `**/` is `**`
                }
                if chars.peek().is_none() {
                    // A trailing `**` accepts everything, as in .gitignore.
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = Kind::Regex;
                    }
                } else {
                    // Any number of directories, none too.
                    re.push_str("(.*/)?");
                    kind = Kind::Regex;
                }
                if first {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = Kind::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                kind = Kind::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => match chars.next() {
                Some(next) => {
                    re.push('\\');
                    re.push(next);
                    kind = Kind::Regex;
                }
                // Go's filepath.Match refuses a trailing backslash, and so does BuildKit.
                None => return Err("a trailing backslash".into()),
            },
            '[' | ']' => {
                re.push(ch);
                kind = Kind::Regex;
            }
            other => re.push(other),
        }
        first = false;
    }
    Ok(match kind {
        Kind::Exact => Matcher::Exact,
        Kind::Prefix => Matcher::Prefix,
        Kind::Suffix => Matcher::Suffix,
        Kind::Regex => {
            re.push('$');
            Matcher::Regex(regex::bytes::Regex::new(&re).map_err(|e| e.to_string())?)
        }
    })
}

/// Go's `filepath.Clean` for slash-separated paths: no empty or `.` elements, `..` resolved
/// lexically, no trailing slash; "." for nothing.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// The files of the context a Dockerfile reads: `Some` (possibly empty: it reads none) when
/// every `COPY`/`ADD`/`RUN --mount=type=bind` could be read, `None` when any could not (every
/// file then counts). Sources naming the whole context give a pattern matching everything.
pub fn dockerfile_sources(dockerfile: &str) -> Option<Patterns> {
    let mut sources: Vec<String> = Vec::new();
    for instruction in instructions(dockerfile)? {
        let (word, args) = split_word(&instruction);
        match word.to_ascii_uppercase().as_str() {
            // `ONBUILD COPY` triggers of such a base image copy sources this file never names.
            "FROM" if args.to_ascii_lowercase().contains("onbuild") => return None,
            "COPY" | "ADD" => sources.extend(copy_sources(args)?),
            "RUN" => sources.extend(bind_mount_sources(args)?),
            _ => {}
        }
    }
    let patterns: Vec<String> = sources
        .iter()
        .map(|s| {
            let cleaned = clean(s);
            let relative = cleaned.trim_start_matches('/');
            if relative.is_empty() || relative == "." {
                "**".to_string() // the whole context
            } else {
                relative.to_string()
            }
        })
        .collect();
    // A source starting with `!` would read as an exception: say so rather than guess.
    if patterns.iter().any(|p| p.starts_with('!')) {
        return None;
    }
    Patterns::new(&patterns).ok()
}

/// The sources of `COPY`/`ADD` arguments (flags, then sources, then the destination) that come
/// from the build context; `None` when they cannot be told.
fn copy_sources(args: &str) -> Option<Vec<String>> {
    let words = words(args)?;
    let mut rest = words.as_slice();
    while let Some(flag) = rest.first().filter(|w| w.starts_with("--")) {
        if flag.starts_with("--from=") {
            return Some(Vec::new()); // from a stage, an image or a named context
        }
        rest = &rest[1..];
    }
    let (_, sources) = rest.split_last()?;
    let mut out = Vec::new();
    for source in sources {
        if source.starts_with("<<") || source.contains("://") || source.starts_with("git@") {
            continue; // a here-document or a remote source: not the context
        }
        if source.contains('$') {
            return None; // a build argument or variable: which files, we cannot tell
        }
        out.push(source.clone());
    }
    Some(out)
}

/// The context sources of `RUN --mount=type=bind[,source=...]` (bind is the default type and the
/// context root the default source); other mounts and mounts `from` elsewhere read none.
fn bind_mount_sources(args: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for word in args.split_whitespace() {
        let Some(spec) = word.strip_prefix("--mount=") else {
            if word.starts_with("--") {
                continue;
            }
            break; // the command itself
        };
        if spec.contains('$') {
            return None;
        }
        let mut kind = "bind";
        let mut source = ".";
        let mut from = false;
        for field in spec.split(',') {
            let (key, value) = field.split_once('=').unwrap_or((field, ""));
            match key {
                "type" => kind = value,
                "source" | "src" => source = value,
                "from" => from = true,
                _ => {}
            }
        }
        if kind == "bind" && !from {
            out.push(source.to_string());
        }
    }
    Some(out)
}

/// The leading `--flags`, then the shell-form words (quotes removed) or the JSON array form.
fn words(args: &str) -> Option<Vec<String>> {
    let mut rest = args.trim();
    let mut out = Vec::new();
    while rest.starts_with("--") {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        out.push(rest[..end].to_string());
        rest = rest[end..].trim_start();
    }
    match serde_json::from_str::<Vec<String>>(rest) {
        Ok(words) if rest.starts_with('[') => out.extend(words),
        _ => out.extend(shell_words::split(rest).ok()?),
    }
    Some(out)
}

fn split_word(instruction: &str) -> (&str, &str) {
    let instruction = instruction.trim_start();
    match instruction.find(char::is_whitespace) {
        Some(at) => (&instruction[..at], instruction[at..].trim()),
        None => (instruction, ""),
    }
}

/// The Dockerfile's instructions, continuation lines joined, comments, blank lines and
/// here-document bodies left out. `None` for an escape character other than `\` or `` ` ``.
fn instructions(text: &str) -> Option<Vec<String>> {
    let escape = escape_directive(text)?;
    let mut out = Vec::new();
    let mut current = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && !current.is_empty()) {
            continue; // comments (and blank lines) may sit inside a continued instruction
        }
        if trimmed.is_empty() {
            continue;
        }
        match trimmed.strip_suffix(escape) {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                for terminator in heredoc_terminators(&current) {
                    // A `<<` that opens no here-document must not swallow the instructions after
                    // it: without its terminator, the Dockerfile is not read.
                    lines.by_ref().find(|body| body.trim() == terminator)?;
                }
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    Some(out)
}

/// The `# escape=` parser directive (it must come before any instruction); `\` by default.
fn escape_directive(text: &str) -> Option<char> {
    for line in text.lines() {
        let trimmed = line.trim();
        let Some(directive) = trimmed.strip_prefix('#') else {
            break;
        };
        let directive = directive.trim().to_ascii_lowercase();
        if let Some(value) = directive
            .strip_prefix("escape")
            .and_then(|rest| rest.trim_start().strip_prefix('='))
        {
            return match value.trim() {
                "\\" => Some('\\'),
                "`" => Some('`'),
                _ => None,
            };
        }
    }
    Some('\\')
}

/// The terminators of the here-documents an instruction opens (`<<EOF`, `<<-"EOF"`).
fn heredoc_terminators(instruction: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = instruction;
    while let Some(at) = rest.find("<<") {
        let after = rest[at + 2..].trim_start_matches('-');
        let word: String = after
            .trim_start_matches(['"', '\''])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !word.is_empty() {
            out.push(word);
        }
        rest = &rest[at + 2..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignored(file: &str, path: &str) -> bool {
        Patterns::from_ignore_file(file)
            .unwrap()
            .matches(path.into())
    }

    #[test]
    fn dockerignore_patterns_match_as_buildkit_does() {
        // A pattern without a slash is anchored at the context root (unlike .gitignore).
        assert!(ignored("*.md\n", "README.md"));
        assert!(!ignored("*.md\n", "docs/guide.md"));
        assert!(ignored("**/*.md\n", "docs/guide.md"));
        assert!(ignored("**/*.md\n", "README.md"));
        // A directory excludes what lies below it; a trailing or leading slash changes nothing.
        assert!(ignored("node_modules\n", "node_modules/a/b.js"));
        assert!(ignored("/docs/\n", "docs/a.txt"));
        assert!(!ignored("docs\n", "docsite/a.txt"));
        // `*` stops at a slash, `**` does not; `?` is one character.
        assert!(ignored("src/*/test\n", "src/a/test/x.py"));
        assert!(!ignored("src/*\n", "srcx/a"));
        assert!(ignored("a/**/z\n", "a/z"));
        assert!(ignored("a/**/z\n", "a/b/c/z"));
        assert!(ignored("a/**\n", "a/b/c"));
        assert!(ignored("file?.txt\n", "file1.txt"));
        assert!(!ignored("file?.txt\n", "file/.txt"));
        // The last matching line decides, and `!` re-includes below an excluded directory.
        assert!(!ignored("docs\n!docs/keep.md\n", "docs/keep.md"));
        assert!(ignored("docs\n!docs/keep.md\n", "docs/other.md"));
        assert!(ignored("*.txt\n!a.txt\na*\n", "a.txt"));
        // Comments only at the very start of a line; blank lines, spaces and a BOM are dropped.
        assert!(ignored("\u{feff}  # not a comment\n", "# not a comment"));
        assert!(!ignored("# a comment\n\n   \n", "# a comment"));
        assert!(ignored("  secret.txt  \r\n", "secret.txt"));
        // Regex characters are literal, `\` escapes, classes work.
        assert!(ignored("a+b(1).txt\n", "a+b(1).txt"));
        assert!(!ignored("a.txt\n", "abtxt"));
        assert!(ignored("\\*.txt\n", "*.txt"));
        assert!(!ignored("\\*.txt\n", "a.txt"));
        assert!(ignored("[a-c].py\n", "b.py"));
        assert!(!ignored("[^a-c].py\n", "b.py"));
        // `..` that leaves the context never matches; `.` never matches a file.
        assert!(!ignored("../x\n", "x"));
        assert!(!ignored(".\n", "x"));
    }

    #[test]
    fn dockerignore_lines_buildkit_refuses_are_errors() {
        assert!(Patterns::from_ignore_file("!\n").is_err());
        assert!(Patterns::from_ignore_file("[a-\n").is_err());
        assert!(Patterns::from_ignore_file("a\\\n").is_err());
    }

    #[test]
    fn clean_is_gos_filepath_clean() {
        for (input, want) in [
            ("a/b/", "a/b"),
            ("./a//b/./c", "a/b/c"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("", "."),
            ("./", "."),
            ("/", "/"),
        ] {
            assert_eq!(clean(input), want, "{input}");
        }
    }

    fn reads(dockerfile: &str, path: &str) -> bool {
        dockerfile_sources(dockerfile)
            .unwrap_or_else(|| panic!("unreadable: {dockerfile}"))
            .matches(path.into())
    }

    #[test]
    fn copy_and_add_sources_decide_which_files_reach_the_image() {
        let df = "FROM python:3.12 AS base\n\
                  # COPY everything/ /nope\n\
                  COPY requirements.txt /app/\n\
                  ADD --chown=1:1 [\"src\", \"/app/src\"]\n\
                  COPY --from=base /x /y\n\
                  ADD https://example.com/a.tgz /a\n\
                  COPY --link conf/*.ini \\\n     static/ /etc/app/\n\
                  RUN --mount=type=bind,source=tools,target=/t --mount=type=cache,target=/c make\n";
        for path in [
            "requirements.txt",
            "src/a/b.py",
            "conf/app.ini",
            "static/x.css",
            "tools/build.sh",
        ] {
            assert!(reads(df, path), "{path}");
        }
        for path in [
            "README.md",
            "conf/sub/app.ini",
            "x",
            "everything/a",
            "srcs/a",
        ] {
            assert!(!reads(df, path), "{path}");
        }
    }

    #[test]
    fn sources_naming_the_whole_context_read_every_file() {
        assert!(reads("FROM x\nCOPY . /app\n", "a/b/c"));
        assert!(reads("FROM x\nCOPY ./ /app\n", "README.md"));
        assert!(reads(
            "FROM x\nRUN --mount=type=bind,target=/src make\n",
            "a"
        ));
        assert!(!reads("FROM nginx\nRUN echo hi\n", "index.html"));
    }

    #[test]
    fn heredocs_escapes_and_continuations() {
        let df = "# escape=`\nFROM x\nRUN <<EOF\nCOPY secret /s\nEOF\nCOPY a `\n  b /dst\n";
        assert!(reads(df, "a"));
        assert!(reads(df, "b"));
        assert!(!reads(df, "secret"));
        assert!(!reads(
            "FROM x\nCOPY <<EOF /etc/conf\nCOPY y /z\nEOF\n",
            "y"
        ));
    }

    #[test]
    fn what_cannot_be_read_simply_is_none() {
        assert_eq!(
            dockerfile_sources("FROM x\nARG D=src\nCOPY $D /app\n"),
            None
        );
        assert_eq!(dockerfile_sources("FROM node:8-onbuild\n"), None);
        assert_eq!(dockerfile_sources("# escape=|\nFROM x\n"), None);
        assert_eq!(dockerfile_sources("FROM x\nCOPY \"unterminated /a\n"), None);
        // A `<<` without its terminator would hide every instruction after it.
        assert_eq!(
            dockerfile_sources("FROM x\nRUN echo 'a<<b'\nCOPY src /app\n"),
            None
        );
    }
}
