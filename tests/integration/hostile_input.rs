//! Hostile input from the remote side and from the checkout: a server that redirects the fetch
//! to another host, a pushed `.env` that names a host device or a FIFO, and file names made to
//! forge output lines.

use crate::support::servers::{self, WebServer, PASSWORD, TOKEN, USER};
use crate::support::*;
use crate::transport_remote::{run_env, set_url, trust_ca};

// ----- redirects -----

/// The remote's url on the test server's https port, under `area` (`to-localhost`, `moved`).
fn redirecting_url(web: &WebServer, area: &str, userinfo: &str) -> String {
    format!(
        "https://{userinfo}127.0.0.1:{}/{area}/remote.git",
        web.https_port
    )
}

#[test]
fn https_redirect_to_another_host_gets_no_credentials() {
    if !servers::available(
        "https_redirect_to_another_host_gets_no_credentials",
        WebServer::NEEDS,
    ) {
        return;
    }
    let t = Fixture::new();
    let web = WebServer::start(&t);
    trust_ca(&t, &web);
    t.push_files(&[("app/main.py", "v2\n")]);
    let before = t.head();
    let token_file = t.root.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();

    set_url(&t, &redirecting_url(&web, "to-localhost", ""));
    let from_env = run_env(&t, &["run"], &[("PULLSTART_TOKEN", TOKEN)]);
    let from_file = run_env(&t, &["run", "--token-file", path_str(&token_file)], &[]);
    set_url(
        &t,
        &redirecting_url(&web, "to-localhost", &format!("{USER}:{PASSWORD}@")),
    );
    let in_url = run_env(&t, &["run"], &[]);

    for out in [&from_env, &from_file] {
        out.code(3).stdout_empty().never_prints(TOKEN);
        let line = out.error_line();
        assert!(
            line.contains("redirected") && line.contains("localhost"),
            "names the redirect and where to: {line}"
        );
    }
    in_url.code(3).stdout_empty().never_prints(PASSWORD);
    assert_eq!(t.head(), before, "nothing was fetched from the other host");
    let to_other_host = web.requests_to(&format!("localhost:{}", web.https_port));
    assert!(
        !to_other_host.is_empty(),
        "the redirect was followed to the other host"
    );
    for request in &to_other_host {
        assert!(
            request.ends_with("authorization=-"),
            "credentials went to the other host: {request}"
        );
    }
}

#[test]
fn https_redirect_within_the_same_host_keeps_the_token() {
    if !servers::available(
        "https_redirect_within_the_same_host_keeps_the_token",
        WebServer::NEEDS,
    ) {
        return;
    }
    let t = Fixture::new();
    let web = WebServer::start(&t);
    trust_ca(&t, &web);
    set_url(&t, &redirecting_url(&web, "moved", ""));
    let tip = t.push_files(&[("app/main.py", "v2\n")]);
    let out = run_env(&t, &["run"], &[("PULLSTART_TOKEN", TOKEN)]);
    out.code(0).stderr_empty().never_prints(TOKEN);
    assert_eq!(t.head(), tip);
    assert_git_clean(&t, &Clean::strict());
}
