//! The http(s) transport: reqwest with rustls, git's http settings applied, credentials without
//! prompts.
//!
//! gix's reqwest backend takes none of git's `http.*` settings but `http.extraHeader` and
//! `http.followRedirects`; the ones that matter for pullstart are applied here through its
//! client hook:
//! - the timeout (`connect_timeout`, and reqwest's blocking `timeout`, which bounds the wait for
//!   the response headers and each read of the body: a stall detector, not a cap on the whole
//!   transfer). A `http.lowSpeedTime` shorter than the timeout is used instead, as git would cut
//!   a stalled transfer then; `gitoxide.http.connectTimeout` likewise for connecting;
//! - `http.sslCAInfo` (or `GIT_SSL_CAINFO`): its certificates are trusted besides the system's,
//!   and one of them presented as the server's own is accepted even if it says `CA:TRUE`, as git
//!   accepts a self-signed certificate (see [`SslCaInfoVerifier`]);
//! - `http.sslVerify=false` (or `GIT_SSL_NO_VERIFY`), as git honours it;
//! - `http.proxy` / `remote.<name>.proxy` (an empty value: no proxy), with `no_proxy`; without
//!   them reqwest reads `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` itself.
//!
//! Credentials, asked for only when the server answers 401: the token of [`Credentials`] as a
//! basic-auth password (user: the url's, else `x-access-token`, which GitHub and GitLab accept
//! with any token), else the git credential helpers configured for the checkout
//! (`credential.helper`, `credential.<url>.helper`) with their stderr silenced and prompting
//! disabled, since no one is there to answer under cron. A url's own `user:password` is tried
//! first, as git does. gix never sends credentials over plain `http://`; neither does pullstart.
//!
//! The entrypoint's first clone, whose connection gix opens itself, is given the same
//! [`Credentials`] and [`transport_options`], and its failures are named by the same [`cause`].

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use gix::bstr::ByteSlice;
use gix::credentials::helper::Action;
use gix::protocol::transport::client::blocking_io::http as gix_http;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::{failure, lowercase_first, seconds, Cause, FetchOptions};
use crate::exit::ExitCode;
use crate::redact::{add_secret, redact};

/// The environment variable holding the token itself.
pub const TOKEN_ENV: &str = "PULLSTART_TOKEN";
/// The environment variable naming a file that holds the token.
pub const TOKEN_FILE_ENV: &str = "PULLSTART_TOKEN_FILE";
/// The git config key naming a file that holds the token.
pub const TOKEN_FILE_CONFIG: &str = "pullstart.tokenFile";
/// The basic-auth user sent with a token when the url names none.
pub const TOKEN_USER: &str = "x-access-token";

/// `PULLSTART_TOKEN` as the process started with it; see [`take_token_from_environment`].
static TOKEN_FROM_ENV: OnceLock<Option<String>> = OnceLock::new();

/// Moves `PULLSTART_TOKEN` out of the process environment into this module, so that no child
/// inherits the secret: not compose, the hooks or the app `entrypoint` execs, and not what
/// gitoxide starts (ssh, credential helpers, `git-upload-pack`, LFS filters). Called first in
/// `main`, while the process has one thread: the environment is not safe to change later.
pub fn take_token_from_environment() {
    let token = env_nonempty(TOKEN_ENV);
    std::env::remove_var(TOKEN_ENV);
    let _ = TOKEN_FROM_ENV.set(token);
}

fn token_from_environment() -> Option<String> {
    TOKEN_FROM_ENV
        .get_or_init(|| env_nonempty(TOKEN_ENV))
        .clone()
}

/// A token and where it came from (for messages: never the token itself).
struct Token {
    secret: String,
    origin: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("secret", &"***")
            .field("origin", &self.origin)
            .finish()
    }
}

/// What answers the server's 401.
pub(crate) struct Credentials {
    token: Option<Token>,
    user: String,
    /// Where the remote's url points: the token goes there and nowhere else.
    origin: Origin,
}

/// The scheme, host and port of a url: what a credential may be sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: gix::url::Scheme,
    host: Option<String>,
    port: Option<u16>,
}

impl Origin {
    fn of(url: &gix::Url) -> Self {
        Origin {
            scheme: url.scheme.clone(),
            host: url.host().map(str::to_ascii_lowercase),
            port: url.port_or_default(),
        }
    }

    /// `host:port` (or `host`), for messages.
    fn describe(&self) -> String {
        let host = self.host.as_deref().unwrap_or_default();
        match self.port {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }
}

impl Credentials {
    /// The token for this fetch, from the first of: `options.token_file`, `PULLSTART_TOKEN`,
    /// `PULLSTART_TOKEN_FILE`, git config `pullstart.tokenFile`. None of them: the credential
    /// helpers. A named token file that cannot be read, or is empty, is a usage error.
    pub(crate) fn resolve(
        repo: &gix::Repository,
        options: &FetchOptions,
        url: &gix::Url,
    ) -> anyhow::Result<Self> {
        let token = if let Some(path) = &options.token_file {
            Some(read_token_file(path, "the token file")?)
        } else if let Some(secret) = token_from_environment() {
            Some(token_from_text(&secret, format!("`{TOKEN_ENV}`"), || {
                format!("`{TOKEN_ENV}` holds no token")
            })?)
        } else if let Some(path) = env_nonempty(TOKEN_FILE_ENV) {
            Some(read_token_file(
                Path::new(&path),
                &format!("`{TOKEN_FILE_ENV}`"),
            )?)
        } else {
            match config_token_file(repo)? {
                Some(path) => Some(read_token_file(&path, &format!("`{TOKEN_FILE_CONFIG}`"))?),
                None => None,
            }
        };
        let user = url
            .user()
            .filter(|user| !user.is_empty())
            .unwrap_or(TOKEN_USER)
            .to_owned();
        if let Some(password) = url.password() {
            add_secret(password);
        }
        Ok(Credentials {
            token,
            user,
            origin: Origin::of(url),
        })
    }

    /// Where the credentials come from, for "the server rejected …".
    pub(crate) fn describe(&self) -> String {
        match &self.token {
            Some(token) => format!("the token from {}", token.origin),
            None => "the credentials (from the url or the git credential helpers)".to_owned(),
        }
    }

    /// The function gix calls when the server asks for credentials.
    ///
    /// gix follows a redirect of the first request (git's `http.followRedirects=initial`) and
    /// then asks for credentials for the url it was redirected to. The token is meant for the
    /// remote's own host, so it is never given to another origin (git, through curl, sends
    /// credentials after a redirect only to the same host). The credential helpers are asked
    /// for the new url, as git asks them: they answer per host.
    pub(crate) fn into_authenticate(
        self,
        repo: &gix::Repository,
    ) -> impl FnMut(Action) -> gix::Result<Option<gix::credentials::protocol::Outcome>> + 'static
    {
        let repo = repo.clone();
        let Credentials {
            token,
            user,
            origin,
        } = self;
        let mut helpers: Option<gix::credentials::helper::Cascade> = None;
        move |action| {
            if let Some(token) = &token {
                return Ok(match action {
                    Action::Get(context) => {
                        refuse_another_origin(&context, &origin)?;
                        Some(gix::credentials::protocol::Outcome {
                            identity: gix::sec::identity::Account {
                                username: user.clone(),
                                password: token.secret.clone(),
                                oauth_refresh_token: None,
                            },
                            next: context.into(),
                        })
                    }
                    // Nothing stores or forgets our token.
                    Action::Store(_) | Action::Erase(_) => None,
                });
            }
            // As gix's own default, but never prompting and with the helpers' stderr silenced.
            let prompt = gix::prompt::Options {
                askpass: None,
                mode: gix::prompt::Mode::Disable,
            };
            if let Action::Get(context) = &action {
                let url = context
                    .url
                    .clone()
                    .or_else(|| context.to_url())
                    .ok_or_else(|| {
                        gix::error::message("the server asked for credentials for no url")
                    })?;
                let url = gix::url::parse(url.as_bstr())?;
                let (mut cascade, _, _) = repo.config_snapshot().credential_helpers(url)?;
                cascade.stderr = false;
                helpers = Some(cascade);
            }
            // Nothing from the helpers for another origin: say it was the redirect, not a
            // missing token (the url's own password stayed behind, as it should).
            let redirected = match &action {
                Action::Get(context) => refuse_another_origin(context, &origin).err(),
                _ => None,
            };
            let Some(cascade) = helpers.as_mut() else {
                return redirected.map_or(Ok(None), Err);
            };
            let outcome = match (cascade.invoke(action, prompt), redirected) {
                (Ok(None) | Err(_), Some(redirected)) => return Err(redirected),
                (outcome, _) => outcome?,
            };
            if let Some(outcome) = &outcome {
                add_secret(&outcome.identity.password);
                if let Some(refresh) = &outcome.identity.oauth_refresh_token {
                    add_secret(refresh);
                }
            }
            Ok(outcome)
        }
    }
}

/// The words of the error when a redirect leads the token's request to another origin; also
/// what [`cause`] looks for.
const REDIRECTED_ELSEWHERE: &str = "redirected to another host";

/// An error when gix asks for credentials for a url on another origin than the remote's,
/// which happens only after a redirect (or for no url at all, which it never does).
fn refuse_another_origin(
    context: &gix::credentials::protocol::Context,
    origin: &Origin,
) -> gix::Result<()> {
    let Some(url) = context.url.clone().or_else(|| context.to_url()) else {
        return Err(gix::error::message("the server asked for credentials for no url").into());
    };
    let asked = Origin::of(&gix::url::parse(url.as_bstr())?);
    if asked == *origin {
        return Ok(());
    }
    Err(gix::error::message!(
        "the server {REDIRECTED_ELSEWHERE}, `{}` instead of `{}`",
        asked.describe(),
        origin.describe()
    )
    .into())
}

/// The environment variable `name` when set and not empty.
fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// `pullstart.tokenFile` from trusted configuration: `~/` expanded, a relative path taken from
/// the worktree (of a bare repository: its git dir).
fn config_token_file(repo: &gix::Repository) -> anyhow::Result<Option<PathBuf>> {
    let path = repo
        .config_snapshot()
        .trusted_path(TOKEN_FILE_CONFIG)
        .map_err(|err| {
            failure(
                ExitCode::Usage,
                format!(
                    "invalid `{TOKEN_FILE_CONFIG}` in the git config: {}",
                    lowercase_first(&err.to_string())
                ),
            )
        })?;
    Ok(path
        .filter(|path| !path.as_os_str().is_empty())
        .map(|path| {
            if path.is_relative() {
                repo.workdir().unwrap_or_else(|| repo.git_dir()).join(path)
            } else {
                path
            }
        }))
}

/// The token in the file at `path`, named by `origin`; a usage error when unreadable or empty.
fn read_token_file(path: &Path, origin: &str) -> anyhow::Result<Token> {
    let text = std::fs::read(path).map_err(|err| {
        let reason = err.to_string();
        let reason = reason.split(" (os error").next().unwrap_or_default();
        failure(
            ExitCode::Usage,
            format!(
                "cannot read the token file `{}` (named by {origin}): {}",
                path.display(),
                lowercase_first(reason)
            ),
        )
    })?;
    let text = String::from_utf8_lossy(&text);
    token_from_text(&text, format!("`{}`", path.display()), || {
        format!(
            "the token file `{}` (named by {origin}) holds no token",
            path.display()
        )
    })
}

/// The first non-blank line of `text`, trimmed, registered as a secret.
fn token_from_text(
    text: &str,
    origin: String,
    empty: impl FnOnce() -> String,
) -> anyhow::Result<Token> {
    // Registered before anything can fail, so that no message can show any of it.
    add_secret(text.trim());
    let secret = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or_default()
        .to_owned();
    if secret.is_empty() {
        return Err(failure(ExitCode::Usage, empty()).into());
    }
    add_secret(&secret);
    Ok(Token { secret, origin })
}

/// The transport options for `url`: git's configuration for it, plus the reqwest client hook
/// that applies the timeout, the CA file, certificate verification and the proxy.
pub(crate) fn transport_options(
    repo: &gix::Repository,
    url: &gix::Url,
    remote: &str,
    timeout: Duration,
) -> gix::Result<Box<dyn Any>> {
    let configured = repo.transport_options(url.to_bstring().as_bstr(), Some(remote.into()))?;
    let mut options = configured
        .and_then(|options| options.downcast::<gix_http::Options>().ok())
        .map(|options| *options)
        .unwrap_or_default();
    let timeout = timeout.max(Duration::from_millis(1));
    let stall = match (
        options.low_speed_limit_bytes_per_second,
        options.low_speed_time_seconds,
    ) {
        (limit, time) if limit > 0 && time > 0 => Duration::from_secs(time).min(timeout),
        _ => timeout,
    };
    let connect = options.connect_timeout.unwrap_or(timeout).min(timeout);
    let verify = options.ssl_verify;
    let tls = match &options.ssl_ca_info {
        Some(path) if verify => Some(ssl_ca_info_tls(path)?),
        _ => None,
    };
    let proxy = options.proxy.clone();
    let no_proxy = options.no_proxy.clone();
    let configure = move |mut builder: reqwest::blocking::ClientBuilder| -> gix::Result<reqwest::blocking::ClientBuilder> {
        builder = builder.connect_timeout(connect).timeout(stall);
        if let Some(tls) = &tls {
            builder = builder.tls_backend_preconfigured(tls.clone());
        }
        if !verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        match proxy.as_deref() {
            None => {}
            Some("") => builder = builder.no_proxy(),
            Some(url) => {
                let mut proxy = reqwest::Proxy::all(url).map_err(|err| {
                    gix::error::message!(
                        "invalid http.proxy `{}`: {}",
                        redact(url),
                        redact(&err.to_string())
                    )
                })?;
                if let Some(hosts) = &no_proxy {
                    proxy = proxy.no_proxy(reqwest::NoProxy::from_string(hosts));
                }
                builder = builder.proxy(proxy);
            }
        }
        Ok(builder)
    };
    options.backend = Some(Arc::new(Mutex::new(gix_http::reqwest::Options {
        configure_client: Some(Box::new(configure)),
        configure_request: None,
    })));
    Ok(Box::new(options))
}

/// The TLS configuration for `http.sslCAInfo` at `path`: the system's trust store plus the
/// file's certificates (as reqwest's `tls_certs_merge` does), verified by [`SslCaInfoVerifier`].
fn ssl_ca_info_tls(path: &Path) -> gix::Result<rustls::ClientConfig> {
    // reqwest's own parse first: it gives the messages for a missing or broken file.
    read_certificates(path)?;
    let pem = std::fs::read(path).map_err(|err| {
        gix::error::message!("cannot read http.sslCAInfo `{}`: {}", path.display(), err)
    })?;
    let listed = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            gix::error::message!(
                "http.sslCAInfo `{}` holds no usable PEM certificate: {}",
                path.display(),
                err
            )
        })?;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let tls_error = |err: rustls::Error| {
        gix::error::message!("cannot use http.sslCAInfo `{}`: {}", path.display(), err)
    };
    let system_and_listed =
        rustls_platform_verifier::Verifier::new_with_extra_roots(listed.clone(), provider.clone())
            .map_err(tls_error)?;
    let verifier = SslCaInfoVerifier {
        inner: system_and_listed,
        listed,
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // What reqwest sets for its own configuration without http2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The usual verification (system store plus `http.sslCAInfo`), and one more case git accepts:
/// a server certificate that is itself listed in `http.sslCAInfo`. Such a certificate, made with
/// `openssl req -x509` as on most self-hosted servers, says `CA:TRUE`, which webpki refuses in
/// a server's own certificate; OpenSSL trusts it because it is a trust anchor. The host name is
/// still checked, and so are its dates: webpki checks them before the CA flag, so a certificate
/// refused for the CA flag alone is within its validity period.
#[derive(Debug)]
struct SslCaInfoVerifier {
    inner: rustls_platform_verifier::Verifier,
    listed: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for SslCaInfoVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            Err(rustls::Error::InvalidCertificate(problem))
                if is_ca_used_as_end_entity(&problem)
                    && self.listed.iter().any(|listed| listed == end_entity) =>
            {
                let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&parsed, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Whether `problem` is webpki's refusal of a CA certificate as the server's own.
fn is_ca_used_as_end_entity(problem: &rustls::CertificateError) -> bool {
    match problem {
        rustls::CertificateError::Other(other) => {
            other.0.downcast_ref::<webpki::Error>() == Some(&webpki::Error::CaUsedAsEndEntity)
        }
        _ => false,
    }
}

/// The certificates in the PEM file `path` (`http.sslCAInfo`).
fn read_certificates(path: &Path) -> gix::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).map_err(|err| {
        gix::error::message!("cannot read http.sslCAInfo `{}`: {}", path.display(), err)
    })?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| {
        gix::error::message!(
            "http.sslCAInfo `{}` holds no usable PEM certificate: {}",
            path.display(),
            err
        )
    })?;
    if certificates.is_empty() {
        return Err(gix::error::message!(
            "http.sslCAInfo `{}` holds no PEM certificate",
            path.display()
        )
        .into());
    }
    Ok(certificates)
}

/// What went wrong over http(s), when it is something this module knows better than the
/// generic classification: authentication, certificates, http-specific timeouts.
pub(crate) fn cause(err: &gix::Error, credentials: &str, timeout: Duration) -> Option<Cause> {
    let mut texts = Vec::new();
    let mut timed_out = false;
    let mut refused = false;
    let mut clear_text = false;
    let mut certificate = None;
    for cause in err.iter_errors() {
        visit(cause, &mut |error| {
            texts.push(error.to_string());
            if let Some(rustls::Error::InvalidCertificate(problem)) = error.downcast_ref() {
                certificate.get_or_insert_with(|| problem.clone());
            }
            if let Some(err) = error.downcast_ref::<reqwest::Error>() {
                timed_out |= err.is_timeout();
            }
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
                refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
            }
            if let Some(gix::protocol::transport::client::Error::AuthenticationRefused(_)) =
                error.downcast_ref()
            {
                clear_text = true;
            }
        });
    }
    let all = texts.join("\n");
    let has = |needle: &str| all.contains(needle);
    if clear_text {
        return Some(Cause::NeedsFix {
            cause: "credentials are never sent over plain http".to_owned(),
            remedy: "use the https:// url of the repository".to_owned(),
        });
    }
    if let Some(text) = texts
        .iter()
        .find(|text| text.contains(REDIRECTED_ELSEWHERE))
    {
        return Some(Cause::NeedsFix {
            cause: format!(
                "{}, and credentials go only to the remote's own host",
                redact(text)
            ),
            remedy: "set the remote's url to where the repository is now (`git remote set-url`)"
                .to_owned(),
        });
    }
    if has("No credentials were returned")
        || has("Could not obtain identity")
        || has("Failed to obtain credentials")
        || has("Couldn't obtain")
    {
        return Some(Cause::NeedsFix {
            cause: "authentication required, but no credentials are configured".to_owned(),
            remedy: format!(
                "put a token in a file named by `{TOKEN_FILE_ENV}` or `git config {TOKEN_FILE_CONFIG}`, \
                 set `{TOKEN_ENV}`, or configure a git credential helper for the checkout"
            ),
        });
    }
    if has("were not accepted by the remote") || err.is_unauthenticated() {
        return Some(Cause::NeedsFix {
            cause: format!("authentication failed: the server rejected {credentials}"),
            remedy: "check the token or password (expired? no read access to the repository?)"
                .to_owned(),
        });
    }
    if refused {
        return Some(Cause::Transient("connection refused".to_owned()));
    }
    if timed_out {
        return Some(Cause::Transient(format!(
            "no answer within {}",
            seconds(timeout)
        )));
    }
    if has("No CA certificates were loaded") {
        return Some(Cause::NeedsFix {
            cause: "this system has no CA certificates to verify the server's certificate with"
                .to_owned(),
            remedy: "install the ca-certificates package, or point http.sslCAInfo or SSL_CERT_FILE at a CA bundle"
                .to_owned(),
        });
    }
    if let Some(cause) = certificate.as_ref().and_then(certificate_cause) {
        return Some(cause);
    }
    if has("invalid peer certificate") || has("certificate verify") || has("UnknownIssuer") {
        let detail = texts
            .iter()
            .rev()
            .find(|text| text.contains("certificate"))
            .map(|text| format!(" ({})", redact(text)))
            .unwrap_or_default();
        return Some(Cause::NeedsFix {
            cause: format!("the server's TLS certificate is not trusted{detail}"),
            remedy: "set http.sslCAInfo to the certificate of the CA that signed it, or add that CA to the system's trust store"
                .to_owned(),
        });
    }
    if has("Received HTTP status 404") {
        return Some(Cause::NeedsFix {
            cause: "the server has no such repository (HTTP 404)".to_owned(),
            remedy: "check the remote's url".to_owned(),
        });
    }
    if has("cannot read http.sslCAInfo") || has("holds no usable PEM") || has("holds no PEM") {
        let text = texts
            .iter()
            .find(|text| text.contains("http.sslCAInfo"))
            .cloned()
            .unwrap_or_default();
        return Some(Cause::NeedsFix {
            cause: lowercase_first(&redact(&text)),
            remedy: "fix http.sslCAInfo".to_owned(),
        });
    }
    None
}

/// What is wrong with the server's certificate, and what fixes it, for the problems a
/// self-hosted server meets; `None` for the others (the generic message names them).
fn certificate_cause(problem: &rustls::CertificateError) -> Option<Cause> {
    use rustls::CertificateError as E;
    let (cause, remedy) = match problem {
        E::UnknownIssuer => (
            "the server's TLS certificate is not trusted: it is signed by an unknown issuer".to_owned(),
            "set http.sslCAInfo to the certificate of the CA that signed it (for a self-signed \
             certificate: to the certificate itself), or add that CA to the system's trust store"
                .to_owned(),
        ),
        E::Expired | E::ExpiredContext { .. } => {
            let when = match problem {
                E::ExpiredContext { not_after, .. } => format!(" on {}", utc_date(*not_after)),
                _ => String::new(),
            };
            (
                format!("the server's TLS certificate is not trusted: it expired{when}"),
                "renew the server's certificate (or check this host's clock)".to_owned(),
            )
        }
        E::NotValidYet | E::NotValidYetContext { .. } => (
            "the server's TLS certificate is not trusted: it is not valid yet".to_owned(),
            "check the clocks of this host and of the server".to_owned(),
        ),
        E::NotValidForName | E::NotValidForNameContext { .. } => {
            let names = match problem {
                E::NotValidForNameContext { expected, presented } => format!(
                    " `{}`; it names {}",
                    expected.to_str(),
                    if presented.is_empty() {
                        "none".to_owned()
                    } else {
                        presented
                            .iter()
                            .map(|name| presented_name(name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
                _ => " in the url".to_owned(),
            };
            (
                format!("the server's TLS certificate is not trusted: it is not valid for the host name{names}"),
                "use in the remote's url a host name the certificate names, or give the server a certificate for this name"
                    .to_owned(),
            )
        }
        problem if is_ca_used_as_end_entity(problem) => {
            (
                "the server's TLS certificate is not trusted: it is a CA certificate (CA:TRUE, as \
                 `openssl req -x509` makes) used as the server's own, and http.sslCAInfo does not list it"
                    .to_owned(),
                "set http.sslCAInfo to a file holding this very certificate, or give the server a \
                 certificate with CA:FALSE signed by a CA"
                    .to_owned(),
            )
        }
        _ => return None,
    };
    Some(Cause::NeedsFix { cause, remedy })
}

/// A name the certificate presents, as rustls gives it (`DnsName("git.example.org")`), bare.
fn presented_name(name: &str) -> &str {
    name.split_once("(\"")
        .and_then(|(_, rest)| rest.strip_suffix("\")"))
        .unwrap_or(name)
}

/// `time` as a UTC date and time, for messages.
fn utc_date(time: UnixTime) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_secs(time.as_secs());
    humantime::format_rfc3339_seconds(time).to_string()
}

/// `error` and its sources, looking inside I/O errors (whose `source()` skips their payload).
fn visit(
    error: &(dyn std::error::Error + 'static),
    f: &mut dyn FnMut(&(dyn std::error::Error + 'static)),
) {
    let mut next = Some(error);
    let mut depth = 0;
    while let Some(current) = next {
        f(current);
        depth += 1;
        if depth > 32 {
            break;
        }
        if let Some(payload) = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            visit(payload, f);
        }
        next = current.source();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_problems_are_named() {
        let expired = rustls::CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_000)),
            not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000)),
        };
        let Some(Cause::NeedsFix { cause, remedy }) = certificate_cause(&expired) else {
            panic!("no cause for an expired certificate");
        };
        assert_eq!(
            cause,
            "the server's TLS certificate is not trusted: it expired on 2023-11-14T22:13:20Z"
        );
        assert!(remedy.contains("renew"), "{remedy}");
        assert_eq!(
            presented_name("DnsName(\"git.example.org\")"),
            "git.example.org"
        );
        assert_eq!(presented_name("odd"), "odd");
    }

    #[test]
    fn credentials_go_only_to_the_remotes_own_origin() {
        let remote = gix::url::parse(gix::bstr::BStr::new(
            "https://deploy@git.example.org/app.git",
        ))
        .unwrap();
        let origin = Origin::of(&remote);
        let asked = |url: Option<&str>| gix::credentials::protocol::Context {
            url: url.map(Into::into),
            ..Default::default()
        };
        let allowed = |url: Option<&str>| refuse_another_origin(&asked(url), &origin).is_ok();
        assert!(allowed(Some("https://git.example.org/moved/app.git")));
        assert!(allowed(Some("https://GIT.example.org:443/app.git")));
        assert!(!allowed(Some("https://evil.example.net/app.git")));
        assert!(!allowed(Some("https://git.example.org:8443/app.git")));
        assert!(!allowed(Some("http://git.example.org/app.git")));
        assert!(!allowed(None));
        let refused = refuse_another_origin(&asked(Some("https://evil.example.net/x")), &origin);
        let message = refused.unwrap_err().to_string();
        assert!(
            message.contains("`evil.example.net:443` instead of `git.example.org:443`"),
            "{message}"
        );
    }

    #[test]
    fn token_text_takes_the_first_line() {
        let token = token_from_text("\n  zq-tok-123  \nsecond\n", "x".into(), || "empty".into())
            .expect("token");
        assert_eq!(token.secret, "zq-tok-123");
        assert_eq!(redact("a zq-tok-123 b"), "a *** b");
        let err = token_from_text(" \n\t\n", "x".into(), || "empty".into()).expect_err("empty");
        assert_eq!(crate::exit::code_of(&err), ExitCode::Usage);
        assert_eq!(err.to_string(), "empty");
    }

    #[test]
    fn unreadable_token_file_is_a_usage_error() {
        let err = read_token_file(Path::new("/nonexistent/zq/token"), "`PULLSTART_TOKEN_FILE`")
            .expect_err("missing");
        assert_eq!(crate::exit::code_of(&err), ExitCode::Usage);
        assert_eq!(
            err.to_string(),
            "cannot read the token file `/nonexistent/zq/token` (named by `PULLSTART_TOKEN_FILE`): no such file or directory"
        );
    }
}
