//! `git daemon` on 127.0.0.1, serving the fixture root, killed on drop.
#![allow(dead_code)]

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, hermetic, Fixture};

pub struct GitDaemon {
    child: Child,
    pub port: u16,
}

impl GitDaemon {
    /// Serves every repository under the fixture root: `git://127.0.0.1:<port>/remote.git`.
    pub fn start(t: &Fixture) -> GitDaemon {
        for _attempt in 0..5 {
            let port = free_port();
            let mut cmd = Command::new("git");
            hermetic(&mut cmd, &t.home);
            let child = cmd
                .arg("daemon")
                .arg("--reuseaddr")
                .arg(format!("--base-path={}", t.root.display()))
                .arg("--export-all")
                .arg(format!("--port={port}"))
                .arg("--listen=127.0.0.1")
                .arg(&t.root)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // `git daemon` runs `git-daemon` as a child (and that forks one per
                // connection): a process group of its own lets Drop end them all.
                .process_group(0)
                .spawn()
                .expect("spawn git daemon");
            let mut d = GitDaemon { child, port };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return d;
                }
                if let Ok(Some(_)) = d.child.try_wait() {
                    break; // port taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(d);
        }
        panic!("git daemon did not start");
    }

    pub fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for GitDaemon {
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
