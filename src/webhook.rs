//! `watch --listen ADDR:PORT`: a small HTTP endpoint beside the polling loop.
//!
//! - `POST` (any path): a push webhook. Its signature is checked against the shared secret in
//!   constant time: GitHub's `X-Hub-Signature-256: sha256=HEX`, Gitea's, Forgejo's and Gogs'
//!   `X-Gitea-Signature` / `X-Forgejo-Signature` / `X-Gogs-Signature: HEX` (HMAC-SHA256 of the
//!   body), GitLab's `X-Gitlab-Token: SECRET`, or the generic `X-Pullstart-Signature:
//!   sha256=HEX`. A push to the followed branch asks the loop for a run at once (202); another
//!   branch, a tag or another event is acknowledged and ignored (200); a missing or wrong
//!   signature is refused (401) with one log line that never holds the secret.
//! - `GET /healthz`: the loop is alive, and how its last run ended (JSON).
//! - `GET /metrics`: the metrics of the last run, as the textfile has them.
//!
//! The connection handling is this module's own, on std's `TcpListener`, with `httparse` (the
//! parser hyper uses) for the request head: a small server crate such as tiny_http sets no read
//! time-out (a client that sends one byte a minute holds its thread for ever), and hyper needs an
//! async runtime that would cost the binary megabytes and a resident thread pool. Each request
//! gets [`READ_TIMEOUT`] to arrive in full, its head at most [`MAX_HEAD`] bytes and its body at
//! most [`MAX_BODY`]; at most [`MAX_CONNECTIONS`] are served at once, more are closed unread.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use aws_lc_rs::{constant_time, hmac};

use crate::exit::Failure;

/// The whole request must arrive within this time.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Request line and headers.
const MAX_HEAD: usize = 16 * 1024;
/// GitHub caps payloads at 25 MB, but a push event lists at most 20 commits: a few hundred KB.
const MAX_BODY: usize = 1024 * 1024;
const MAX_CONNECTIONS: usize = 16;

/// What the endpoint reports about the loop, updated after every run.
#[derive(Debug, Default)]
pub struct LoopState {
    /// The last run: its exit code, JSON result word and when it ended.
    pub last_run: Option<LastRun>,
    /// The last run's metrics, rendered as the textfile has them.
    pub metrics: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LastRun {
    pub exit_code: i32,
    pub result: String,
    pub finished: SystemTime,
}

/// Where a verified push for the followed branch goes.
pub type OnPush = Arc<dyn Fn() + Send + Sync>;

/// Which branch pushes start a run for; `None`: any.
pub type FollowedBranch = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Binds `addr` and serves it on a thread of its own for as long as the process lives.
pub fn start(
    addr: SocketAddr,
    secret_file: Option<&Path>,
    state: Arc<Mutex<LoopState>>,
    followed: FollowedBranch,
    on_push: OnPush,
) -> anyhow::Result<SocketAddr> {
    let secret = secret_file.map(read_secret).transpose()?;
    let listener = TcpListener::bind(addr).map_err(|err| {
        anyhow::Error::new(err).context(Failure::usage(format!(
            "--listen: cannot listen on {addr}; is the port free, and the address this host's?"
        )))
    })?;
    let bound = listener
        .local_addr()
        .context("failed to read the bound address")?;
    let server = Arc::new(Server {
        secret,
        state,
        followed,
        on_push,
        open: AtomicUsize::new(0),
    });
    std::thread::Builder::new()
        .name("listen".into())
        .spawn(move || server.accept(listener))
        .context("failed to start the listener thread")?;
    Ok(bound)
}

/// The secret: the file's content without surrounding whitespace (a trailing newline).
fn read_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    let unusable = |why: String| {
        Failure::usage(format!(
            "--webhook-secret-file `{}` {why}; write the webhooks' secret into it",
            path.display()
        ))
    };
    let meta =
        std::fs::metadata(path).map_err(|err| unusable(format!("cannot be read ({err})")))?;
    if !meta.is_file() || meta.len() > 4096 {
        return Err(unusable("is not a regular file of at most 4 KiB".into()).into());
    }
    let text = std::fs::read(path).map_err(|err| unusable(format!("cannot be read ({err})")))?;
    let secret = text.trim_ascii().to_vec();
    if secret.is_empty() {
        return Err(unusable("is empty".into()).into());
    }
    Ok(secret)
}

struct Server {
    secret: Option<Vec<u8>>,
    state: Arc<Mutex<LoopState>>,
    followed: FollowedBranch,
    on_push: OnPush,
    open: AtomicUsize,
}

/// One answer: status, reason phrase, content type, body.
struct Reply {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
}

impl Reply {
    fn json(status: u16, reason: &'static str, body: serde_json::Value) -> Reply {
        Reply {
            status,
            reason,
            content_type: "application/json",
            body: format!("{body}\n"),
        }
    }

    fn text(status: u16, reason: &'static str, body: impl Into<String>) -> Reply {
        Reply {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// A request as read: method, path, headers (names lowercased) and body.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

impl Server {
    fn accept(self: Arc<Self>, listener: TcpListener) {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if self.open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                self.open.fetch_sub(1, Ordering::SeqCst);
                continue; // Dropped unread: a flood must not starve the loop of threads.
            }
            let server = Arc::clone(&self);
            let spawned = std::thread::Builder::new()
                .name("request".into())
                .spawn(move || {
                    server.serve(stream);
                    server.open.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                self.open.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    fn serve(&self, mut stream: TcpStream) {
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "?".to_string(), |a| a.ip().to_string());
        let reply = match read_request(&mut stream) {
            Ok(request) => self.answer(&request),
            Err(reply) => reply,
        };
        if reply.status >= 400 {
            eprintln!(
                "pullstart: listen: {} {} from {peer}: {}",
                reply.status,
                reply.reason,
                reply.body.trim()
            );
        }
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            reply.status,
            reply.reason,
            reply.content_type,
            reply.body.len()
        );
        let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
        let _ = stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(reply.body.as_bytes()));
    }

    fn answer(&self, request: &Request) -> Reply {
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/healthz") => self.health(),
            ("GET", "/metrics") => self.metrics(),
            ("POST", _) => self.webhook(request),
            ("GET", _) => Reply::text(404, "Not Found", "try /healthz or /metrics\n"),
            _ => Reply::text(405, "Method Not Allowed", "GET or POST\n"),
        }
    }

    fn health(&self) -> Reply {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let last = state.last_run.as_ref().map(|run| {
            serde_json::json!({
                "exit_code": run.exit_code,
                "result": run.result,
                "finished_at": run.finished.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            })
        });
        Reply::json(
            200,
            "OK",
            serde_json::json!({"alive": true, "last_run": last}),
        )
    }

    fn metrics(&self) -> Reply {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Reply {
            status: 200,
            reason: "OK",
            content_type: "text/plain; version=0.0.4",
            body: state.metrics.clone().unwrap_or_default(),
        }
    }

    fn webhook(&self, request: &Request) -> Reply {
        let Some(secret) = &self.secret else {
            return Reply::text(
                401,
                "Unauthorized",
                "webhooks are off: pullstart has no --webhook-secret-file\n",
            );
        };
        if let Err(why) = check_signature(request, secret) {
            return Reply::text(401, "Unauthorized", format!("{why}\n"));
        }
        let event = event_kind(request);
        if !matches!(event.as_deref(), None | Some("push") | Some("push hook")) {
            let event = event.unwrap_or_default();
            return Reply::json(
                200,
                "OK",
                serde_json::json!({"ignored": format!("a `{event}` event, not a push")}),
            );
        }
        let pushed = pushed_ref(&request.body);
        if let (Some(pushed), Some(followed)) = (&pushed, (self.followed)()) {
            if pushed != &format!("refs/heads/{followed}") {
                return Reply::json(
                    200,
                    "OK",
                    serde_json::json!({"ignored": format!("a push to `{pushed}`, not to `{followed}`")}),
                );
            }
        }
        (self.on_push)();
        Reply::json(202, "Accepted", serde_json::json!({"queued": true}))
    }
}

/// Verifies whichever signature header the request carries; `Err` says what is wrong (never
/// with the secret or the signature sent).
fn check_signature(request: &Request, secret: &[u8]) -> Result<(), String> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let hmac_of = |header: &str, value: &[u8], prefix: &str| -> Result<(), String> {
        let hex = value
            .strip_prefix(prefix.as_bytes())
            .ok_or_else(|| format!("`{header}` does not start with `{prefix}`"))?;
        let tag = decode_hex(hex.trim_ascii()).ok_or_else(|| format!("`{header}` is not hex"))?;
        hmac::verify(&key, &request.body, &tag)
            .map_err(|_| format!("`{header}` does not match the body and the secret"))
    };
    for (header, prefix) in [
        ("x-hub-signature-256", "sha256="),
        ("x-pullstart-signature", "sha256="),
        ("x-gitea-signature", ""),
        ("x-forgejo-signature", ""),
        ("x-gogs-signature", ""),
    ] {
        if let Some(value) = request.header(header) {
            return hmac_of(header, value, prefix);
        }
    }
    if let Some(token) = request.header("x-gitlab-token") {
        return constant_time::verify_slices_are_equal(token.trim_ascii(), secret)
            .map_err(|_| "`x-gitlab-token` is not the secret".to_string());
    }
    Err(
        "no signature header (X-Hub-Signature-256, X-Gitea-Signature, X-Forgejo-Signature, \
         X-Gogs-Signature, X-Gitlab-Token or X-Pullstart-Signature)"
            .into(),
    )
}

/// The event named by the provider's header, lowercased; `None` when there is none (generic).
fn event_kind(request: &Request) -> Option<String> {
    [
        "x-github-event",
        "x-gitea-event",
        "x-forgejo-event",
        "x-gogs-event",
        "x-gitlab-event",
    ]
    .iter()
    .find_map(|name| request.header(name))
    .map(|value| String::from_utf8_lossy(value).trim().to_ascii_lowercase())
}

/// The `ref` of a push payload (all providers name it so), when the body is JSON that has one.
fn pushed_ref(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("ref")?.as_str().map(str::to_string)
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

/// Reads one request within [`READ_TIMEOUT`]; the error is the reply that says why not.
fn read_request(stream: &mut TcpStream) -> Result<Request, Reply> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut buffer = Vec::with_capacity(4096);
    let head_len = loop {
        if let Some(end) = find_head_end(&buffer) {
            break end;
        }
        if buffer.len() > MAX_HEAD {
            return Err(Reply::text(
                431,
                "Request Header Fields Too Large",
                "head too large\n",
            ));
        }
        read_some(stream, &mut buffer, deadline)?;
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&buffer[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(Reply::text(400, "Bad Request", "not an HTTP/1.1 request\n")),
    }
    let method = parsed.method.unwrap_or_default().to_string();
    let path = parsed
        .path
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/")
        .to_string();
    let headers: Vec<(String, Vec<u8>)> = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    if header("transfer-encoding").is_some() {
        return Err(Reply::text(
            411,
            "Length Required",
            "send a Content-Length\n",
        ));
    }
    let length = match header("content-length") {
        None => 0,
        Some(value) => std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or_else(|| Reply::text(400, "Bad Request", "bad Content-Length\n"))?,
    };
    if length > MAX_BODY {
        return Err(Reply::text(413, "Payload Too Large", "body too large\n"));
    }
    let mut body = buffer.split_off(head_len);
    while body.len() < length {
        read_some(stream, &mut body, deadline)?;
    }
    body.truncate(length);
    Ok(Request {
        method,
        path,
        headers,
        body,
    })
}

fn find_head_end(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// Reads what is there into `buffer`, waiting at most until `deadline`.
fn read_some(stream: &mut TcpStream, buffer: &mut Vec<u8>, deadline: Instant) -> Result<(), Reply> {
    let timed_out = || {
        Reply::text(
            408,
            "Request Timeout",
            "the request did not arrive in time\n",
        )
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timed_out());
    }
    stream
        .set_read_timeout(Some(left))
        .map_err(|_| timed_out())?;
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk) {
        Ok(0) => Err(Reply::text(
            400,
            "Bad Request",
            "the connection closed early\n",
        )),
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(_) => Err(timed_out()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], body: &str) -> Request {
        Request {
            method: "POST".into(),
            path: "/".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn hex_hmac(secret: &[u8], body: &str) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        hmac::sign(&key, body.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn every_provider_s_signature_is_checked() {
        let secret = b"It's a Secret to Everybody";
        // GitHub's documented example: this secret and body give this signature.
        let github = request(
            &[(
                "X-Hub-Signature-256",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            )],
            "Hello, World!",
        );
        assert_eq!(check_signature(&github, secret), Ok(()));
        let tag = hex_hmac(secret, "{}");
        for header in [
            "X-Gitea-Signature",
            "X-Forgejo-Signature",
            "X-Gogs-Signature",
        ] {
            assert_eq!(
                check_signature(&request(&[(header, &tag)], "{}"), secret),
                Ok(())
            );
            assert!(check_signature(&request(&[(header, &tag)], "{ }"), secret).is_err());
        }
        let generic = format!("sha256={tag}");
        assert_eq!(
            check_signature(
                &request(&[("X-Pullstart-Signature", &generic)], "{}"),
                secret
            ),
            Ok(())
        );
        assert_eq!(
            check_signature(
                &request(&[("X-Gitlab-Token", "It's a Secret to Everybody")], "{}"),
                secret
            ),
            Ok(())
        );
        for bad in [
            request(&[("X-Gitlab-Token", "guess")], "{}"),
            request(&[("X-Hub-Signature-256", &tag)], "{}"),
            request(&[("X-Hub-Signature-256", "sha256=zz")], "{}"),
            request(&[], "{}"),
        ] {
            let why = check_signature(&bad, secret).unwrap_err();
            assert!(!why.contains("Secret"), "the secret leaks: {why}");
        }
    }

    #[test]
    fn the_pushed_ref_and_the_event() {
        assert_eq!(
            pushed_ref(br#"{"ref":"refs/heads/main","after":"abc"}"#).as_deref(),
            Some("refs/heads/main")
        );
        assert_eq!(pushed_ref(b"not json"), None);
        let r = request(&[("X-Gitlab-Event", "Push Hook")], "");
        assert_eq!(event_kind(&r).as_deref(), Some("push hook"));
        assert_eq!(event_kind(&request(&[], "")), None);
    }
}
