//! Real servers on 127.0.0.1 for the transport tests, each started by the test that needs it on a
//! free port, with configuration, keys and certificates made in the fixture's directory, and
//! killed (with its process group) on drop:
//!
//! - [`WebServer`]: lighttpd running `git http-backend` as CGI over http and https, `/anon/...`
//!   without authentication and `/auth/...` behind basic auth; the https certificate is signed
//!   by a CA the test makes with the openssl CLI ([`WebServer::ca`]); on https, `/to-localhost/...`
//!   redirects to `https://localhost:<port>/auth/...` (another host, same server) and
//!   `/moved/...` to `https://127.0.0.1:<port>/auth/...` (the same host); each request's
//!   `Authorization` header is logged ([`WebServer::requests_to`]);
//! - [`SshServer`]: `sshd -D` with a generated host key, a deploy key in `authorized_keys`, and
//!   a `known_hosts` that trusts the host key ([`SshServer::known_hosts`]);
//! - [`silent_server`]: accepts connections and never answers.
//!
//! `contrib/servers-setup.sh` installs the packages. When they are missing, [`available`] prints
//! `SKIPPED ...` and the test returns, unless `CI` is set: then it fails.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{free_port, hermetic, path_str, Fixture};

/// The basic-auth user that goes with a token when the url names none (as pullstart sends it).
pub const TOKEN_USER: &str = "x-access-token";
/// The token the web server accepts for [`TOKEN_USER`].
pub const TOKEN: &str = "tok-Zq81xVv3-secret";
/// A named user and its password.
pub const USER: &str = "deploy";
pub const PASSWORD: &str = "pw-K7p2Lm9-secret";

/// Whether a test that needs `programs` can run. When not: under CI a panic, else a loud
/// `SKIPPED` line and `false`.
pub fn available(test: &str, programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|program| !have(program))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    let message = format!(
        "SKIPPED {test}: missing {} (run contrib/servers-setup.sh as root)",
        missing.join(", ")
    );
    if ci {
        panic!("{message}; CI is set, so this is a failure");
    }
    eprintln!("{message}");
    false
}

/// Whether `program` (a name on PATH, or an absolute path) can be run; `git-http-backend` and
/// `mod_openssl` are looked up where git and lighttpd keep them.
fn have(program: &str) -> bool {
    match program {
        "git-http-backend" => http_backend().is_some(),
        "mod_openssl" => Path::new("/usr/lib/lighttpd/mod_openssl.so").exists(),
        "sshd" => sshd_path().is_some(),
        _ if program.starts_with('/') => Path::new(program).exists(),
        _ => std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| dir.join(program).is_file())
        }),
    }
}

/// git's own `git-http-backend`, beside the `git` on PATH.
fn http_backend() -> Option<PathBuf> {
    let out = Command::new("git").arg("--exec-path").output().ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    let path = Path::new(dir.trim()).join("git-http-backend");
    path.is_file().then_some(path)
}

/// sshd wants to be started by its absolute path (it re-executes itself).
fn sshd_path() -> Option<PathBuf> {
    ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
}

/// Runs a setup command (openssl, ssh-keygen), asserting success.
fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("spawn a setup command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A server process in its own process group, killed with the group on drop.
struct Process {
    child: Child,
}

impl Process {
    fn spawn(cmd: &mut Command, log: &Path) -> Process {
        let log = fs::File::create(log).expect("server log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {cmd:?}: {err}"));
        Process { child }
    }

    /// Waits until `port` accepts connections; false if the process died or 10 s passed.
    fn wait_listening(&mut self, port: u16) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return true;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .arg(format!("-{}", self.child.id()))
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

// ----- lighttpd + git http-backend -----

/// lighttpd on two loopback ports (http and https) serving the repositories under the
/// fixture's root through `git http-backend`.
pub struct WebServer {
    process: Process,
    pub http_port: u16,
    pub https_port: u16,
    dir: PathBuf,
}

impl WebServer {
    /// The programs [`WebServer::start`] needs.
    pub const NEEDS: &'static [&'static str] =
        &["lighttpd", "mod_openssl", "openssl", "git-http-backend"];

    /// Starts it, serving `t.root`: users [`TOKEN_USER`]:[`TOKEN`] and [`USER`]:[`PASSWORD`].
    pub fn start(t: &Fixture) -> WebServer {
        WebServer::start_with(t, None, false)
    }

    /// As [`WebServer::start`], with a self-signed https certificate made the usual way
    /// (`openssl req -x509`, so `CA:TRUE`) for the host names `alt_names` (openssl's
    /// `subjectAltName` syntax); [`WebServer::ca`] is then that certificate itself.
    pub fn start_self_signed(t: &Fixture, alt_names: &str) -> WebServer {
        WebServer::start_with(t, Some(alt_names), false)
    }

    /// As [`WebServer::start_self_signed`] for 127.0.0.1, with a certificate that expired in 2020.
    pub fn start_self_signed_expired(t: &Fixture) -> WebServer {
        WebServer::start_with(t, Some("IP:127.0.0.1,DNS:localhost"), true)
    }

    fn start_with(t: &Fixture, self_signed: Option<&str>, expired: bool) -> WebServer {
        let dir = t.root.join("web");
        fs::create_dir_all(dir.join("htdocs")).unwrap();
        match self_signed {
            None => make_certificates(t, &dir),
            Some(alt_names) if expired => make_expired_self_signed_certificate(t, &dir, alt_names),
            Some(alt_names) => make_self_signed_certificate(t, &dir, alt_names),
        }
        fs::write(
            dir.join("users"),
            format!("{TOKEN_USER}:{TOKEN}\n{USER}:{PASSWORD}\n"),
        )
        .unwrap();
        let backend = http_backend().expect("git-http-backend");
        let backend = path_str(&backend);
        let d = path_str(&dir);
        let root = path_str(&t.root);
        for _attempt in 0..5 {
            let http_port = free_port();
            let https_port = free_port();
            let config = format!(
                r#"server.document-root = "{d}/htdocs"
server.bind = "127.0.0.1"
server.port = {http_port}
server.errorlog = "{d}/error.log"
server.modules = ("mod_redirect", "mod_alias", "mod_setenv", "mod_auth", "mod_authn_file", "mod_cgi", "mod_openssl", "mod_accesslog")
accesslog.filename = "{d}/access.log"
accesslog.format = "%V %U authorization=%{{Authorization}}i"
alias.url = ("/anon" => "{backend}", "/auth" => "{backend}")
cgi.assign = ("" => "")
setenv.add-environment = (
  "GIT_PROJECT_ROOT" => "{root}",
  "GIT_HTTP_EXPORT_ALL" => "1",
  "GIT_CONFIG_NOSYSTEM" => "1",
  "GIT_CONFIG_GLOBAL" => "/dev/null",
  "HOME" => "{d}",
)
auth.backend = "plain"
auth.backend.plain.userfile = "{d}/users"
auth.require = ("/auth" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
$SERVER["socket"] == "127.0.0.1:{https_port}" {{
  ssl.engine = "enable"
  ssl.pemfile = "{d}/server.pem"
  ssl.privkey = "{d}/server.key"
  url.redirect = (
    "^/to-localhost/(.*)$" => "https://localhost:{https_port}/auth/$1",
    "^/moved/(.*)$" => "https://127.0.0.1:{https_port}/auth/$1",
  )
}}
"#
            );
            let conf = dir.join("lighttpd.conf");
            fs::write(&conf, config).unwrap();
            let mut cmd = Command::new("lighttpd");
            hermetic(&mut cmd, &t.home);
            cmd.arg("-D").arg("-f").arg(&conf);
            let mut process = Process::spawn(&mut cmd, &dir.join("lighttpd.log"));
            if process.wait_listening(http_port) && process.wait_listening(https_port) {
                return WebServer {
                    process,
                    http_port,
                    https_port,
                    dir,
                };
            }
            // A port was taken meanwhile: try others.
        }
        let log = fs::read_to_string(dir.join("lighttpd.log")).unwrap_or_default();
        let errors = fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        panic!("lighttpd did not start:\n{log}\n{errors}");
    }

    /// `http://127.0.0.1:<port>/anon/<repo>` (or `/auth/`, or https).
    pub fn url(&self, https: bool, auth: bool, repo: &str) -> String {
        let (scheme, port) = if https {
            ("https", self.https_port)
        } else {
            ("http", self.http_port)
        };
        let area = if auth { "auth" } else { "anon" };
        format!("{scheme}://127.0.0.1:{port}/{area}/{repo}")
    }

    /// The access log's lines for requests to `host` (`localhost:<port>`, ...): each says
    /// `authorization=<the Authorization header>` (`-` when there was none).
    /// lighttpd writes its access log once a second: this waits for the lines.
    pub fn requests_to(&self, host: &str) -> Vec<String> {
        let read = || -> Vec<String> {
            let log = fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
            log.lines()
                .filter(|line| line.split(' ').next() == Some(host))
                .map(str::to_owned)
                .collect()
        };
        let start = Instant::now();
        while read().is_empty() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(100));
        }
        // The last second's requests may still be in lighttpd's buffer.
        std::thread::sleep(Duration::from_millis(1500));
        read()
    }

    /// The CA certificate that signed the https certificate, or the self-signed certificate
    /// itself (for `http.sslCAInfo`).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

/// Runs the openssl CLI in `dir`, asserting success.
fn openssl(t: &Fixture, dir: &Path, args: &[&str]) {
    let mut cmd = Command::new("openssl");
    hermetic(&mut cmd, &t.home);
    run(cmd.current_dir(dir).args(args));
}

/// A self-signed certificate for `alt_names` made as self-hosting guides do, `server.pem`,
/// copied to `ca.pem` as the file an operator names in `http.sslCAInfo`.
fn make_self_signed_certificate(t: &Fixture, dir: &Path, alt_names: &str) {
    let alt_names = format!("subjectAltName={alt_names}");
    openssl(
        t,
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-subj",
            "/CN=git.example.org",
            "-addext",
            &alt_names,
        ],
    );
    fs::copy(dir.join("server.pem"), dir.join("ca.pem")).unwrap();
}

/// As [`make_self_signed_certificate`], valid only on 1 January 2020: `openssl req` refuses
/// past dates, `openssl ca -selfsign` takes them.
fn make_expired_self_signed_certificate(t: &Fixture, dir: &Path, alt_names: &str) {
    fs::write(
        dir.join("ca.cnf"),
        format!(
            "[ca]\ndefault_ca = own\n[own]\ndatabase = index.txt\nnew_certs_dir = .\n\
             serial = serial\ndefault_md = sha256\npolicy = any\nx509_extensions = ext\n\
             [any]\ncommonName = supplied\n\
             [ext]\nbasicConstraints = critical,CA:TRUE\nsubjectAltName = {alt_names}\n"
        ),
    )
    .unwrap();
    fs::write(dir.join("index.txt"), "").unwrap();
    fs::write(dir.join("serial"), "01\n").unwrap();
    openssl(
        t,
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    openssl(
        t,
        dir,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-selfsign",
            "-keyfile",
            "server.key",
            "-in",
            "server.csr",
            "-out",
            "server.pem",
            "-notext",
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200102000000Z",
        ],
    );
    fs::copy(dir.join("server.pem"), dir.join("ca.pem")).unwrap();
}

/// A CA, and a certificate for 127.0.0.1 signed by it, made with the openssl CLI in `dir`.
fn make_certificates(t: &Fixture, dir: &Path) {
    let openssl = |args: &[&str]| openssl(t, dir, args);
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=pullstart test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

// ----- sshd -----

/// `sshd -D` on a loopback port, letting the current user in with the deploy key.
pub struct SshServer {
    process: Process,
    pub port: u16,
    pub user: String,
    dir: PathBuf,
}

impl SshServer {
    /// The programs [`SshServer::start`] needs.
    pub const NEEDS: &'static [&'static str] = &["sshd", "ssh", "ssh-keygen"];

    pub fn start(t: &Fixture) -> SshServer {
        let dir = t.root.join("ssh");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        for (name, comment) in [
            ("host_key", "host"),
            ("deploy", "deploy"),
            ("other", "other"),
        ] {
            let mut cmd = Command::new("ssh-keygen");
            hermetic(&mut cmd, &t.home);
            run(cmd
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(dir.join(name)));
        }
        fs::copy(dir.join("deploy.pub"), dir.join("authorized_keys")).unwrap();
        fs::write(dir.join("empty_known_hosts"), "").unwrap();
        let user = current_user();
        // sshd (as root) insists on its privilege separation directory.
        let _ = fs::create_dir_all("/run/sshd");
        let d = path_str(&dir);
        for _attempt in 0..5 {
            let port = free_port();
            let host_key = fs::read_to_string(dir.join("host_key.pub")).unwrap();
            fs::write(
                dir.join("known_hosts"),
                format!("[127.0.0.1]:{port} {host_key}"),
            )
            .unwrap();
            let config = format!(
                "Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
PidFile none
AuthorizedKeysFile {d}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
AllowUsers {user}
AcceptEnv GIT_PROTOCOL
LogLevel ERROR
"
            );
            let conf = dir.join("sshd_config");
            fs::write(&conf, config).unwrap();
            let mut cmd = Command::new(sshd_path().expect("sshd"));
            hermetic(&mut cmd, &t.home);
            cmd.arg("-D").arg("-e").arg("-f").arg(&conf);
            let mut process = Process::spawn(&mut cmd, &dir.join("sshd.log"));
            if process.wait_listening(port) {
                return SshServer {
                    process,
                    port,
                    user,
                    dir,
                };
            }
        }
        let log = fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
        panic!("sshd did not start:\n{log}");
    }

    /// `ssh://<user>@127.0.0.1:<port><absolute path>`.
    pub fn url(&self, repo: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo.display()
        )
    }

    /// The deploy key the server accepts.
    pub fn key(&self) -> PathBuf {
        self.dir.join("deploy")
    }

    /// A key the server does not accept.
    pub fn other_key(&self) -> PathBuf {
        self.dir.join("other")
    }

    /// A known_hosts file that trusts this server's host key.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// A known_hosts file that trusts nothing.
    pub fn empty_known_hosts(&self) -> PathBuf {
        self.dir.join("empty_known_hosts")
    }

    /// An ssh command (for `core.sshCommand` / `GIT_SSH_COMMAND`) that reads no user or system
    /// configuration, trusts the hosts in `known_hosts`, and offers `key` (if any, and only it).
    pub fn ssh_command(&self, known_hosts: &Path, key: Option<&Path>) -> String {
        let mut command = format!(
            "ssh -F /dev/null -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null",
            known_hosts.display()
        );
        if let Some(key) = key {
            command.push_str(&format!(" -o IdentitiesOnly=yes -i {}", key.display()));
        }
        command
    }
}

/// The name of the user the tests run as (sshd lets only it in).
fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

// ----- a server that never answers -----

/// A loopback port that accepts connections and never sends a byte (nor closes them) until
/// dropped.
pub struct SilentServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn silent_server() -> SilentServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut held = Vec::new();
        while !flag.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut socket, _)) => {
                    // Drain what the client sends so that it never blocks writing; answer nothing.
                    socket.set_nonblocking(true).ok();
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf);
                    held.push(socket);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
            for socket in &mut held {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf);
            }
        }
    });
    SilentServer {
        port,
        stop,
        thread: Some(thread),
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
