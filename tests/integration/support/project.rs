//! A small compose project in the checkout, and the `docker compose config` output the stub
//! prints for it (Compose v2 shapes, as `src/compose.rs` parses them), so that selection by the
//! compose project can be tested without an engine.
//!
//! | service | what it uses from the checkout                                   |
//! | ------- | ---------------------------------------------------------------- |
//! | proxy   | `config/nginx.conf`, bind-mounted as a single file              |
//! | web     | `web/` bind-mounted at /app; env file `web.env`                  |
//! | worker  | built from `worker/` (Dockerfile, requirements.txt); `worker/src` bind-mounted |
//!
//! `README.md`, `docs/` and `scripts/` concern no service.
#![allow(dead_code)]

use super::Fixture;

/// The compose file in the checkout. The stub never reads it, but pullstart does: it names the
/// project's definition files (a change recreates every service), and its `env_file` mention
/// makes pullstart ask for `config --no-interpolate`, as with real Compose v2.
pub const COMPOSE_FILE: &str = "\
name: demo
services:
  proxy:
    image: nginx:1.27
    volumes:
      - ./config/nginx.conf:/etc/nginx/nginx.conf:ro
  web:
    image: python:3.12-slim
    env_file: web.env
    volumes:
      - ./web:/app
  worker:
    build: ./worker
    volumes:
      - ./worker/src:/app/src
";

pub const PROJECT_FILES: &[(&str, &str)] = &[
    ("README.md", "# demo\n"),
    ("docs/guide.md", "guide\n"),
    ("scripts/deploy.sh", "echo deploy\n"),
    ("docker-compose.yml", COMPOSE_FILE),
    ("config/nginx.conf", "worker_processes 1;\n"),
    ("web/app.py", "print('web v1')\n"),
    ("web.env", "GREETING=hello\n"),
    (
        "worker/Dockerfile",
        "FROM python:3.12-slim\nCOPY requirements.txt lib.py /app/\nCOPY src /app/src\n",
    ),
    ("worker/requirements.txt", "requests==2.31.0\n"),
    ("worker/lib.py", "LIB = 1\n"),
    ("worker/src/job.py", "print('job v1')\n"),
];

/// `docker compose config` for `COMPOSE_FILE` (Compose v2: long-syntax volumes, absolute paths,
/// a top-level `name`, no `env_file`). `{CO}` is the checkout.
pub const CONFIG_V2: &str = "\
name: demo
services:
  proxy:
    image: nginx:1.27
    networks:
      default: null
    volumes:
      - type: bind
        source: {CO}/config/nginx.conf
        target: /etc/nginx/nginx.conf
        read_only: true
        bind:
          create_host_path: true
  web:
    environment:
      GREETING: hello
    image: python:3.12-slim
    networks:
      default: null
    volumes:
      - type: bind
        source: {CO}/web
        target: /app
        bind:
          create_host_path: true
  worker:
    build:
      context: {CO}/worker
      dockerfile: Dockerfile
    networks:
      default: null
    volumes:
      - type: bind
        source: {CO}/worker/src
        target: /app/src
        bind:
          create_host_path: true
networks:
  default:
    name: demo_default
";

/// `docker compose config --no-interpolate`, trimmed to what matters: `env_file` stays.
pub const CONFIG_V2_RAW: &str = "\
name: demo
services:
  proxy:
    image: nginx:1.27
  web:
    env_file:
      - path: {CO}/web.env
        required: true
    image: python:3.12-slim
  worker:
    build:
      context: {CO}/worker
      dockerfile: Dockerfile
";

/// A fixture whose repository holds the compose project, with the stub describing it.
pub fn compose_fixture() -> Fixture {
    let t = Fixture::with_files(PROJECT_FILES);
    t.compose_config(CONFIG_V2);
    t.compose_config_raw(CONFIG_V2_RAW);
    t
}

/// The abbreviated commit id the summary lines show.
pub fn short(id: &str) -> &str {
    &id[..7]
}
