//! Select: which services the changed paths concern, and what each one needs. Pure: it reads
//! the changed paths, the configuration and what the compose project declares, and returns a
//! plain value that `check` prints and `run` acts on.
//!
//! Where the services come from, first match wins:
//! 1. `--services` (or `services:` as a list): exactly those, restarted, in that order (the
//!    contract's "services to restart"; the compose project is not read, so nothing raises it);
//! 2. the config's path rules (`services:` as a map of globs);
//! 3. the compose project: `develop.watch` (or `x-develop.watch`) where a service declares it,
//!    else its bind-mount sources, build context and env files inside the checkout;
//! 4. the compose project could not be read: every service (`restart` with no names).
//!
//! Whether rules or the compose project picked the services, what the project says raises the
//! action: a changed compose file recreates every service, a changed env file recreates its
//! services, a changed Dockerfile, ignore file or dependency manifest that reaches the image
//! rebuilds the services that build from it (with `--renew-anon-volumes` where an anonymous
//! volume would keep the old dependencies), and a changed file that a service bind-mounts on its
//! own restarts that service (the container keeps the old inode). What reaches an image is
//! decided in `build_context`.

use gix::bstr::{BStr, BString, ByteSlice};
use globset::GlobSet;

use crate::compose::{Bind, Build, Project, Service, Watch, WatchAction};

/// What a service needs, weakest first: a stronger one includes the weaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// `restart`: new code from the bind mount.
    Restart,
    /// `up -d --no-deps`: a new container from a changed definition (compose file, env file).
    Recreate,
    /// `up -d --build --no-deps`: a new image (Dockerfile, dependency manifests).
    Rebuild,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Restart => "restart",
            Action::Recreate => "recreate",
            Action::Rebuild => "rebuild",
        }
    }

    pub fn past(self) -> &'static str {
        match self {
            Action::Restart => "restarted",
            Action::Recreate => "recreated",
            Action::Rebuild => "rebuilt",
        }
    }
}

/// One service, its action, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAction {
    pub name: String,
    pub action: Action,
    /// The changed paths that concern it.
    pub paths: Vec<BString>,
    /// Why the action, e.g. "bind mount `src` -> /app/src".
    pub reason: String,
    /// Rebuild with `--renew-anon-volumes`: the service's anonymous volumes (`/app/node_modules`)
    /// would otherwise keep what the old image installed there.
    pub renew_anon_volumes: bool,
}

/// Which services the act step acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Services {
    /// Nothing to act on, and why.
    Nothing { why: String },
    /// The whole project, `restart` with no names, and why.
    All { why: String },
    /// These, in this order.
    Named(Vec<ServiceAction>),
}

impl Services {
    pub fn nothing(why: impl Into<String>) -> Self {
        Services::Nothing { why: why.into() }
    }

    pub fn is_nothing(&self) -> bool {
        matches!(self, Services::Nothing { .. })
    }

    /// The named services (none for `Nothing` and `All`).
    pub fn actions(&self) -> &[ServiceAction] {
        match self {
            Services::Named(actions) => actions,
            Services::Nothing { .. } | Services::All { .. } => &[],
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.actions().iter().map(|a| a.name.clone()).collect()
    }

    /// The services whose action is `action`, in order.
    pub fn with_action(&self, action: Action) -> Vec<String> {
        self.actions()
            .iter()
            .filter(|a| a.action == action)
            .map(|a| a.name.clone())
            .collect()
    }
}

/// A compiled path rule.
pub struct Rule {
    pub service: String,
    pub globs: GlobSet,
}

/// Everything selection looks at.
pub struct Inputs<'a> {
    pub changed: &'a [BString],
    /// `--services`: restart exactly these.
    pub explicit: Option<&'a [String]>,
    pub rules: &'a [Rule],
    pub ignore: &'a GlobSet,
    pub dependency_files: &'a GlobSet,
    /// The compose project, or why it could not be read.
    pub project: Result<&'a Project, &'a str>,
}

pub fn select(inputs: &Inputs<'_>) -> Services {
    if inputs.changed.is_empty() {
        return Services::nothing("no file changed");
    }
    let paths: Vec<&BStr> = inputs
        .changed
        .iter()
        .map(|p| p.as_bstr())
        .filter(|p| !inputs.ignore.is_match(as_path(p)))
        .collect();
    if paths.is_empty() {
        return Services::nothing("only ignored paths changed");
    }
    if let Some(names) = inputs.explicit {
        return Services::Named(
            names
                .iter()
                .map(|name| ServiceAction {
                    name: name.clone(),
                    action: Action::Restart,
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                    reason: "named by --services".into(),
                    renew_anon_volumes: false,
                })
                .collect(),
        );
    }
    let mut selection = Selection::default();
    match (inputs.rules.is_empty(), inputs.project) {
        (false, project) => {
            for rule in inputs.rules {
                for path in paths.iter().filter(|p| rule.globs.is_match(as_path(p))) {
                    selection.add(&rule.service, Action::Restart, path, || {
                        format!("rule `services.{}.paths`", rule.service)
                    });
                }
            }
            if let Ok(project) = project {
                raise_from_project(&mut selection, project, &paths, inputs.dependency_files);
            }
        }
        (true, Ok(project)) => {
            map_from_project(&mut selection, project, &paths, inputs.dependency_files);
            raise_from_project(&mut selection, project, &paths, inputs.dependency_files);
        }
        (true, Err(why)) => {
            return Services::All {
                why: format!("the compose project could not be read ({why})"),
            };
        }
    }
    if selection.0.is_empty() {
        let source = if inputs.rules.is_empty() {
            "compose entry"
        } else {
            "rule"
        };
        return Services::nothing(format!("no {source} matches the changed paths"));
    }
    if let Ok(project) = inputs.project {
        // Compose's order, so output and commands are stable whatever order paths came in.
        let order = |name: &str| {
            project
                .services
                .iter()
                .position(|s| s.name == name)
                .unwrap_or(usize::MAX)
        };
        if inputs.rules.is_empty() {
            selection.0.sort_by_key(|a| order(&a.name));
        }
        mark_renewed_volumes(&mut selection.0, project, inputs.dependency_files);
    }
    Services::Named(selection.0)
}

/// Without rules: which services the compose project maps each path to.
fn map_from_project(
    selection: &mut Selection,
    project: &Project,
    paths: &[&BStr],
    dependency_files: &GlobSet,
) {
    for service in &project.services {
        if !service.watch.is_empty() {
            map_by_watch(selection, service, paths);
            continue;
        }
        for path in paths {
            if let Some(bind) = covering_bind(service, path) {
                selection.add(&service.name, Action::Restart, path, || {
                    if bind.source.as_bstr() == *path {
                        return single_file_reason(path);
                    }
                    format!(
                        "bind mount `{}` -> {}",
                        shown_dir(bind.source.as_bstr()),
                        bind.target
                    )
                });
            } else if let Some(build) = service.build.as_ref().filter(|b| in_context(b, path)) {
                if is_build_file(build, path)
                    || dependency_files.is_match(as_path(path))
                    || is_dockerfile_of_another(project, build, path)
                    || !reaches_image(build, path)
                {
                    continue; // `raise_from_project` names a build file or a manifest
                }
                // Code baked into the image: only a rebuild brings it in.
                selection.add(&service.name, Action::Rebuild, path, || {
                    format!(
                        "in the build context `{}`, not bind-mounted, {}",
                        shown_dir(build.context.as_bstr()),
                        how_it_reaches(build)
                    )
                });
            }
        }
    }
}

fn covering_bind<'s>(service: &'s Service, path: &BStr) -> Option<&'s Bind> {
    service
        .binds
        .iter()
        .find(|b| is_under(path, b.source.as_bstr()))
}

fn in_context(build: &Build, path: &BStr) -> bool {
    is_under(path, build.context.as_bstr())
}

/// The service's own Dockerfile or an ignore file deciding what its build is sent.
fn is_build_file(build: &Build, path: &BStr) -> bool {
    (!build.dockerfile.is_empty() && build.dockerfile.as_bstr() == path)
        || build.ignore_files.iter().any(|f| f.as_bstr() == path)
}

/// Another service's Dockerfile in a shared context: nothing runs it in this service's image,
/// so it concerns only the services that build from it.
fn is_dockerfile_of_another(project: &Project, build: &Build, path: &BStr) -> bool {
    build.dockerfile.as_bstr() != path
        && project.services.iter().any(|s| {
            s.build
                .as_ref()
                .is_some_and(|b| !b.dockerfile.is_empty() && b.dockerfile.as_bstr() == path)
        })
}

/// Whether `path` (inside the context) can reach the image: not ignored by the context's
/// ignore file and, where the Dockerfile's sources could be read, one of them.
fn reaches_image(build: &Build, path: &BStr) -> bool {
    build
        .reach
        .includes(relative_to(build.context.as_bstr(), path))
}

/// How a file of the context reaches the image, for the reason.
fn how_it_reaches(build: &Build) -> String {
    let dockerfile = shown_dir(build.dockerfile.as_bstr());
    match &build.reach.sources {
        Some(_) => format!("and a source of `COPY`/`ADD` in `{dockerfile}`"),
        None => format!("and `{dockerfile}`'s sources could not be read, so every file counts"),
    }
}

/// What compose would do with a watched path, as pullstart can do it: it cannot sync files into
/// a container, so a `sync` entry (or a `restart` one) restarts where a bind mount brings the
/// new file in, rebuilds where only the image holds it, and restarts otherwise.
pub fn watch_action(service: &Service, path: &BStr, watch: &Watch) -> (Action, String) {
    let declared = format!(
        "{}.watch `{}` ({})",
        watch.section,
        shown_dir(watch.path.as_bstr()),
        watch.action.as_str()
    );
    if watch.action == WatchAction::Rebuild {
        return (Action::Rebuild, declared);
    }
    if let Some(bind) = covering_bind(service, path) {
        let how = format!(
            "bind mount `{}` covers it",
            shown_dir(bind.source.as_bstr())
        );
        return (Action::Restart, format!("{declared}: {how}"));
    }
    match service.build.as_ref() {
        Some(build) if in_context(build, path) && reaches_image(build, path) => (
            Action::Rebuild,
            format!("{declared}: no bind mount covers it, the image holds it"),
        ),
        _ => (
            Action::Restart,
            format!("{declared}: no bind mount or build brings it into the container"),
        ),
    }
}

fn map_by_watch(selection: &mut Selection, service: &Service, paths: &[&BStr]) {
    for path in paths {
        for watch in &service.watch {
            if !is_under(path, watch.path.as_bstr())
                || watch_ignores(watch.path.as_bstr(), &watch.ignore, path)
            {
                continue;
            }
            let (action, reason) = watch_action(service, path, watch);
            selection.add(&service.name, action, path, || reason);
            // No `break`: as in compose, every matching entry applies and the strongest
            // action wins (a `rebuild` entry inside a `sync+restart` one rebuilds).
        }
    }
}

fn watch_ignores(base: &BStr, ignore: &[String], path: &BStr) -> bool {
    if ignore.is_empty() {
        return false;
    }
    crate::settings::compile_globs(ignore)
        .map(|set| set.is_match(as_path(relative_to(base, path))))
        .unwrap_or(false)
}

/// What the compose project says about changed paths raises the action, whoever picked the
/// services.
fn raise_from_project(
    selection: &mut Selection,
    project: &Project,
    paths: &[&BStr],
    dependency_files: &GlobSet,
) {
    for path in paths {
        if project
            .definition_files
            .iter()
            .any(|f| f.as_bstr() == *path)
        {
            for service in &project.services {
                selection.add(&service.name, Action::Recreate, path, || {
                    format!("compose file `{path}` changed")
                });
            }
            continue;
        }
        for service in &project.services {
            if service.env_files.iter().any(|f| f.as_bstr() == *path) {
                selection.add(&service.name, Action::Recreate, path, || {
                    format!("env file `{path}` changed")
                });
            }
            if let Some(build) = &service.build {
                if let Some(what) = rebuild_cause(project, build, path, dependency_files) {
                    selection.add(&service.name, Action::Rebuild, path, || {
                        format!(
                            "{} `{path}` in the build context `{}`",
                            what.noun(),
                            shown_dir(build.context.as_bstr())
                        )
                    });
                }
            }
            if service
                .binds
                .iter()
                .any(|b| !b.source.is_empty() && b.source.as_bstr() == *path)
            {
                selection.add(&service.name, Action::Restart, path, || {
                    single_file_reason(path)
                });
            }
        }
    }
}

/// What makes a changed file an input that only a rebuild brings into the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RebuildCause {
    Dockerfile,
    IgnoreFile,
    DependencyFile,
}

impl RebuildCause {
    fn noun(self) -> &'static str {
        match self {
            RebuildCause::Dockerfile => "Dockerfile",
            RebuildCause::IgnoreFile => "ignore file",
            RebuildCause::DependencyFile => "dependency file",
        }
    }
}

/// Whether `path` rebuilds `build`'s image whoever picked the service: its own Dockerfile, the
/// ignore file that decides what its build is sent, or a dependency manifest that reaches the
/// image (not another service's Dockerfile, not a file the ignore file or the Dockerfile's
/// sources leave out).
fn rebuild_cause(
    project: &Project,
    build: &Build,
    path: &BStr,
    dependency_files: &GlobSet,
) -> Option<RebuildCause> {
    if !build.dockerfile.is_empty() && build.dockerfile.as_bstr() == path {
        return Some(RebuildCause::Dockerfile);
    }
    if build.ignore_files.iter().any(|f| f.as_bstr() == path) {
        return Some(RebuildCause::IgnoreFile);
    }
    let dependency = in_context(build, path)
        && dependency_files.is_match(as_path(path))
        && !is_dockerfile_of_another(project, build, path)
        && reaches_image(build, path);
    dependency.then_some(RebuildCause::DependencyFile)
}

/// A rebuild for new dependencies (a manifest or the Dockerfile changed) must also renew the
/// service's anonymous volumes: compose otherwise carries `/app/node_modules` over from the old
/// container, and the new dependencies never appear. Other rebuilds keep them: `-V` also
/// empties anonymous volumes the image declares, which may hold data.
fn mark_renewed_volumes(
    actions: &mut [ServiceAction],
    project: &Project,
    dependency_files: &GlobSet,
) {
    for action in actions.iter_mut().filter(|a| a.action == Action::Rebuild) {
        let Some(service) = project.services.iter().find(|s| s.name == action.name) else {
            continue;
        };
        let (Some(build), false) = (&service.build, service.anonymous_volumes.is_empty()) else {
            continue;
        };
        let new_dependencies = action.paths.iter().any(|p| {
            matches!(
                rebuild_cause(project, build, p.as_bstr(), dependency_files),
                Some(RebuildCause::Dockerfile | RebuildCause::DependencyFile)
            )
        });
        if new_dependencies {
            action.renew_anon_volumes = true;
            action.reason.push_str(&format!(
                "; renews the anonymous volumes {} (`--renew-anon-volumes`)",
                service.anonymous_volumes.join(", ")
            ));
        }
    }
}

fn single_file_reason(path: &BStr) -> String {
    format!("`{path}` is bind-mounted as a single file: the container keeps the old file until restarted")
}

/// The services picked so far, in the order first picked.
#[derive(Default)]
struct Selection(Vec<ServiceAction>);

impl Selection {
    /// Add `path` to `service` with at least `action`; the reason is that of the strongest
    /// action (the first one found for it).
    fn add(&mut self, service: &str, action: Action, path: &BStr, reason: impl FnOnce() -> String) {
        match self.0.iter_mut().find(|a| a.name == service) {
            Some(existing) => {
                if !existing.paths.iter().any(|p| p.as_bstr() == path) {
                    existing.paths.push(path.to_owned());
                }
                if action > existing.action {
                    existing.action = action;
                    existing.reason = reason();
                }
            }
            None => self.0.push(ServiceAction {
                name: service.into(),
                action,
                paths: vec![path.to_owned()],
                reason: reason(),
                renew_anon_volumes: false,
            }),
        }
    }
}

/// Whether `path` is `dir` or lies below it; the empty `dir` is the whole checkout.
fn is_under(path: &BStr, dir: &BStr) -> bool {
    dir.is_empty() || path == dir || (path.starts_with(dir) && path.get(dir.len()) == Some(&b'/'))
}

/// `path` relative to `dir` (which it lies under); the empty `dir` is the checkout.
fn relative_to<'p>(dir: &BStr, path: &'p BStr) -> &'p BStr {
    if dir.is_empty() {
        path
    } else {
        path.get(dir.len() + 1..).unwrap_or_default().as_bstr()
    }
}

fn shown_dir(dir: &BStr) -> String {
    if dir.is_empty() {
        ".".into()
    } else {
        dir.to_str_lossy().into_owned()
    }
}

fn as_path(path: &BStr) -> &std::path::Path {
    use std::os::unix::ffi::OsStrExt;
    std::path::Path::new(std::ffi::OsStr::from_bytes(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build_context::{Patterns, Reach};

    fn globs(patterns: &[&str]) -> GlobSet {
        crate::settings::compile_globs(&patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap()
    }

    fn changed(paths: &[&str]) -> Vec<BString> {
        paths.iter().map(|p| BString::from(*p)).collect()
    }

    fn service(name: &str) -> Service {
        Service {
            name: name.into(),
            binds: vec![],
            build: None,
            env_files: vec![],
            watch: vec![],
            anonymous_volumes: vec![],
            has_healthcheck: false,
        }
    }

    fn bind(source: &str, target: &str) -> Bind {
        Bind {
            source: source.into(),
            target: target.into(),
        }
    }

    fn project() -> Project {
        let mut web = service("web");
        web.binds = vec![bind("web", "/app"), bind("config/app.ini", "/etc/app.ini")];
        web.env_files = vec!["web.env".into()];
        let mut worker = service("worker");
        worker.binds = vec![bind("worker/src", "/app/src")];
        worker.build = Some(Build {
            context: "worker".into(),
            dockerfile: "worker/Dockerfile".into(),
            ..Build::default()
        });
        let mut bot = service("bot");
        bot.watch = vec![
            Watch {
                path: "bot".into(),
                action: WatchAction::SyncRestart,
                ignore: vec!["*.md".into()],
                section: "develop",
            },
            Watch {
                path: "bot/requirements.txt".into(),
                action: WatchAction::Rebuild,
                ignore: vec![],
                section: "develop",
            },
        ];
        Project {
            services: vec![bot, web, worker],
            definition_files: vec!["docker-compose.yml".into(), ".env".into()],
        }
    }

    fn run(
        paths: &[&str],
        project: Result<&Project, &str>,
        rules: &[Rule],
        explicit: Option<&[String]>,
    ) -> Services {
        let changed = changed(paths);
        let ignore = globs(&["docs/", "*.md"]);
        let deps = globs(&["requirements*.txt", "Dockerfile"]);
        select(&Inputs {
            changed: &changed,
            explicit,
            rules,
            ignore: &ignore,
            dependency_files: &deps,
            project,
        })
    }

    fn summary(services: &Services) -> Vec<(String, Action)> {
        services
            .actions()
            .iter()
            .map(|a| (a.name.clone(), a.action))
            .collect()
    }

    #[test]
    fn code_under_a_bind_mount_restarts_only_that_service() {
        let p = project();
        let s = run(&["web/app.py"], Ok(&p), &[], None);
        assert_eq!(summary(&s), [("web".to_string(), Action::Restart)]);
        assert!(
            s.actions()[0].reason.contains("bind mount `web` -> /app"),
            "{s:?}"
        );
    }

    #[test]
    fn dependency_files_and_dockerfiles_rebuild() {
        let p = project();
        let s = run(
            &["worker/requirements.txt", "worker/src/a.py"],
            Ok(&p),
            &[],
            None,
        );
        assert_eq!(summary(&s), [("worker".to_string(), Action::Rebuild)]);
        assert_eq!(s.actions()[0].paths.len(), 2);
        let s = run(&["worker/Dockerfile"], Ok(&p), &[], None);
        assert_eq!(summary(&s), [("worker".to_string(), Action::Rebuild)]);
        assert!(s.actions()[0].reason.contains("Dockerfile"));
    }

    #[test]
    fn compose_and_env_files_recreate() {
        let p = project();
        let s = run(&["docker-compose.yml"], Ok(&p), &[], None);
        assert_eq!(
            summary(&s),
            [
                ("bot".to_string(), Action::Recreate),
                ("web".into(), Action::Recreate),
                ("worker".into(), Action::Recreate)
            ]
        );
        let s = run(&["web.env"], Ok(&p), &[], None);
        assert_eq!(summary(&s), [("web".to_string(), Action::Recreate)]);
    }

    #[test]
    fn develop_watch_decides_for_the_services_that_declare_it() {
        let p = project();
        let s = run(&["bot/main.py"], Ok(&p), &[], None);
        assert_eq!(summary(&s), [("bot".to_string(), Action::Restart)]);
        let s = run(&["bot/requirements.txt"], Ok(&p), &[], None);
        // Every matching watch entry applies, as in compose: the `rebuild` one wins.
        assert_eq!(summary(&s), [("bot".to_string(), Action::Rebuild)]);
        let s = run(&["bot/notes.md"], Ok(&p), &[], None);
        assert!(s.is_nothing(), "{s:?}");
    }

    #[test]
    fn single_file_bind_mounts_restart_even_under_rules() {
        let p = project();
        let rules = [Rule {
            service: "worker".into(),
            globs: globs(&["worker/**"]),
        }];
        let s = run(&["config/app.ini"], Ok(&p), &rules, None);
        assert_eq!(summary(&s), [("web".to_string(), Action::Restart)]);
        assert!(s.actions()[0].reason.contains("single file"), "{s:?}");
    }

    #[test]
    fn rules_pick_services_and_unmatched_changes_restart_nothing() {
        let p = project();
        let rules = [
            Rule {
                service: "core".into(),
                globs: globs(&["assistant/**", "pyproject.toml"]),
            },
            Rule {
                service: "bot".into(),
                globs: globs(&["bot/"]),
            },
        ];
        let s = run(
            &["assistant/x.py", "pyproject.toml", "bot/a.py"],
            Ok(&p),
            &rules,
            None,
        );
        assert_eq!(
            summary(&s),
            [
                ("core".to_string(), Action::Restart),
                ("bot".into(), Action::Restart)
            ]
        );
        assert_eq!(s.actions()[0].paths.len(), 2);
        let s = run(&["elsewhere.txt"], Ok(&p), &rules, None);
        assert_eq!(s, Services::nothing("no rule matches the changed paths"));
    }

    #[test]
    fn ignored_paths_concern_nobody() {
        let p = project();
        assert_eq!(
            run(&["docs/a/b.txt", "web/README.md"], Ok(&p), &[], None),
            Services::nothing("only ignored paths changed")
        );
        assert_eq!(
            run(&[], Ok(&p), &[], None),
            Services::nothing("no file changed")
        );
    }

    #[test]
    fn explicit_services_win_and_keep_their_order() {
        let p = project();
        let names = ["worker".to_string(), "web".to_string()];
        let s = run(&["anything.txt"], Ok(&p), &[], Some(&names));
        assert_eq!(
            summary(&s),
            [
                ("worker".to_string(), Action::Restart),
                ("web".into(), Action::Restart)
            ]
        );
    }

    #[test]
    fn an_unreadable_project_restarts_everything_and_says_why() {
        let s = run(&["web/app.py"], Err("compose not found"), &[], None);
        assert!(
            matches!(&s, Services::All { why } if why.contains("compose not found")),
            "{s:?}"
        );
    }

    #[test]
    fn a_path_outside_every_mount_restarts_nothing() {
        let p = project();
        assert_eq!(
            run(&["scripts/x.sh"], Ok(&p), &[], None),
            Services::nothing("no compose entry matches the changed paths")
        );
    }

    /// A Node sample's shape: code COPY'd into the image, watched with `sync`.
    fn watched(binds: Vec<Bind>, build: Option<Build>) -> Project {
        let mut web = service("web");
        web.binds = binds;
        web.build = build;
        web.watch = vec![Watch {
            path: "web/src".into(),
            action: WatchAction::SyncRestart,
            ignore: vec![],
            section: "x-develop",
        }];
        Project {
            services: vec![web],
            definition_files: vec![],
        }
    }

    fn build_with(
        context: &str,
        dockerfile: &str,
        ignore: &[&str],
        sources: Option<&[&str]>,
    ) -> Build {
        Build {
            context: context.into(),
            dockerfile: dockerfile.into(),
            ignore_files: vec![],
            reach: Reach {
                ignore: (!ignore.is_empty()).then(|| {
                    (
                        format!("{context}/.dockerignore").into(),
                        Patterns::new(ignore).unwrap(),
                    )
                }),
                sources: sources.map(|s| Patterns::new(s).unwrap()),
            },
        }
    }

    #[test]
    fn a_sync_watch_rebuilds_what_only_the_image_holds() {
        let build = build_with("web", "web/Dockerfile", &[], Some(&["src"]));
        let p = watched(vec![], Some(build.clone()));
        let s = run(&["web/src/index.js"], Ok(&p), &[], None);
        assert_eq!(summary(&s), [("web".to_string(), Action::Rebuild)]);
        assert_eq!(
            s.actions()[0].reason,
            "x-develop.watch `web/src` (sync+restart): no bind mount covers it, the image holds it"
        );
        // A bind mount covering the path: the restart brings the new code in.
        let p = watched(vec![bind("web", "/app")], Some(build));
        let s = run(&["web/src/index.js"], Ok(&p), &[], None);
        assert_eq!(summary(&s), [("web".to_string(), Action::Restart)]);
        assert!(
            s.actions()[0].reason.contains("bind mount `web` covers it"),
            "{s:?}"
        );
        // Neither: a restart is all there is.
        let p = watched(vec![], None);
        let s = run(&["web/src/index.js"], Ok(&p), &[], None);
        assert_eq!(summary(&s), [("web".to_string(), Action::Restart)]);
        assert!(
            s.actions()[0].reason.contains("no bind mount or build"),
            "{s:?}"
        );
    }

    #[test]
    fn files_the_ignore_file_or_the_dockerfile_leave_out_do_not_rebuild() {
        let mut app = service("app");
        app.build = Some(build_with(
            "app",
            "app/Dockerfile",
            &["**/*.md", "tests"],
            Some(&["requirements.txt", "src"]),
        ));
        let p = Project {
            services: vec![app],
            definition_files: vec![],
        };
        for path in [
            "app/NOTES.txt",
            "app/src/README.md",
            "app/tests/t.py",
            "app/requirements-dev.txt",
        ] {
            let s = run(&[path], Ok(&p), &[], None);
            assert!(s.is_nothing(), "{path}: {s:?}");
        }
        for path in ["app/src/main.py", "app/requirements.txt"] {
            let s = run(&[path], Ok(&p), &[], None);
            assert_eq!(
                summary(&s),
                [("app".to_string(), Action::Rebuild)],
                "{path}"
            );
        }
        // Sources unknown: every file the ignore file keeps counts.
        let mut p = p;
        p.services[0].build = Some(build_with("app", "app/Dockerfile", &["**/*.md"], None));
        let s = run(&["app/NOTES.txt"], Ok(&p), &[], None);
        assert_eq!(summary(&s), [("app".to_string(), Action::Rebuild)]);
        assert!(s.actions()[0].reason.contains("could not be read"), "{s:?}");
        assert!(run(&["app/x.md"], Ok(&p), &[], None).is_nothing());
    }

    #[test]
    fn a_dockerfile_in_a_shared_context_rebuilds_only_its_services() {
        let shared = |name: &str, dockerfile: &str| {
            let mut s = service(name);
            s.build = Some(build_with("", dockerfile, &[], None));
            s
        };
        let p = Project {
            services: vec![
                shared("backend", "backend.Dockerfile"),
                shared("php", "docker/php/Dockerfile"),
                shared("web", "Dockerfile"),
            ],
            definition_files: vec![],
        };
        for (path, owner) in [
            ("backend.Dockerfile", "backend"),
            ("docker/php/Dockerfile", "php"),
            ("Dockerfile", "web"),
        ] {
            let s = run(&[path], Ok(&p), &[], None);
            assert_eq!(
                summary(&s),
                [(owner.to_string(), Action::Rebuild)],
                "{path}"
            );
            assert!(s.actions()[0].reason.starts_with("Dockerfile"), "{s:?}");
        }
    }

    #[test]
    fn a_dependency_rebuild_renews_anonymous_volumes() {
        let mut web = service("web");
        web.binds = vec![bind("", "/app")];
        web.build = Some(build_with("", "Dockerfile", &[], None));
        web.anonymous_volumes = vec!["/app/node_modules".into()];
        let p = Project {
            services: vec![web],
            definition_files: vec![],
        };
        let s = run(&["requirements.txt"], Ok(&p), &[], None);
        assert_eq!(summary(&s), [("web".to_string(), Action::Rebuild)]);
        assert!(s.actions()[0].renew_anon_volumes);
        assert!(
            s.actions()[0].reason.ends_with(
                "renews the anonymous volumes /app/node_modules (`--renew-anon-volumes`)"
            ),
            "{s:?}"
        );
        let s = run(&["Dockerfile"], Ok(&p), &[], None);
        assert!(s.actions()[0].renew_anon_volumes, "{s:?}");
        // Code under the bind mount restarts; the volume stays.
        let s = run(&["index.js"], Ok(&p), &[], None);
        assert_eq!(summary(&s), [("web".to_string(), Action::Restart)]);
        assert!(!s.actions()[0].renew_anon_volumes);
    }

    #[test]
    fn is_under_respects_component_boundaries() {
        assert!(is_under("web/a".into(), "web".into()));
        assert!(is_under("web".into(), "web".into()));
        assert!(!is_under("webapp/a".into(), "web".into()));
        assert!(is_under("x".into(), "".into()));
    }
}
