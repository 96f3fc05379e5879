//! `watch --listen`: push webhooks signed as each provider signs them start a run at once,
//! anything unsigned or wrongly signed starts nothing, SIGUSR1 starts a run, requests during a
//! run lead to exactly one more, and `/healthz` and `/metrics` report the loop.
//!
//! The client is reqwest on 127.0.0.1 (a raw socket for the slow client); the payloads have the
//! shape of the providers' documented push events. `--every 1h`: any second run is the
//! webhook's or the signal's doing, never the poll's.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;

use crate::ops::Watch;
use crate::support::{free_port, path_str, Fixture};

const SECRET: &str = "correct horse battery staple";
const WAIT: Duration = Duration::from_secs(10);

struct Listening {
    watch: Watch,
    base: String,
}

fn start(t: &Fixture, extra: &[&str]) -> Listening {
    let secret = t.root.join("webhook.secret");
    fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "watch",
        "--every",
        "1h",
        "--output",
        "json",
        "--listen",
        &addr,
        "--webhook-secret-file",
        path_str(&secret),
    ];
    args.extend(extra);
    let mut watch = Watch::start(t, &args);
    // The first run happens at start.
    let first = watch.next_json(WAIT);
    assert!(first["exit_code"] == 0, "{first}");
    let base = format!("http://{addr}");
    wait_until(|| get(&base, "/healthz").is_ok());
    Listening { watch, base }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

fn get(base: &str, path: &str) -> Result<(u16, String), reqwest::Error> {
    let response = client().get(format!("{base}{path}")).send()?;
    let status = response.status().as_u16();
    Ok((status, response.text()?))
}

fn post(base: &str, headers: &[(&str, String)], body: &str) -> (u16, String) {
    let mut request = client().post(format!("{base}/hook")).body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().expect("the endpoint answers");
    let status = response.status().as_u16();
    (status, response.text().unwrap_or_default())
}

fn hmac_hex(secret: &str, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::sign(&key, body.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A push event as GitHub, Gitea, Forgejo and GitLab send it (the fields pullstart reads, with
/// some of the others around them).
fn push_payload(branch: &str, after: &str) -> String {
    serde_json::json!({
        "ref": format!("refs/heads/{branch}"),
        "before": "0000000000000000000000000000000000000000",
        "after": after,
        "repository": {"full_name": "team/app", "clone_url": "https://git.example.com/team/app.git"},
        "pusher": {"name": "dev", "email": "dev@example.com"},
        "commits": [{"id": after, "message": "change", "added": [], "removed": [], "modified": ["app/main.py"]}],
    })
    .to_string()
}

fn wait_until(mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The headers one provider sends with a body.
type Signer = Box<dyn Fn(&str) -> Vec<(&'static str, String)>>;

#[test]
fn each_provider_s_signed_push_starts_a_run_at_once() {
    let t = Fixture::new();
    let mut l = start(&t, &[]);
    let providers: Vec<(&str, Signer)> = vec![
        (
            "github",
            Box::new(|body: &str| {
                vec![
                    ("X-GitHub-Event", "push".to_string()),
                    (
                        "X-Hub-Signature-256",
                        format!("sha256={}", hmac_hex(SECRET, body)),
                    ),
                ]
            }),
        ),
        (
            "gitea",
            Box::new(|body: &str| {
                vec![
                    ("X-Gitea-Event", "push".to_string()),
                    ("X-Gitea-Signature", hmac_hex(SECRET, body)),
                ]
            }),
        ),
        (
            "forgejo",
            Box::new(|body: &str| {
                vec![
                    ("X-Forgejo-Event", "push".to_string()),
                    ("X-Forgejo-Signature", hmac_hex(SECRET, body)),
                ]
            }),
        ),
        (
            "gitlab",
            Box::new(|_: &str| {
                vec![
                    ("X-Gitlab-Event", "Push Hook".to_string()),
                    ("X-Gitlab-Token", SECRET.to_string()),
                ]
            }),
        ),
        (
            "generic",
            Box::new(|body: &str| {
                vec![(
                    "X-Pullstart-Signature",
                    format!("sha256={}", hmac_hex(SECRET, body)),
                )]
            }),
        ),
    ];
    for (n, (provider, headers)) in providers.iter().enumerate() {
        let tip = t.push_files(&[("app/main.py", &format!("v{n} via {provider}\n"))]);
        let body = push_payload("main", &tip);
        let sent = Instant::now();
        let (status, text) = post(&l.base, &headers(&body), &body);
        assert_eq!(status, 202, "{provider}: {text}");
        let report = l.watch.json_until("updated", WAIT);
        let took = sent.elapsed();
        assert_eq!(report["to"], tip.as_str(), "{provider}: {report}");
        assert_eq!(t.head(), tip, "{provider}");
        // The poll is an hour away: only the webhook can have started this run.
        assert!(took < Duration::from_secs(5), "{provider}: {took:?}");
    }
    let (code, _, _, stderr) = l.watch.terminate(Duration::from_secs(5));
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn unsigned_wrongly_signed_and_other_branch_pushes_start_nothing() {
    let t = Fixture::new();
    let l = start(&t, &[]);
    let before = t.head();
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    let body = push_payload("main", &tip);
    for (headers, status) in [
        (vec![], 401),
        (
            vec![(
                "X-Hub-Signature-256",
                format!("sha256={}", hmac_hex("guess", &body)),
            )],
            401,
        ),
        (vec![("X-Gitlab-Token", "guess".to_string())], 401),
        (vec![("X-Gitea-Signature", "not hex".to_string())], 401),
    ] {
        let (got, text) = post(&l.base, &headers, &body);
        assert_eq!(got, status, "{headers:?}: {text}");
    }
    // Correctly signed, but for another branch, or not a push: acknowledged and ignored.
    let other = push_payload("feature", &tip);
    let (got, text) = post(
        &l.base,
        &[(
            "X-Hub-Signature-256",
            format!("sha256={}", hmac_hex(SECRET, &other)),
        )],
        &other,
    );
    assert_eq!((got, text.contains("not to `main`")), (200, true), "{text}");
    let (got, _) = post(
        &l.base,
        &[
            ("X-GitHub-Event", "issues".to_string()),
            (
                "X-Hub-Signature-256",
                format!("sha256={}", hmac_hex(SECRET, &body)),
            ),
        ],
        &body,
    );
    assert_eq!(got, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(t.head(), before, "a refused webhook started a run");
    let (code, _, rest, stderr) = l.watch.terminate(Duration::from_secs(5));
    assert_eq!(code, Some(0));
    assert!(rest.is_empty(), "no run: {rest:?}");
    // One log line per refusal, none with the secret.
    assert_eq!(
        stderr.matches("pullstart: listen: 401").count(),
        4,
        "{stderr}"
    );
    assert!(
        !stderr.contains(SECRET) && !stderr.contains("guess"),
        "{stderr}"
    );
}

#[test]
fn sigusr1_starts_a_run_and_requests_during_a_run_lead_to_exactly_one_more() {
    let t = Fixture::new();
    let mut l = start(&t, &[]);
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    let pid = l.watch.child.0.id().to_string();
    let usr1 = || {
        let status = std::process::Command::new("kill")
            .args(["-USR1", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    };
    usr1();
    let report = l.watch.json_until("updated", WAIT);
    assert_eq!(report["to"], tip.as_str());

    // A slow restart; five pushes' worth of webhooks and a signal arrive while it runs.
    t.slow_restart(1.5);
    let restarts = t.restart_calls().len();
    t.push_files(&[("app/main.py", "v3\n")]);
    usr1();
    t.wait_for_restart_call(WAIT);
    for _ in 0..5 {
        let body = push_payload("main", &t.remote_tip());
        let (status, _) = post(
            &l.base,
            &[(
                "X-Hub-Signature-256",
                format!("sha256={}", hmac_hex(SECRET, &body)),
            )],
            &body,
        );
        assert_eq!(status, 202);
    }
    usr1();
    let first = l.watch.next_json(WAIT);
    assert_eq!(first["result"], "updated", "{first}");
    let second = l.watch.next_json(WAIT);
    assert_eq!(
        second["result"], "up_to_date",
        "exactly one more run: {second}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(t.restart_calls().len(), restarts + 1);
    let (code, _, rest, stderr) = l.watch.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(rest.is_empty(), "no third run: {rest:?}");
}

#[test]
fn healthz_and_metrics_report_the_loop_and_slow_or_huge_requests_are_cut_off() {
    let t = Fixture::new();
    let l = start(&t, &[]);
    let (status, text) = get(&l.base, "/healthz").unwrap();
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(health["alive"], true);
    assert_eq!(health["last_run"]["result"], "up_to_date", "{health}");
    assert_eq!(health["last_run"]["exit_code"], 0);
    let (status, text) = get(&l.base, "/metrics").unwrap();
    assert_eq!(status, 200);
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter().map(Ok)).unwrap();
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "pullstart_last_exit_code"),
        "{text}"
    );
    assert_eq!(get(&l.base, "/nope").unwrap().0, 404);

    // A body over the bound is refused unread (the head announcing it is enough).
    let addr = l.base.trim_start_matches("http://");
    let mut huge = TcpStream::connect(addr).unwrap();
    huge.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    huge.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = huge.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // A client that sends half a head and then nothing is answered 408 and cut off.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    // Meanwhile, and after, the endpoint serves others.
    assert_eq!(get(&l.base, "/healthz").unwrap().0, 200);
    let (code, _, _, _) = l.watch.terminate(Duration::from_secs(5));
    assert_eq!(code, Some(0));
}

#[test]
fn listen_needs_an_address_and_a_usable_secret_file() {
    let t = Fixture::new();
    let out = t.run(&["watch", "--every", "1h", "--listen", "localhost"]);
    out.code(2)
        .stderr_contains("--listen: `localhost` is not an address and port");
    let empty = t.root.join("empty.secret");
    fs::write(&empty, "\n").unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let out = t.run(&[
        "watch",
        "--every",
        "1h",
        "--listen",
        &addr,
        "--webhook-secret-file",
        path_str(&empty),
    ]);
    out.code(2).stderr_contains("is empty");
    // A config inside the checkout may not open a port or name the secret's file.
    let config = t.config_file(&format!("listen: {addr}\n"));
    let inside = t.co("pullstart.yml");
    fs::copy(&config, &inside).unwrap();
    let out = t.run(&["run", "--config", path_str(&inside)]);
    out.code(2).stderr_contains("`listen`");
}
