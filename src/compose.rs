//! What the compose project says about the checkout: which services bind-mount, build from,
//! read env files from or watch which paths inside it, which anonymous volumes they keep, and
//! which files define the project. For each build, what of its context reaches the image is read
//! from the context's ignore file and Dockerfile (`build_context`).
//!
//! The project is learnt from `<compose> config` (read-only), so override files, profiles,
//! `extends` and variable interpolation are already resolved by compose itself. Both Compose v2
//! (`docker compose`) and Compose v1 (`docker-compose` 1.29) output are understood:
//!
//! - v2 writes volumes in long syntax (`{type: bind, source: /abs, target: /app}`), a top-level
//!   `name:`, keeps `develop.watch`, and writes a disabled healthcheck as `disable: true`;
//! - v1 writes short-syntax volumes (`/abs/src:/app:rw`) unless they were long syntax in the
//!   file, has no `name:` but `version:`, writes a disabled healthcheck as `test: [NONE]`, and
//!   rejects a file with `develop` ("Unsupported config option for services.web: 'develop'");
//! - neither lists `env_file` in `config` output (both fold the files into `environment`).
//!   v2 keeps `env_file` with `config --no-interpolate`, so that is asked for too when the compose
//!   files mention `env_file`; for v1 the compose files themselves are read for it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use gix::bstr::BString;
use serde_yaml::Value;

use crate::build_context::{self, Reach};
use crate::health::strip_escapes;
use crate::{dotenv, regular_file};

/// The compose project, as far as the checkout is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Project {
    /// Sorted by name.
    pub services: Vec<Service>,
    /// Repo-relative paths (slash-separated, inside the checkout) of the files that define the
    /// project: the compose files compose read (the `-f` files, or the default
    /// compose.yaml/compose.yml/docker-compose.yml/docker-compose.yaml plus the override file that
    /// exists) and the project directory's `.env` (or the `--env-file`s) if present.
    pub definition_files: Vec<BString>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Service {
    pub name: String,
    /// Bind mounts whose source lies inside the checkout (or is the checkout: then the source is
    /// empty). File-based `secrets` and
    /// `configs` are bind mounts too and are listed here with their in-container target.
    pub binds: Vec<Bind>,
    /// Only when the build context lies inside the checkout.
    pub build: Option<Build>,
    /// Repo-relative, only those inside the checkout.
    pub env_files: Vec<BString>,
    /// `develop.watch` (or the older `x-develop.watch`) entries whose path lies inside the
    /// checkout.
    pub watch: Vec<Watch>,
    /// The targets of anonymous volumes (`- /app/node_modules`): they keep what an older image
    /// put there across a recreate.
    pub anonymous_volumes: Vec<String>,
    /// A healthcheck is present and not disabled.
    pub has_healthcheck: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Repo-relative; empty = the whole checkout.
    pub source: BString,
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Build {
    /// Repo-relative, "" = the root of the checkout.
    pub context: BString,
    /// Repo-relative path of the Dockerfile; empty when it is not a file inside the checkout
    /// (`dockerfile_inline`, or a Dockerfile outside).
    pub dockerfile: BString,
    /// Repo-relative ignore files whose change changes what the build is sent: the Dockerfile's
    /// own `<Dockerfile>.dockerignore` and, while that does not exist, the context's
    /// `.dockerignore`.
    pub ignore_files: Vec<BString>,
    /// Which files of the context can reach the image.
    pub reach: Reach,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchAction {
    Sync,
    Rebuild,
    Restart,
    SyncRestart,
    SyncExec,
}

impl WatchAction {
    /// Compose's own spelling (`sync+restart`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            WatchAction::Sync => "sync",
            WatchAction::Rebuild => "rebuild",
            WatchAction::Restart => "restart",
            WatchAction::SyncRestart => "sync+restart",
            WatchAction::SyncExec => "sync+exec",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "sync" => WatchAction::Sync,
            "rebuild" => WatchAction::Rebuild,
            "restart" => WatchAction::Restart,
            "sync+restart" => WatchAction::SyncRestart,
            "sync+exec" => WatchAction::SyncExec,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// Repo-relative; empty = the whole checkout.
    pub path: BString,
    pub action: WatchAction,
    /// Patterns relative to `path`, as compose gives them.
    pub ignore: Vec<String>,
    /// Where it was declared: `develop` or `x-develop`.
    pub section: &'static str,
}

/// Run `<prefix> config` (read-only) in `workdir` and parse it. `timeout` bounds each compose
/// invocation (there are two when env files must be looked up with Compose v2).
///
/// A compose command that cannot start, exits non-zero or times out is a plain error carrying
/// compose's last stderr line; the caller falls back to "all services".
pub fn read(prefix: &[String], workdir: &Path, timeout: Duration) -> anyhow::Result<Project> {
    let yaml = run_compose(prefix, &["config"], workdir, timeout)?;
    let files = DefinitionFiles::find(prefix, workdir);
    let definition_files = files.repo_relative(workdir);
    let mut project = parse_in(&yaml, workdir, &files.project_dir, definition_files)?;

    // `config` folds env files into `environment`; find them another way, but only when a
    // compose file mentions them at all (no extra work for the common project without any).
    let mentions_env_file = files
        .compose_files
        .iter()
        .any(|f| read_compose_file(f).map_or(true, |text| text.contains("env_file")));
    if mentions_env_file && !output_has_env_file(&yaml) {
        let found = if is_v2_output(&yaml) {
            run_compose(prefix, &["config", "--no-interpolate"], workdir, timeout)
                .ok()
                .and_then(|raw| env_files_from_config(&raw, workdir).ok())
                .unwrap_or_default()
        } else {
            env_files_from_compose_files(&files, workdir)
        };
        for service in &mut project.services {
            if let Some(env_files) = found.get(&service.name) {
                service.env_files = env_files.clone();
            }
        }
    }
    Ok(project)
}

/// Parse `config` output (Compose v2 or v1). `workdir` is the checkout's absolute path; paths
/// outside it are dropped. `definition_files` are passed through (config output lacks them).
#[cfg(test)]
pub fn parse(
    yaml: &str,
    workdir: &Path,
    definition_files: Vec<BString>,
) -> anyhow::Result<Project> {
    parse_in(yaml, workdir, workdir, definition_files)
}

/// [`parse`] for a project whose directory is `project_dir`: compose leaves the paths of
/// extension keys (`x-develop`) as written, relative to it.
fn parse_in(
    yaml: &str,
    workdir: &Path,
    project_dir: &Path,
    definition_files: Vec<BString>,
) -> anyhow::Result<Project> {
    let doc: Value = serde_yaml::from_str(yaml).context("compose config output is not YAML")?;
    let root = Root::new(workdir);
    let project_root = Root {
        base: project_dir.to_path_buf(),
        ..root.clone()
    };
    let services = match doc.get("services") {
        // Compose always prints `services:`; empty or other output (a stand-in, a wrapper's
        // chatter) is no project, so that a run restarts all services rather than none.
        None => bail!("compose config printed no `services`"),
        Some(Value::Null) => Vec::new(),
        Some(Value::Mapping(services)) => {
            let mut out = Vec::new();
            for (name, def) in services {
                let Some(name) = name.as_str() else {
                    bail!(
                        "compose config output has a service name that is not a string: {name:?}"
                    );
                };
                out.push(parse_service(name, def, &doc, &root, &project_root));
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            out
        }
        Some(other) => bail!("compose config output: `services` is not a mapping but {other:?}"),
    };
    Ok(Project {
        services,
        definition_files,
    })
}

fn parse_service(
    name: &str,
    def: &Value,
    doc: &Value,
    root: &Root,
    project_root: &Root,
) -> Service {
    let mut service = Service {
        name: name.to_string(),
        ..Service::default()
    };

    // Volumes: long syntax (v2 always, v1 when written so) or short syntax (v1).
    for volume in seq(def.get("volumes")) {
        if let Some(target) = anonymous_volume(volume) {
            service.anonymous_volumes.push(target);
            continue;
        }
        let (source, target) = match volume {
            Value::String(short) => match parse_short_volume(short) {
                Some(pair) => pair,
                None => continue,
            },
            Value::Mapping(_) => {
                if str_of(volume.get("type")) != Some("bind") {
                    continue;
                }
                match (str_of(volume.get("source")), str_of(volume.get("target"))) {
                    (Some(source), Some(target)) => (source.to_string(), target.to_string()),
                    _ => continue,
                }
            }
            _ => continue,
        };
        if let Some(source) = root.relative(Path::new(&source)) {
            service.binds.push(Bind { source, target });
        }
    }

    // File-based secrets and configs are bind-mounted by compose (outside swarm).
    for (key, default_dir) in [("secrets", Some("/run/secrets/")), ("configs", None)] {
        for entry in seq(def.get(key)) {
            let (source, target) = match entry {
                Value::String(source) => (source.as_str(), None),
                Value::Mapping(_) => match str_of(entry.get("source")) {
                    Some(source) => (source, str_of(entry.get("target"))),
                    None => continue,
                },
                _ => continue,
            };
            let Some(file) = doc
                .get(key)
                .and_then(|top| top.get(source))
                .and_then(|d| str_of(d.get("file")))
            else {
                continue;
            };
            let target = match (target, default_dir) {
                (Some(t), _) if t.starts_with('/') => t.to_string(),
                (Some(t), Some(dir)) => format!("{dir}{t}"),
                (Some(t), None) => format!("/{t}"),
                (None, Some(dir)) => format!("{dir}{source}"),
                (None, None) => format!("/{source}"),
            };
            if let Some(source) = root.relative(Path::new(file)) {
                service.binds.push(Bind { source, target });
            }
        }
    }

    service.build = parse_build(def.get("build"), root);
    service.env_files = parse_env_files(def.get("env_file"), root);

    service.watch = parse_watch(def, root, project_root);

    service.has_healthcheck = match def.get("healthcheck") {
        None | Some(Value::Null) => false,
        Some(hc) => {
            let disabled = hc.get("disable").and_then(Value::as_bool) == Some(true)
                || match hc.get("test") {
                    Some(Value::String(s)) => s == "NONE",
                    Some(Value::Sequence(words)) => {
                        words.first().and_then(Value::as_str) == Some("NONE")
                    }
                    _ => false,
                };
            !disabled
        }
    };
    service
}

/// `develop.watch`, else `x-develop.watch`: compose still honours the older spelling, and
/// leaves its paths as written (relative to the project directory) in `config` output.
fn parse_watch(def: &Value, root: &Root, project_root: &Root) -> Vec<Watch> {
    let (section, watch, root) = match (def.get("develop"), def.get("x-develop")) {
        (Some(develop), _) => ("develop", develop.get("watch"), root),
        (None, Some(legacy)) => ("x-develop", legacy.get("watch"), project_root),
        (None, None) => return Vec::new(),
    };
    let mut out = Vec::new();
    for entry in seq(watch) {
        let (Some(path), Some(action)) = (str_of(entry.get("path")), str_of(entry.get("action")))
        else {
            continue;
        };
        let Some(action) = WatchAction::parse(action) else {
            continue; // an action this version does not know: not ours to guess
        };
        let Some(path) = root.relative(Path::new(path)) else {
            continue;
        };
        let ignore = seq(entry.get("ignore"))
            .filter_map(|p| str_of(Some(p)).map(str::to_string))
            .collect();
        out.push(Watch {
            path,
            action,
            ignore,
            section,
        });
    }
    out
}

/// The target of an anonymous volume: long syntax `{type: volume, target}` without a source
/// (Compose v2), or a short `/target` alone (v1).
fn anonymous_volume(volume: &Value) -> Option<String> {
    match volume {
        Value::String(short) => {
            (short.starts_with('/') && !short.contains(':')).then(|| short.clone())
        }
        Value::Mapping(_) => {
            let anonymous = str_of(volume.get("type")) == Some("volume")
                && str_of(volume.get("source")).is_none_or(str::is_empty);
            anonymous.then(|| str_of(volume.get("target")).map(str::to_string))?
        }
        _ => None,
    }
}

fn parse_build(build: Option<&Value>, root: &Root) -> Option<Build> {
    let (context, dockerfile, inline) = match build? {
        Value::String(context) => (context.as_str(), None, None),
        build @ Value::Mapping(_) => (
            str_of(build.get("context")).unwrap_or("."),
            str_of(build.get("dockerfile")),
            str_of(build.get("dockerfile_inline")),
        ),
        _ => return None,
    };
    if context.contains("://") || context.starts_with("git@") {
        return None; // a remote context
    }
    let context_abs = root.resolve(Path::new(context));
    let context_rel = root.relative_resolved(&context_abs)?;
    let dockerfile_abs = inline
        .is_none()
        .then(|| context_abs.join(dockerfile.unwrap_or("Dockerfile")));
    let text = match (&dockerfile_abs, inline) {
        (_, Some(inline)) => Some(inline.to_string()),
        (Some(file), None) => std::fs::read_to_string(file).ok(),
        (None, None) => None,
    };
    let (ignore_files, ignore, sources) =
        build_context::inspect(&context_abs, dockerfile_abs.as_deref(), text.as_deref());
    let relative = |file: &Path| root.relative(file).filter(|rel| !rel.is_empty());
    Some(Build {
        context: context_rel,
        dockerfile: dockerfile_abs
            .as_deref()
            .and_then(relative)
            .unwrap_or_default(),
        ignore_files: ignore_files.iter().filter_map(|f| relative(f)).collect(),
        reach: Reach {
            ignore: ignore.and_then(|(file, patterns)| Some((relative(&file)?, patterns))),
            sources,
        },
    })
}

/// `env_file` as a string, a list of strings, or a list of `{path, required}`.
fn parse_env_files(env_file: Option<&Value>, root: &Root) -> Vec<BString> {
    let mut out = Vec::new();
    let entries: Vec<&Value> = match env_file {
        Some(single @ Value::String(_)) => vec![single],
        other => seq(other).collect(),
    };
    for entry in entries {
        let path = match entry {
            Value::String(path) => path.as_str(),
            Value::Mapping(_) => match str_of(entry.get("path")) {
                Some(path) => path,
                None => continue,
            },
            _ => continue,
        };
        if path.contains('$') {
            continue; // not interpolated (read with --no-interpolate): cannot tell which file
        }
        if let Some(rel) = root.relative(Path::new(path)) {
            if !out.contains(&rel) {
                out.push(rel);
            }
        }
    }
    out
}

/// A short-syntax volume `SOURCE:TARGET[:MODE]` whose source is a host path; `None` for a named
/// or anonymous volume.
fn parse_short_volume(spec: &str) -> Option<(String, String)> {
    let mut parts = spec.splitn(3, ':');
    let source = parts.next()?;
    let target = parts.next()?;
    let is_path = source.starts_with('/') || source.starts_with('.') || source.starts_with('~');
    is_path.then(|| (source.to_string(), target.to_string()))
}

/// Compose v2 output names the project; v1's never does.
fn is_v2_output(yaml: &str) -> bool {
    serde_yaml::from_str::<Value>(yaml)
        .ok()
        .is_some_and(|doc| doc.get("name").is_some())
}

fn output_has_env_file(yaml: &str) -> bool {
    serde_yaml::from_str::<Value>(yaml).ok().is_some_and(|doc| {
        doc.get("services")
            .and_then(Value::as_mapping)
            .is_some_and(|services| services.values().any(|s| s.get("env_file").is_some()))
    })
}

/// Env files per service from `config --no-interpolate` output (Compose v2).
fn env_files_from_config(
    yaml: &str,
    workdir: &Path,
) -> anyhow::Result<BTreeMap<String, Vec<BString>>> {
    let doc: Value = serde_yaml::from_str(yaml)?;
    let root = Root::new(workdir);
    let mut out = BTreeMap::new();
    for (name, def) in doc
        .get("services")
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
    {
        if let Some(name) = name.as_str() {
            out.insert(
                name.to_string(),
                parse_env_files(def.get("env_file"), &root),
            );
        }
    }
    Ok(out)
}

/// Env files per service read from the compose files themselves (Compose v1, whose `config`
/// never shows them): the union over the files, relative paths from the project directory.
fn env_files_from_compose_files(
    files: &DefinitionFiles,
    workdir: &Path,
) -> BTreeMap<String, Vec<BString>> {
    let root = Root::new(workdir);
    let mut out: BTreeMap<String, Vec<BString>> = BTreeMap::new();
    for file in &files.compose_files {
        let Ok(text) = read_compose_file(file) else {
            continue;
        };
        let Ok(doc) = serde_yaml::from_str::<Value>(&text) else {
            continue;
        };
        for (name, def) in doc
            .get("services")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
        {
            let Some(name) = name.as_str() else { continue };
            let Some(env_file) = def.get("env_file") else {
                continue;
            };
            // Make relative entries relative to the project directory before resolving.
            let project_root = Root {
                base: files.project_dir.clone(),
                ..root.clone()
            };
            let found = parse_env_files(Some(env_file), &project_root);
            let entry = out.entry(name.to_string()).or_default();
            for path in found {
                if !entry.contains(&path) {
                    entry.push(path);
                }
            }
        }
    }
    out
}

fn seq(value: Option<&Value>) -> impl Iterator<Item = &Value> {
    value.and_then(Value::as_sequence).into_iter().flatten()
}

fn str_of(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str)
}

/// The checkout, for turning paths from compose into repo-relative ones.
#[derive(Clone)]
struct Root {
    /// The checkout as given (relative paths in compose output are resolved from here).
    base: PathBuf,
    /// The checkout, canonical.
    canonical: PathBuf,
}

impl Root {
    fn new(workdir: &Path) -> Self {
        Root {
            base: workdir.to_path_buf(),
            canonical: canonical_best_effort(workdir),
        }
    }

    /// `path` made absolute (from `base`) and canonical as far as it exists.
    fn resolve(&self, path: &Path) -> PathBuf {
        let path = expand_home(path);
        canonical_best_effort(&self.base.join(path))
    }

    /// The repo-relative form of `path` ("" for the checkout itself); `None` when it lies outside
    /// the checkout. A directory that contains the checkout is outside too: a monitoring agent
    /// mounting `/` is not running the checkout's code.
    fn relative(&self, path: &Path) -> Option<BString> {
        self.relative_resolved(&self.resolve(path))
    }

    fn relative_resolved(&self, resolved: &Path) -> Option<BString> {
        if let Ok(rest) = resolved.strip_prefix(&self.canonical) {
            let parts: Vec<String> = rest
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            return Some(parts.join("/").into());
        }
        None
    }
}

fn expand_home(path: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    path.to_path_buf()
}

/// `path` (absolute) with its longest existing ancestor canonicalized and the rest normalized
/// lexically (compose may name bind sources that do not exist yet).
fn canonical_best_effort(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = std::fs::canonicalize(existing) {
            let mut out = canonical;
            for part in rest.iter().rev() {
                push_lexically(&mut out, part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(PathBuf::from(name));
                existing = parent;
            }
            _ => {
                // Nothing exists (or `..` at the end): normalize lexically.
                let mut out = PathBuf::new();
                for component in path.components() {
                    push_lexically(&mut out, component.as_os_str());
                }
                return out;
            }
        }
    }
}

fn push_lexically(out: &mut PathBuf, part: impl AsRef<Path>) {
    for component in part.as_ref().components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
}

/// The files compose reads, found from the prefix words like compose does.
#[derive(Debug, Default)]
struct DefinitionFiles {
    /// Absolute paths of the compose files.
    compose_files: Vec<PathBuf>,
    /// Absolute paths of the env files used for interpolation (`.env` or `--env-file`s).
    env_files: Vec<PathBuf>,
    project_dir: PathBuf,
}

impl DefinitionFiles {
    fn find(prefix: &[String], workdir: &Path) -> Self {
        let mut files = Vec::new();
        let mut env_files = Vec::new();
        let mut project_dir = None;
        let mut words = prefix.iter().skip(1);
        while let Some(word) = words.next() {
            let mut take = |long: &str, short: Option<&str>| -> Option<String> {
                if word == long || Some(word.as_str()) == short {
                    return words.next().cloned();
                }
                if let Some(value) = word.strip_prefix(long).and_then(|v| v.strip_prefix('=')) {
                    return Some(value.to_string());
                }
                if let Some(short) = short {
                    if let Some(value) = word
                        .strip_prefix(short)
                        .filter(|v| !v.is_empty() && !word.starts_with("--"))
                    {
                        return Some(value.trim_start_matches('=').to_string());
                    }
                }
                None
            };
            if let Some(file) = take("--file", Some("-f")) {
                files.push(file);
            } else if let Some(file) = take("--env-file", None) {
                env_files.push(workdir.join(file));
            } else if let Some(dir) = take("--project-directory", None) {
                project_dir = Some(workdir.join(dir));
            }
        }
        if files.is_empty() {
            if let Some(list) = compose_file_variable(workdir, &env_files) {
                files = list;
            }
        }
        let compose_files: Vec<PathBuf> = if files.is_empty() {
            default_files(workdir)
        } else {
            files
                .iter()
                .filter(|f| f.as_str() != "-")
                .map(|f| workdir.join(f))
                .collect()
        };
        let project_dir = project_dir.unwrap_or_else(|| {
            compose_files
                .first()
                .and_then(|f| f.parent())
                .map_or_else(|| workdir.to_path_buf(), Path::to_path_buf)
        });
        if env_files.is_empty() {
            let dotenv = project_dir.join(".env");
            if dotenv.is_file() {
                env_files.push(dotenv);
            }
        }
        DefinitionFiles {
            compose_files,
            env_files,
            project_dir,
        }
    }

    fn repo_relative(&self, workdir: &Path) -> Vec<BString> {
        let root = Root::new(workdir);
        let mut seen = BTreeSet::new();
        self.compose_files
            .iter()
            .chain(&self.env_files)
            .filter_map(|f| root.relative(f))
            .filter(|rel| !rel.is_empty() && seen.insert(rel.clone()))
            .collect()
    }
}

/// `COMPOSE_FILE` from the environment, else from the `--env-file`s (the later wins), else from
/// the working directory's `.env`, as compose looks for it.
fn compose_file_variable(workdir: &Path, env_files: &[PathBuf]) -> Option<Vec<String>> {
    let dotenv = [workdir.join(".env")];
    let sources = if env_files.is_empty() {
        &dotenv[..]
    } else {
        env_files
    };
    let from_files: BTreeMap<String, String> = sources
        .iter()
        .flat_map(|path| read_env_file(path))
        .collect();
    let get = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| from_files.get(name).cloned())
    };
    let list = get("COMPOSE_FILE")?;
    let separator = get("COMPOSE_PATH_SEPARATOR").unwrap_or_else(|| ":".into());
    let files: Vec<String> = list
        .split(separator.as_str())
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect();
    (!files.is_empty()).then_some(files)
}

/// The variables of the env file at `path` as compose parses it; none when it is missing, not a
/// regular file (a FIFO a container made, a device) or larger than [`dotenv::MAX_DOTENV_BYTES`].
fn read_env_file(path: &Path) -> BTreeMap<String, String> {
    match regular_file::read(path, dotenv::MAX_DOTENV_BYTES) {
        Ok(bytes) => dotenv::parse(&String::from_utf8_lossy(&bytes), |name| {
            std::env::var(name).ok()
        }),
        Err(_) => BTreeMap::new(),
    }
}

/// The most of a compose file that is read: far more than any real project's.
const MAX_COMPOSE_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// A compose file's text. Its name may come from a pushed `.env` (`COMPOSE_FILE=/dev/zero`), so
/// only a regular file of a bounded size is read (see [`regular_file::read`]).
fn read_compose_file(path: &Path) -> std::io::Result<String> {
    let bytes = regular_file::read(path, MAX_COMPOSE_FILE_BYTES)?;
    String::from_utf8(bytes)
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))
}

/// The default compose file and the override file, in Compose v2's order of preference
/// (Compose v1 prefers docker-compose.* first; the two differ only when several exist).
fn default_files(workdir: &Path) -> Vec<PathBuf> {
    const NAMES: [&str; 4] = [
        "compose.yaml",
        "compose.yml",
        "docker-compose.yml",
        "docker-compose.yaml",
    ];
    const OVERRIDES: [&str; 4] = [
        "compose.override.yml",
        "compose.override.yaml",
        "docker-compose.override.yml",
        "docker-compose.override.yaml",
    ];
    let first = |names: &[&str]| names.iter().map(|n| workdir.join(n)).find(|p| p.is_file());
    match first(&NAMES) {
        Some(file) => std::iter::once(file).chain(first(&OVERRIDES)).collect(),
        None => Vec::new(),
    }
}

/// Run `<prefix> <args>` in `workdir` and return its stdout. Errors carry compose's last stderr
/// line.
fn run_compose(
    prefix: &[String],
    args: &[&str],
    workdir: &Path,
    timeout: Duration,
) -> anyhow::Result<String> {
    let Some((program, rest)) = prefix.split_first() else {
        bail!("the compose command is empty");
    };
    let mut words: Vec<String> = rest.to_vec();
    words.extend(args.iter().map(|a| a.to_string()));
    let shown = shell_words::join(std::iter::once(program).chain(&words));
    let expression = crate::child::cmd(program, &words)
        .dir(workdir)
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .unchecked();
    let handle = crate::child::start_in_group(expression)
        .map_err(|err| anyhow::anyhow!("could not start `{shown}`: {err}"))?;
    let output = match crate::child::wait_or_kill(&handle, timeout)
        .with_context(|| format!("failed to wait for `{shown}`"))?
    {
        Some(output) => output,
        None => {
            bail!(
                "`{shown}` did not finish within {}s",
                timeout.as_secs_f64().ceil()
            );
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .map(strip_escapes)
            .map(|l| l.trim().to_string())
            .rfind(|l| !l.is_empty());
        let how = crate::child::exit_description(&output.status);
        match last {
            Some(line) => bail!("`{shown}` {how}: {line}"),
            None => bail!("`{shown}` {how}"),
        }
    }
    String::from_utf8(output.stdout)
        .with_context(|| format!("`{shown}` printed output that is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docker compose config` (Compose 2.26.1) of the sample project, checkout at /CHECKOUT.
    const V2: &str = r#"name: pscompv2
services:
  web:
    develop:
      watch:
        - path: /CHECKOUT/src
          action: sync
          target: /app/src
          ignore:
            - '*.pyc'
        - path: /CHECKOUT/requirements.txt
          action: rebuild
        - path: /CHECKOUT/config
          action: sync+restart
          target: /etc/cfg
    command:
      - sh
      - -c
      - exec sleep 100000
    environment:
      FOO: bar
    healthcheck:
      test:
        - CMD
        - sh
        - -c
        - test -f /tmp/ok
      interval: 1s
      retries: 2
    image: pullstart-test/busybox:1
    init: true
    network_mode: none
    pull_policy: never
    volumes:
      - type: bind
        source: /CHECKOUT
        target: /repo
        bind:
          create_host_path: true
      - type: bind
        source: /CHECKOUT/src
        target: /app/src
        read_only: true
        bind:
          create_host_path: true
      - type: bind
        source: /CHECKOUT/config/app.ini
        target: /etc/app.ini
        bind:
          create_host_path: true
      - type: volume
        source: data
        target: /data
        volume: {}
      - type: bind
        source: /OUTSIDE
        target: /hosttmp
        bind:
          create_host_path: true
  worker:
    build:
      context: /CHECKOUT/worker
      dockerfile: Dockerfile
    environment:
      FOO: bar
    healthcheck:
      disable: true
    image: pullstart-test/worker:1
    init: true
    network_mode: none
    pull_policy: never
    volumes:
      - type: bind
        source: /CHECKOUT/src
        target: /app/src
volumes:
  data:
    name: pscompv2_data
"#;

    /// `docker compose config --no-interpolate` (2.26.1), trimmed to what matters: env_file stays.
    const V2_NO_INTERPOLATE: &str = r#"name: pscompv2
services:
  web:
    env_file:
      - path: /CHECKOUT/app.env
        required: true
    image: pullstart-test/busybox:${TAG}
  worker:
    env_file:
      - path: /CHECKOUT/app.env
        required: true
      - path: /CHECKOUT/${MISSING}.env
        required: false
"#;

    /// `docker-compose config` (1.29.2) of the same project without `develop` (v1 rejects it:
    /// "Unsupported config option for services.web: 'develop'") and with `env_file` as strings.
    const V1: &str = r#"services:
  web:
    command: sh -c 'exec sleep 100000'
    environment:
      FOO: bar
    healthcheck:
      interval: 1s
      retries: 2
      test:
      - CMD
      - sh
      - -c
      - test -f /tmp/ok
    image: pullstart-test/busybox:1
    init: true
    network_mode: none
    pull_policy: never
    volumes:
    - /CHECKOUT:/repo:rw
    - /CHECKOUT/src:/app/src:ro
    - /CHECKOUT/config/app.ini:/etc/app.ini:rw
    - data:/data:rw
    - /OUTSIDE:/hosttmp:rw
    - /anonymous
  worker:
    build:
      context: /CHECKOUT/worker
    environment:
      FOO: bar
    healthcheck:
      test:
      - NONE
    image: pullstart-test/worker:1
    init: true
    network_mode: none
    pull_policy: never
    volumes:
    - source: /CHECKOUT/src
      target: /app/src
      type: bind
version: '3.9'
volumes:
  data: {}
"#;

    struct Fixture {
        _dir: tempfile::TempDir,
        checkout: PathBuf,
        outside: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let checkout = dir.path().join("checkout");
        let outside = dir.path().join("outside");
        for d in ["src", "config", "worker"] {
            std::fs::create_dir_all(checkout.join(d)).unwrap();
        }
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(checkout.join("config/app.ini"), "[a]\n").unwrap();
        std::fs::write(checkout.join("worker/Dockerfile"), "FROM x\n").unwrap();
        Fixture {
            _dir: dir,
            checkout,
            outside,
        }
    }

    fn fill(yaml: &str, f: &Fixture) -> String {
        yaml.replace("/CHECKOUT", f.checkout.to_str().unwrap())
            .replace("/OUTSIDE", f.outside.to_str().unwrap())
    }

    fn bind(source: &str, target: &str) -> Bind {
        Bind {
            source: source.into(),
            target: target.into(),
        }
    }

    fn expected_web() -> Service {
        Service {
            name: "web".into(),
            binds: vec![
                bind("", "/repo"),
                bind("src", "/app/src"),
                bind("config/app.ini", "/etc/app.ini"),
            ],
            build: None,
            env_files: vec![],
            watch: vec![],
            anonymous_volumes: vec![],
            has_healthcheck: true,
        }
    }

    fn expected_worker() -> Service {
        Service {
            name: "worker".into(),
            binds: vec![bind("src", "/app/src")],
            build: Some(Build {
                context: "worker".into(),
                dockerfile: "worker/Dockerfile".into(),
                ignore_files: vec![
                    "worker/Dockerfile.dockerignore".into(),
                    "worker/.dockerignore".into(),
                ],
                // `FROM x` copies nothing from the context.
                reach: Reach {
                    ignore: None,
                    sources: Some(Default::default()),
                },
            }),
            env_files: vec![],
            watch: vec![],
            anonymous_volumes: vec![],
            has_healthcheck: false,
        }
    }

    #[test]
    fn parses_compose_v2_output() {
        let f = fixture();
        let defs = vec![BString::from("docker-compose.yml")];
        let project = parse(&fill(V2, &f), &f.checkout, defs.clone()).unwrap();
        let mut web = expected_web();
        web.watch = vec![
            Watch {
                path: "src".into(),
                action: WatchAction::Sync,
                ignore: vec!["*.pyc".into()],
                section: "develop",
            },
            Watch {
                path: "requirements.txt".into(),
                action: WatchAction::Rebuild,
                ignore: vec![],
                section: "develop",
            },
            Watch {
                path: "config".into(),
                action: WatchAction::SyncRestart,
                ignore: vec![],
                section: "develop",
            },
        ];
        assert_eq!(
            project,
            Project {
                services: vec![web, expected_worker()],
                definition_files: defs,
            }
        );
    }

    #[test]
    fn parses_compose_v1_output() {
        let f = fixture();
        let project = parse(&fill(V1, &f), &f.checkout, vec![]).unwrap();
        let mut web = expected_web();
        web.anonymous_volumes = vec!["/anonymous".into()];
        assert_eq!(project.services, vec![web, expected_worker()]);
    }

    #[test]
    fn env_files_from_no_interpolate_output() {
        let f = fixture();
        let found = env_files_from_config(&fill(V2_NO_INTERPOLATE, &f), &f.checkout).unwrap();
        assert_eq!(found["web"], vec![BString::from("app.env")]);
        // A path still holding a variable cannot be told: dropped.
        assert_eq!(found["worker"], vec![BString::from("app.env")]);
    }

    #[test]
    fn env_file_forms_and_outside_paths() {
        let f = fixture();
        let yaml = fill(
            "services:\n  a:\n    env_file: /CHECKOUT/one.env\n  b:\n    env_file:\n      - /CHECKOUT/x/two.env\n      - /OUTSIDE/three.env\n      - path: /CHECKOUT/four.env\n        required: false\n",
            &f,
        );
        let project = parse(&yaml, &f.checkout, vec![]).unwrap();
        assert_eq!(
            project.services[0].env_files,
            vec![BString::from("one.env")]
        );
        assert_eq!(
            project.services[1].env_files,
            vec![BString::from("x/two.env"), BString::from("four.env")]
        );
    }

    #[test]
    fn sources_outside_named_volumes_and_odd_builds() {
        let f = fixture();
        let parent = f.checkout.parent().unwrap().to_str().unwrap().to_string();
        let yaml = fill(
            &format!(
                "services:
  zed:
    build:
      context: /OUTSIDE
      dockerfile: Dockerfile
    volumes:
      - type: volume
        source: data
        target: /data
      - type: bind
        source: /OUTSIDE/code
        target: /code
      - type: tmpfs
        target: /tmp
      - type: bind
        source: /CHECKOUT/../checkout/./not-yet
        target: /later
      - type: bind
        source: {parent}
        target: /parent
  alpha:
    build:
      context: /CHECKOUT
      dockerfile_inline: FROM x
    volumes:
      - data:/data:rw
      - /OUTSIDE:/o:ro
  beta:
    build: https://github.com/x/y.git
  gamma:
    build:
      context: /CHECKOUT/worker
      dockerfile: /OUTSIDE/Dockerfile
    healthcheck:
      test: NONE
  delta:
    build:
      context: /CHECKOUT
      dockerfile: docker/prod.Dockerfile
    healthcheck:
      interval: 5s
"
            ),
            &f,
        );
        let project = parse(&yaml, &f.checkout, vec![]).unwrap();
        let names: Vec<&str> = project.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["alpha", "beta", "delta", "gamma", "zed"]);
        let [alpha, beta, delta, gamma, zed] = &project.services[..] else {
            panic!()
        };
        assert_eq!(zed.build, None);
        assert_eq!(
            zed.binds,
            vec![bind("not-yet", "/later")],
            "a directory above the checkout is outside"
        );
        assert!(alpha.binds.is_empty());
        let alpha_build = alpha.build.as_ref().unwrap();
        assert_eq!(
            (&alpha_build.context, &alpha_build.dockerfile),
            (&"".into(), &"".into())
        );
        assert_eq!(
            alpha_build.reach.sources,
            Some(Default::default()),
            "the inline Dockerfile is read"
        );
        assert_eq!(beta.build, None);
        let gamma_build = gamma.build.as_ref().unwrap();
        assert_eq!(
            (&gamma_build.context, &gamma_build.dockerfile),
            (&"worker".into(), &"".into())
        );
        assert_eq!(
            gamma_build.ignore_files,
            vec![BString::from("worker/.dockerignore")]
        );
        assert_eq!(gamma_build.reach.sources, None, "no Dockerfile to read");
        assert!(!gamma.has_healthcheck);
        assert_eq!(
            delta.build.as_ref().unwrap().dockerfile,
            "docker/prod.Dockerfile"
        );
        assert!(
            delta.has_healthcheck,
            "a healthcheck that only tunes the image's own is still one"
        );
    }

    #[test]
    fn x_develop_anonymous_volumes_and_what_a_build_reads() {
        let f = fixture();
        let c = &f.checkout;
        // The Dockerfile's own ignore file wins over the context's.
        std::fs::create_dir_all(c.join("docker")).unwrap();
        std::fs::write(c.join("docker/api.Dockerfile"), "FROM x\nCOPY api/ /srv/\n").unwrap();
        std::fs::write(c.join("docker/api.Dockerfile.dockerignore"), "api/tests\n").unwrap();
        std::fs::write(c.join(".dockerignore"), "*.md\n").unwrap();
        // `config` output leaves x-develop as written: relative to the project directory.
        let yaml = fill(
            "services:
  api:
    build:
      context: /CHECKOUT
      dockerfile: docker/api.Dockerfile
    volumes:
      - type: volume
        target: /srv/node_modules
        volume: {}
      - type: volume
        source: data
        target: /data
    x-develop:
      watch:
        - path: ./api
          action: sync+restart
          target: /srv
  web:
    build: /CHECKOUT
    develop:
      watch:
        - path: /CHECKOUT/web
          action: sync
    x-develop:
      watch:
        - path: ./ignored
          action: rebuild
",
            &f,
        );
        let project = parse(&yaml, c, vec![]).unwrap();
        let [api, web] = &project.services[..] else {
            panic!()
        };
        assert_eq!(
            api.watch,
            vec![Watch {
                path: "api".into(),
                action: WatchAction::SyncRestart,
                ignore: vec![],
                section: "x-develop",
            }]
        );
        assert_eq!(api.anonymous_volumes, vec!["/srv/node_modules".to_string()]);
        let build = api.build.as_ref().unwrap();
        assert_eq!(
            build.ignore_files,
            vec![BString::from("docker/api.Dockerfile.dockerignore")]
        );
        let reach = &build.reach;
        assert_eq!(
            reach.ignore.as_ref().unwrap().0,
            "docker/api.Dockerfile.dockerignore"
        );
        assert!(reach.includes("api/main.py".into()));
        assert!(
            reach.includes("api/README.md".into()),
            "the context's .dockerignore is not read"
        );
        assert!(!reach.includes("api/tests/t.py".into()));
        assert!(!reach.includes("web/x".into()), "not a COPY source");
        // `develop` wins over `x-develop`; without its own ignore file, the context's is read.
        assert_eq!(web.watch.len(), 1);
        assert_eq!(web.watch[0].section, "develop");
        let build = web.build.as_ref().unwrap();
        assert_eq!(
            build.ignore_files,
            vec![
                BString::from("Dockerfile.dockerignore"),
                BString::from(".dockerignore")
            ]
        );
        assert!(!build.reach.includes("README.md".into()));
        assert!(
            build.reach.includes("docs/README.md".into()),
            "no Dockerfile: every file counts"
        );
    }

    #[test]
    fn secrets_and_configs_files_are_binds() {
        let f = fixture();
        let yaml = fill(
            "services:
  a:
    secrets:
      - s1
      - source: s1
        target: /etc/s1
      - source: ext
    configs:
      - source: c1
secrets:
  s1:
    file: /CHECKOUT/secret.txt
  ext:
    external: true
configs:
  c1:
    file: /CHECKOUT/config/app.ini
",
            &f,
        );
        let project = parse(&yaml, &f.checkout, vec![]).unwrap();
        assert_eq!(
            project.services[0].binds,
            vec![
                bind("secret.txt", "/run/secrets/s1"),
                bind("secret.txt", "/etc/s1"),
                bind("config/app.ini", "/c1"),
            ]
        );
    }

    #[test]
    fn symlinked_checkout_paths_compare_canonically() {
        let f = fixture();
        let link = f.checkout.parent().unwrap().join("link");
        std::os::unix::fs::symlink(&f.checkout, &link).unwrap();
        // Compose printed the real path; we were given the symlink (or the other way round).
        let project = parse(&fill(V2, &f), &link, vec![]).unwrap();
        assert_eq!(project.services[1].binds, vec![bind("src", "/app/src")]);
        let yaml = V1
            .replace("/CHECKOUT", link.to_str().unwrap())
            .replace("/OUTSIDE", "/nonexistent");
        let project = parse(&yaml, &f.checkout, vec![]).unwrap();
        assert_eq!(project.services[0].binds.len(), 3);
    }

    #[test]
    fn empty_and_bad_output() {
        let f = fixture();
        // Output without `services:` is no compose project (a stand-in echoing its command).
        assert!(parse("name: x\n", &f.checkout, vec![]).is_err());
        assert!(parse("", &f.checkout, vec![]).is_err());
        assert_eq!(
            parse("services:\n", &f.checkout, vec![]).unwrap().services,
            vec![]
        );
        assert!(parse("services: [1]\n", &f.checkout, vec![]).is_err());
        assert!(parse(":\n  - : -\n\t", &f.checkout, vec![]).is_err());
    }

    #[test]
    fn definition_files_from_flags_and_defaults() {
        let f = fixture();
        let c = &f.checkout;
        std::fs::write(c.join("docker-compose.yml"), "services: {}\n").unwrap();
        std::fs::write(c.join("compose.override.yaml"), "services: {}\n").unwrap();
        std::fs::write(c.join(".env"), "TAG=1\n").unwrap();
        let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let rel = |prefix: &str| DefinitionFiles::find(&words(prefix), c).repo_relative(c);
        let b = |s: &str| BString::from(s);
        assert_eq!(
            rel("docker compose -p app"),
            [
                b("docker-compose.yml"),
                b("compose.override.yaml"),
                b(".env")
            ]
        );
        assert_eq!(
            rel("docker compose -f base.yml --file=deploy/prod.yml -f /elsewhere/x.yml -p app"),
            [b("base.yml"), b("deploy/prod.yml"), b(".env")],
            "files outside the checkout are left out; .env is the project directory's (the first file's)"
        );
        assert_eq!(
            rel("docker-compose -fsub/c.yml"),
            [b("sub/c.yml")],
            "no .env in sub/"
        );
        assert_eq!(
            rel("docker compose --env-file conf/prod.env -f c.yml"),
            [b("c.yml"), b("conf/prod.env")]
        );
        assert_eq!(
            rel("docker compose --project-directory sub -f c.yml"),
            [b("c.yml")],
            "the project directory's .env, not the checkout's"
        );
    }

    #[test]
    fn v1_env_files_from_the_compose_files() {
        let f = fixture();
        let c = &f.checkout;
        std::fs::write(
            c.join("docker-compose.yml"),
            "services:\n  web:\n    env_file: app.env\n  job:\n    env_file: [./a.env, '${X}.env']\n",
        )
        .unwrap();
        std::fs::write(
            c.join("docker-compose.override.yml"),
            "services:\n  web:\n    env_file: [local.env]\n",
        )
        .unwrap();
        let files = DefinitionFiles::find(&["docker-compose".to_string()], c);
        let found = env_files_from_compose_files(&files, c);
        assert_eq!(
            found["web"],
            [BString::from("app.env"), BString::from("local.env")]
        );
        assert_eq!(found["job"], [BString::from("a.env")]);
    }
}
