//! Select: which services the changed paths concern, and what each one needs. Pure: it reads
//! the changed paths, the configuration and what the compose project declares, and returns a
//! plain value that `check` prints and `run` acts on.
//!
//! Where the services come from, first match wins:
//! 1. `--services` (or `services:` as a list): exactly those, restarted, in that order (the
//!    contract's "services to restart"; the compose project is not read, so nothing raises it);
//! 2. the config's path rules (`services:` as a map of globs);
//! 3. the compose project: `develop.watch` where a service declares it, else its bind-mount
//!    sources, build context and env files inside the checkout;
//! 4. the compose project could not be read: every service (`restart` with no names).
//!
//! Whether rules or the compose project picked the services, what the project says raises the
//! action: a changed
//! compose file recreates every service, a changed env file recreates its services, a changed
//! Dockerfile or dependency manifest in a build context rebuilds, and a changed file that a
//! service bind-mounts on its own restarts that service (the container keeps the old inode).

use gix::bstr::{BStr, BString, ByteSlice};
use globset::GlobSet;

use crate::compose::{Project, Service, WatchAction};

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
            if let Some(bind) = service
                .binds
                .iter()
                .find(|b| is_under(path, b.source.as_bstr()))
            {
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
            } else if let Some(build) = service
                .build
                .as_ref()
                .filter(|b| is_under(path, b.context.as_bstr()))
            {
                if build.dockerfile.as_bstr() == *path || dependency_files.is_match(as_path(path)) {
                    continue; // `raise_from_project` names the Dockerfile or manifest
                }
                // Code baked into the image: only a rebuild brings it in.
                selection.add(&service.name, Action::Rebuild, path, || {
                    format!(
                        "in the build context `{}`, not bind-mounted",
                        shown_dir(build.context.as_bstr())
                    )
                });
            }
        }
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
            // pullstart cannot sync files into a container; a restart is the nearest it has.
            let action = match watch.action {
                WatchAction::Rebuild => Action::Rebuild,
                WatchAction::Restart
                | WatchAction::SyncRestart
                | WatchAction::Sync
                | WatchAction::SyncExec => Action::Restart,
            };
            selection.add(&service.name, action, path, || {
                format!(
                    "develop.watch `{}` ({:?})",
                    shown_dir(watch.path.as_bstr()),
                    watch.action
                )
                .to_lowercase()
            });
            // No `break`: as in compose, every matching entry applies and the strongest
            // action wins (a `rebuild` entry inside a `sync+restart` one rebuilds).
        }
    }
}

fn watch_ignores(base: &BStr, ignore: &[String], path: &BStr) -> bool {
    if ignore.is_empty() {
        return false;
    }
    let relative = if base.is_empty() {
        path
    } else {
        path.get(base.len() + 1..).unwrap_or_default().as_bstr()
    };
    crate::settings::compile_globs(ignore)
        .map(|set| set.is_match(as_path(relative)))
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
                let dockerfile = build.dockerfile.as_bstr() == *path;
                if dockerfile
                    || (is_under(path, build.context.as_bstr())
                        && dependency_files.is_match(as_path(path)))
                {
                    let what = if dockerfile {
                        "Dockerfile"
                    } else {
                        "dependency file"
                    };
                    selection.add(&service.name, Action::Rebuild, path, || {
                        format!(
                            "{what} `{path}` in the build context `{}`",
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
            }),
        }
    }
}

/// Whether `path` is `dir` or lies below it; the empty `dir` is the whole checkout.
fn is_under(path: &BStr, dir: &BStr) -> bool {
    dir.is_empty() || path == dir || (path.starts_with(dir) && path.get(dir.len()) == Some(&b'/'))
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
    use crate::compose::{Bind, Build, Watch};

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
        });
        let mut bot = service("bot");
        bot.watch = vec![
            Watch {
                path: "bot".into(),
                action: WatchAction::SyncRestart,
                ignore: vec!["*.md".into()],
            },
            Watch {
                path: "bot/requirements.txt".into(),
                action: WatchAction::Rebuild,
                ignore: vec![],
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

    #[test]
    fn is_under_respects_component_boundaries() {
        assert!(is_under("web/a".into(), "web".into()));
        assert!(is_under("web".into(), "web".into()));
        assert!(!is_under("webapp/a".into(), "web".into()));
        assert!(is_under("x".into(), "".into()));
    }
}
