//! Command-line options; each server option is also an environment variable
//! (docs/API.md §1), and the flag wins.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Mailroom: configure, test and save your organisation's outgoing email server.
#[derive(Debug, Parser)]
#[command(
    name = "mailroom",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do; `serve` when left out.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve`, also accepted without the word `serve`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web server: the API under /api and the settings page at /.
    Serve(Box<ServeArgs>),
    /// Validate a settings JSON file and send a test email from the terminal.
    Check(CheckArgs),
    /// Submit one message from stdin to a running Mailroom, like sendmail:
    /// [-t] [-i] [-f FROM] [RECIPIENT...], or -bs for SMTP on stdin and
    /// stdout; server from MAILROOM_URL, key from MAILROOM_APP_KEY or
    /// /etc/mailroom/app-key.
    Sendmail {
        /// sendmail's options and the recipients.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// Options of `mailroom serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port to listen on; port 0 picks a free one.
    #[arg(
        long,
        env = "MAILROOM_LISTEN",
        default_value = "127.0.0.1:8080",
        value_parser = parse_http_listen
    )]
    pub listen: SocketAddr,
    /// Holds the SQLite database, the encryption key and a generated admin token.
    #[arg(long, env = "MAILROOM_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Where everything is kept: default sqlite://<data-dir>/mailroom.db; a
    /// postgres:// URL lets several servers share one database.
    #[arg(long, env = "MAILROOM_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Reads the database URL from this file (mode 0600), so its password is
    /// never on a command line.
    #[arg(
        long,
        env = "MAILROOM_DATABASE_URL_FILE",
        conflicts_with = "database_url"
    )]
    pub database_url_file: Option<PathBuf>,
    /// A CIDR of reverse proxies whose X-Forwarded-For names the client; repeatable.
    #[arg(long = "trusted-proxy", env = "MAILROOM_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_trusted_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How long the HTTP server waits for a request's headers (for tests; not in the contract).
    #[arg(long, hide = true, env = "MAILROOM_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub http_header_timeout: std::time::Duration,
    /// How long the HTTP server waits for a whole request (for tests; not in the contract).
    #[arg(long, hide = true, env = "MAILROOM_HTTP_REQUEST_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub http_request_timeout: std::time::Duration,
    /// How long the HTTP server waits for a client to take more of an answer
    /// before it closes the connection (for tests; not in the contract).
    #[arg(long, hide = true, env = "MAILROOM_HTTP_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub http_write_timeout: std::time::Duration,
    /// HTTP connections served at once (for tests; not in the contract: 1024).
    #[arg(
        long,
        hide = true,
        env = "MAILROOM_HTTP_MAX_CONNECTIONS",
        default_value_t = 1024
    )]
    pub http_max_connections: usize,
    /// HTTP connections at once from one address (IPv6: one /64), out of 1,024; trusted proxies are exempt.
    #[arg(
        long,
        env = "MAILROOM_HTTP_MAX_CONNECTIONS_PER_IP",
        default_value = "256",
        value_parser = parse_per_address
    )]
    pub http_max_connections_per_ip: usize,
    /// The encryption key for stored secrets; default <data-dir>/secret.key.
    /// Several servers sharing one PostgreSQL need the same key.
    #[arg(long, env = "MAILROOM_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// The secret an administrator signs in with; generated on first start when unset.
    #[arg(long, env = "MAILROOM_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A Trunk build of the settings page to serve from disk (it must hold
    /// index.html); default the page built into the binary.
    #[arg(long, env = "MAILROOM_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,
    /// The address people use, like https://mail.contoso.com: cookie requests must
    /// come from this origin, and https makes the session cookie Secure.
    #[arg(long, env = "MAILROOM_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub sending: SendingArgs,
    #[command(flatten)]
    pub relay: RelayArgs,
    #[command(flatten)]
    pub test: TestArgs,
}

/// Options of the SMTP submission relay (docs/API.md §1, §7).
#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// The SMTP relay's address and port; `off` turns it off; port 0 picks a free one.
    #[arg(long, env = "MAILROOM_SMTP_LISTEN", default_value = "127.0.0.1:2525", value_parser = parse_smtp_listen)]
    pub smtp_listen: SmtpListen,
    /// The relay with implicit TLS (RFC 8314, "SMTPS", usually port 465):
    /// TLS from the first byte, with the STARTTLS certificate; `off` by default.
    #[arg(long, env = "MAILROOM_SMTPS_LISTEN", default_value = "off", value_parser = parse_smtps_listen)]
    pub smtps_listen: SmtpListen,
    /// The name in the relay's greeting and its generated certificate (default: this machine's).
    #[arg(long, env = "MAILROOM_SMTP_HOSTNAME", value_parser = parse_hostname)]
    pub smtp_hostname: Option<String>,
    /// PEM certificate (chain) for the relay's STARTTLS; default a self-signed one in the data dir.
    #[arg(long, env = "MAILROOM_SMTP_TLS_CERT", requires = "smtp_tls_key")]
    pub smtp_tls_cert: Option<PathBuf>,
    /// PEM private key for `--smtp-tls-cert`.
    #[arg(long, env = "MAILROOM_SMTP_TLS_KEY", requires = "smtp_tls_cert")]
    pub smtp_tls_key: Option<PathBuf>,
    /// A CIDR whose clients may send without AUTH (printers, scanners); repeatable.
    #[arg(long = "smtp-trusted-network", env = "MAILROOM_SMTP_TRUSTED_NETWORKS", value_delimiter = ',', value_parser = parse_trusted_network)]
    pub smtp_trusted_networks: Vec<ipnet::IpNet>,
    /// How long an idle relay connection stays open (for tests; not in the contract).
    #[arg(long, hide = true, env = "MAILROOM_SMTP_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub smtp_idle_timeout: std::time::Duration,
    /// Relay connections at once from one address (IPv6: one /64); trusted networks are exempt.
    #[arg(
        long,
        env = "MAILROOM_SMTP_MAX_CONNECTIONS_PER_IP",
        default_value = "20",
        value_parser = parse_per_address_u32
    )]
    pub smtp_max_connections_per_ip: u32,
    /// A CIDR of TCP load balancers whose connections start with a PROXY protocol header (v1 or v2).
    #[arg(long = "smtp-proxy-protocol", env = "MAILROOM_SMTP_PROXY_PROTOCOL", value_delimiter = ',', value_parser = parse_proxy_protocol)]
    pub smtp_proxy_protocol: Vec<ipnet::IpNet>,
    /// How long a client has to finish AUTH after the greeting (for tests; not in the contract).
    #[arg(long, hide = true, env = "MAILROOM_SMTP_AUTH_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub smtp_auth_timeout: std::time::Duration,
    /// The longest relay session (for tests; not in the contract).
    #[arg(long, hide = true, env = "MAILROOM_SMTP_SESSION_LIMIT", default_value = "30m", value_parser = parse_duration)]
    pub smtp_session_limit: std::time::Duration,
    /// How often the relay's certificate files are read again (for tests; not in the contract).
    #[arg(long, hide = true, env = "MAILROOM_SMTP_TLS_RELOAD_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub smtp_tls_reload_interval: std::time::Duration,
    /// How long writing one reply may take (for tests; not in the contract).
    #[arg(long, hide = true, env = "MAILROOM_SMTP_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub smtp_write_timeout: std::time::Duration,
}

impl Default for RelayArgs {
    fn default() -> Self {
        RelayArgs {
            smtp_listen: SmtpListen::Off,
            smtps_listen: SmtpListen::Off,
            smtp_hostname: None,
            smtp_tls_cert: None,
            smtp_tls_key: None,
            smtp_trusted_networks: Vec::new(),
            smtp_idle_timeout: std::time::Duration::from_secs(300),
            smtp_max_connections_per_ip: 20,
            smtp_proxy_protocol: Vec::new(),
            smtp_auth_timeout: std::time::Duration::from_secs(60),
            smtp_session_limit: std::time::Duration::from_secs(30 * 60),
            smtp_write_timeout: std::time::Duration::from_secs(30),
            smtp_tls_reload_interval: std::time::Duration::from_secs(60),
        }
    }
}

/// `--smtp-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpListen {
    /// No relay.
    Off,
    /// Listen here.
    On(SocketAddr),
}

fn parse_smtp_listen(text: &str) -> Result<SmtpListen, String> {
    parse_listen(text, "127.0.0.1:2525")
}

/// `--smtps-listen`: an address, or `off`.
fn parse_smtps_listen(text: &str) -> Result<SmtpListen, String> {
    parse_listen(text, "0.0.0.0:465")
}

fn parse_listen(text: &str, example: &str) -> Result<SmtpListen, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(SmtpListen::Off);
    }
    socket_address(text, &format!("{example} (or `off`)")).map(SmtpListen::On)
}

/// `--listen`: an address and port.
fn parse_http_listen(text: &str) -> Result<SocketAddr, String> {
    socket_address(text.trim(), "127.0.0.1:8080")
}

/// An IP address and port; the error names what was given and, for a port
/// alone (`8080`, `:8080`) or a host name (`localhost:8080`), the address
/// meant.
fn socket_address(text: &str, example: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        // A port alone (`8080`, `:8080`) or after `localhost`.
        let (host, port) = text.rsplit_once(':').unwrap_or(("", text));
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|_| matches!(host.trim_start_matches(':'), "" | "localhost"));
        // An IPv6 address and port without the brackets (`::1:8080`).
        let bracketed = port.is_none()
            && host.parse::<std::net::Ipv6Addr>().is_ok()
            && text.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok());
        match port {
            Some(p) => format!("“{text}” is not an address and port like {example}: for port {p}, give 127.0.0.1:{p} (this machine only) or 0.0.0.0:{p} (every address)"),
            None if bracketed => {
                let (host, port) = text.rsplit_once(':').unwrap_or_default();
                format!("“{text}” is not an address and port like {example}: an IPv6 address goes in brackets before its port, [{host}]:{port}")
            }
            None => format!("“{text}” is not an address and port like {example}"),
        }
    })
}

/// A network like `10.0.0.0/8`; a bare address means that one host. IPv4
/// written as IPv6 (`::ffff:10.0.0.0/104`) is read as the IPv4 network it
/// is (`10.0.0.0/8`): peers are compared in their canonical form, so as
/// written it would never match anyone.
/// What keeps an option's URL (`--public-url`, `--entra-authority`,
/// `--graph-endpoint`) from being an `http`/`https` base address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlFault {
    /// No `scheme://`.
    NoScheme,
    /// A scheme other than http or https.
    Scheme,
    /// A user name or password before the host.
    UserInfo,
    /// Nothing where the host goes.
    NoHost,
    /// A query (`?…`) or a fragment (`#…`).
    QueryOrFragment,
}

/// An option's URL as a base address: its scheme, lower case, and its
/// authority (host and port, not yet checked), or what keeps it from being
/// one. A path (a proxy's prefix) is allowed.
pub fn base_url(url: &str) -> Result<(String, &str), UrlFault> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlFault::NoScheme)?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(UrlFault::Scheme);
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(UrlFault::UserInfo);
    }
    if authority.is_empty() {
        return Err(UrlFault::NoHost);
    }
    if url.contains(['?', '#']) {
        return Err(UrlFault::QueryOrFragment);
    }
    Ok((scheme, authority))
}

fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    let net = text
        .parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("“{text}” is not a network like 192.168.1.0/24 or an address"))?;
    Ok(match net {
        ipnet::IpNet::V6(n) if n.prefix_len() >= 96 => match n.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, n.prefix_len() - 96)
                .map(|n| ipnet::IpNet::V4(n.trunc()))
                .unwrap_or(net),
            None => net,
        },
        _ => net,
    })
}

/// A host name for the relay's greeting and certificate, like
/// `mail.contoso.com`: dot-separated labels of letters, digits and hyphens
/// (RFC 1123; underscores too, which some internal names have and which
/// refusing would stop an upgraded server from starting), each at most 63
/// characters, 253 in all; a final dot is dropped. Empty (an env file's
/// `MAILROOM_SMTP_HOSTNAME=`) stays empty: the machine's name. Anything
/// else went into every greeting and EHLO reply as written: a line break
/// there ended the reply early and let the rest read as another reply.
///
/// Not `mailroom_shared::parse::check_host_name`, the form's check of the
/// upstream's host: that one refuses underscores, and its messages speak to
/// the form's Host field rather than to an option.
pub fn parse_hostname(text: &str) -> Result<String, String> {
    let name = text.trim();
    let name = name
        .strip_suffix('.')
        .filter(|n| !n.is_empty())
        .unwrap_or(name);
    let shown: String = name.chars().take(80).flat_map(char::escape_debug).collect();
    let bad = |why: String| {
        Err(format!(
            "“{shown}” is not a host name like mail.contoso.com: {why}"
        ))
    };
    if name.is_empty() {
        return Ok(String::new());
    }
    if name.len() > 253 {
        return bad(format!(
            "it is {} characters long, and at most 253 fit",
            name.len()
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    for label in name.split('.') {
        if label.is_empty() {
            return bad("it has an empty part between dots".into());
        }
        if let Some(c) = label.chars().find(|c| !allowed(*c)) {
            return bad(format!(
                "“{}” is not allowed (only letters, digits, hyphens, underscores and dots)",
                c.escape_debug()
            ));
        }
        // ASCII from here: a byte is a character.
        if label.len() > 63 {
            return bad(format!(
                "its part “{}…” is longer than 63 characters",
                &label[..20]
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad(format!("its part “{label}” starts or ends with a hyphen"));
        }
    }
    Ok(name.to_string())
}

/// The widest network any option trusts: an IPv4 /8 (`10.0.0.0/8`), an
/// IPv6 /7 (`fc00::/7`, every unique local address).
const WIDEST_V4: u8 = 8;
const WIDEST_V6: u8 = 7;

/// Whether `net` is wider than anything an organisation's own network can
/// be: `0.0.0.0/0`, `::/0`, `2000::/3`, or IPv4 written as IPv6
/// (`::ffff:0.0.0.0/96`, read as `0.0.0.0/0`).
fn too_wide_to_trust(net: &ipnet::IpNet) -> bool {
    match net {
        ipnet::IpNet::V4(n) => n.prefix_len() < WIDEST_V4,
        ipnet::IpNet::V6(n) => n.prefix_len() < WIDEST_V6,
    }
}

/// A network an option trusts: refused when it takes in much of the
/// internet, saying what anyone there could then do.
fn parse_trusted(text: &str, anyone_could: &str) -> Result<ipnet::IpNet, String> {
    let net = parse_cidr(text)?;
    if too_wide_to_trust(&net) {
        return Err(format!(
            "“{}” is too wide to trust: anyone in it, much of the internet, could {anyone_could}. Name your own network, like 192.168.10.0/24 (at most a /{WIDEST_V4}, or an IPv6 /{WIDEST_V6})",
            text.trim()
        ));
    }
    Ok(net)
}

/// `--smtp-trusted-network`: clients that send without AUTH.
fn parse_trusted_network(text: &str) -> Result<ipnet::IpNet, String> {
    parse_trusted(
        text,
        "send mail through the relay as your mailbox without AUTH",
    )
}

/// `--trusted-proxy`: proxies whose `X-Forwarded-For` names the client.
fn parse_trusted_proxy(text: &str) -> Result<ipnet::IpNet, String> {
    parse_trusted(
        text,
        "name itself any address in X-Forwarded-For, past the sign-in lockouts and per-address limits",
    )
}

/// `--smtp-proxy-protocol`: load balancers whose PROXY header names the client.
fn parse_proxy_protocol(text: &str) -> Result<ipnet::IpNet, String> {
    parse_trusted(
        text,
        "claim any address in a PROXY header, a trusted network's included, past the relay's per-address limits",
    )
}

/// Options of the sending side (docs/API.md §1, §7, §8).
#[derive(Debug, Clone, Args)]
pub struct SendingArgs {
    /// The largest message accepted, in bytes (at least 1024).
    #[arg(long, env = "MAILROOM_MAX_MESSAGE_SIZE", default_value = "26214400", value_parser = parse_message_size)]
    pub max_message_size: u64,
    /// Outgoing SMTP connections at once (default: the provider's; Office 365: 3),
    /// at most 32; 0: this server only accepts mail, and other servers deliver it.
    #[arg(long, env = "MAILROOM_DELIVERY_CONNECTIONS", value_parser = parse_connections)]
    pub delivery_connections: Option<u32>,
    /// Messages per minute sent upstream; 0 means no limit (default: the provider's; Office 365: 30).
    #[arg(long, env = "MAILROOM_DELIVERY_RATE")]
    pub delivery_rate: Option<u32>,
    /// How long a message is retried before it fails, like 24h.
    #[arg(long, env = "MAILROOM_MAX_QUEUE_TIME", default_value = "24h", value_parser = parse_duration)]
    pub max_queue_time: std::time::Duration,
    /// How long the record of a final message is kept, like 30d.
    #[arg(long, env = "MAILROOM_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub retention: std::time::Duration,
    /// While no message waits, how often each profile signs in upstream,
    /// first a minute after the start (a fresh token, then SMTP AUTH;
    /// nothing is sent), so that a
    /// credential that stopped working, or a way out now blocked, pauses
    /// delivery and says so before the next message: like 6h, at least 5m,
    /// or off.
    #[arg(long, env = "MAILROOM_SIGN_IN_CHECK", default_value = "6h", value_parser = parse_sign_in_check)]
    pub sign_in_check: SignInCheck,
    /// The same, with no floor (for tests; not in the contract).
    #[arg(long, hide = true, env = "MAILROOM_SIGN_IN_CHECK_FOR_TESTS", value_parser = parse_duration)]
    pub sign_in_check_for_tests: Option<std::time::Duration>,
    /// How often a paused queue tries again by itself (for tests; not in the contract).
    #[arg(long, hide = true, env = "MAILROOM_PAUSE_RETRY", default_value = "60s", value_parser = parse_duration)]
    pub pause_retry: std::time::Duration,
    /// How long a server's claim on a message lasts (for tests; not in the contract).
    #[arg(long, hide = true, env = "MAILROOM_DELIVERY_LEASE", default_value = "2m", value_parser = parse_duration)]
    pub delivery_lease: std::time::Duration,
    /// Bytes of messages being received at once, over HTTP and the relay
    /// together, one app holding at most half; more wait their turn (default:
    /// 4 × --max-message-size, at least 256 MiB).
    #[arg(long, env = "MAILROOM_INTAKE_MEMORY", value_parser = parse_intake_memory)]
    pub intake_memory: Option<u64>,
    /// How long a message waits for room in that memory before it is refused
    /// for now (HTTP 429, SMTP 451 4.3.1; for tests; not in the contract).
    #[arg(long, hide = true, env = "MAILROOM_INTAKE_WAIT", default_value = "30s", value_parser = parse_duration)]
    pub intake_wait: std::time::Duration,
    /// Each webhook request's limit (for tests; not in the contract).
    #[arg(long, hide = true, env = "MAILROOM_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub webhook_timeout: std::time::Duration,
    /// Microsoft Graph's requests per app and mailbox, as COUNT/DURATION,
    /// kept ahead of time (for tests; not in the contract).
    #[arg(long, hide = true, env = "MAILROOM_GRAPH_REQUEST_LIMIT", default_value = "10000/10m", value_parser = parse_per)]
    pub graph_request_limit: (u64, std::time::Duration),
    /// Microsoft Graph's uploaded bytes per app and mailbox, as
    /// BYTES/DURATION, kept ahead of time (for tests; not in the contract).
    #[arg(long, hide = true, env = "MAILROOM_GRAPH_UPLOAD_LIMIT", default_value = "150000000/5m", value_parser = parse_per)]
    pub graph_upload_limit: (u64, std::time::Duration),
}

/// `N/DURATION`, like `10000/10m`: at least 1 in a duration as
/// [`parse_duration`] takes it.
fn parse_per(text: &str) -> Result<(u64, std::time::Duration), String> {
    let (n, span) = text.split_once('/').ok_or_else(|| {
        format!("“{text}” is not a number per duration: write it like 10000/10m.")
    })?;
    let n = n
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            format!("“{n}” is not a whole number of at least 1: write it like 10000/10m.")
        })?;
    Ok((n, parse_duration(span.trim())?))
}

impl Default for SendingArgs {
    fn default() -> Self {
        SendingArgs {
            max_message_size: 26_214_400,
            delivery_connections: None,
            delivery_rate: None,
            max_queue_time: std::time::Duration::from_secs(24 * 3600),
            retention: std::time::Duration::from_secs(30 * 24 * 3600),
            pause_retry: PAUSE_RETRY,
            sign_in_check: SignInCheck(Some(SIGN_IN_CHECK)),
            sign_in_check_for_tests: None,
            delivery_lease: std::time::Duration::from_secs(120),
            webhook_timeout: std::time::Duration::from_secs(10),
            intake_memory: None,
            intake_wait: crate::intake::budget::WAIT,
            graph_request_limit: (10_000, std::time::Duration::from_secs(600)),
            graph_upload_limit: (150_000_000, std::time::Duration::from_secs(300)),
        }
    }
}

/// `--sign-in-check`'s default.
pub const SIGN_IN_CHECK: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// `--sign-in-check`'s shortest: each check asks Entra for a token, and
/// Entra throttles a tenant that asks too often.
pub const MIN_SIGN_IN_CHECK: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// `--sign-in-check`: how often an idle profile signs in; `None`: never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInCheck(pub Option<std::time::Duration>);

/// `off`, or a duration of at least [`MIN_SIGN_IN_CHECK`].
pub fn parse_sign_in_check(text: &str) -> Result<SignInCheck, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(SignInCheck(None));
    }
    let d =
        parse_duration(text).map_err(|e| format!("{e}; or off, to never sign in while idle"))?;
    if d < MIN_SIGN_IN_CHECK {
        return Err("shorter than 5m: each check asks Microsoft Entra ID for a token, and Entra throttles a tenant that asks too often; write 5m or more, like 6h, or off".to_string());
    }
    Ok(SignInCheck(Some(d)))
}

impl SendingArgs {
    /// How often an idle profile signs in, if at all.
    pub fn sign_in_check_every(&self) -> Option<std::time::Duration> {
        self.sign_in_check_for_tests.or(self.sign_in_check.0)
    }
}

/// How often a paused queue tries again by itself (docs/API.md §8).
pub const PAUSE_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// The longest duration an option takes: 100 years. Longer ones (humantime
/// reads up to 584 billion years) would overflow the dates they are taken
/// from, failing every queued message at once or stopping housekeeping.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(36_500 * 24 * 3600);

/// A duration such as `90s`, `15m`, `24h` or `30d`, from a second to
/// [`MAX_DURATION`].
///
/// Zero is refused for every option: none of them means "off" or "no
/// limit" by it, and each would do harm; so is a fraction of a second,
/// which the options kept in whole seconds (the queue time, retention, the
/// lease) read as zero. `--max-queue-time 0` failed every message not sent
/// at its first try (while paused, all of them: a wrong configuration then
/// bounced mail), `--retention 0` dropped a failed message's body before
/// anyone could retry it, a lease of 0 let a second server claim a message
/// being sent, and a retry or time limit of 0 spun or cut everything at
/// once.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e}: write a duration like 90s, 15m, 24h or 30d"))?;
    if d < std::time::Duration::from_secs(1) {
        return Err(
            "less than a second, which is no time at all here (zero does not mean unlimited): write at least 1s, like 90s, 15m, 24h or 30d"
                .to_string(),
        );
    }
    if d > MAX_DURATION {
        return Err("longer than 100 years: write at most 36500d (like 30d or 24h)".to_string());
    }
    Ok(d)
}

/// `--delivery-connections`: 0 to a profile's highest (32, as
/// `PATCH /api/profiles/{id}` takes). Each is a worker that looks for work
/// every second when idle: 100,000 had the server claiming 100,000 times a
/// second with nothing to send.
pub fn parse_connections(text: &str) -> Result<u32, String> {
    let most = mailroom_shared::profiles::MAX_CONNECTIONS;
    match text.trim().parse::<u32>() {
        Ok(n) if n <= most => Ok(n),
        _ => Err(format!(
            "write a whole number from 0 (this server only accepts mail) to {most}; Office 365 takes 3 at once per mailbox (432 4.3.2 past that)"
        )),
    }
}

/// The smallest `--max-message-size`: headers alone take a few hundred bytes.
pub const MIN_MESSAGE_SIZE: u64 = 1024;

/// A message size in bytes, at least [`MIN_MESSAGE_SIZE`]. `0` refused every
/// message while the relay's `SIZE 0` told clients there was no limit
/// (RFC 1870), so a typo stopped all mail with nothing saying why at start.
pub fn parse_message_size(text: &str) -> Result<u64, String> {
    let n: u64 = text.trim().parse().map_err(|_| {
        "not a whole number of bytes: write one like 26214400 (25 MiB, the default)".to_string()
    })?;
    if n < MIN_MESSAGE_SIZE {
        return Err(format!(
            "{n} bytes would refuse every message (0 does not mean unlimited): write at least {MIN_MESSAGE_SIZE}, like 26214400 (25 MiB, the default)"
        ));
    }
    if n > MAX_MESSAGE_SIZE {
        return Err(format!(
            "{n} bytes is past what any upstream takes and what Mailroom holds in memory while a message comes in: write at most {MAX_MESSAGE_SIZE} (1 GiB); Exchange Online takes up to 157286400 (150 MiB)"
        ));
    }
    Ok(n)
}

/// The largest `--max-message-size`: a message is held in memory while it
/// is received and checked, and the intake's default room is four of them.
/// Without a ceiling, 18446744073709551615 was taken, which left the intake
/// no bound (its room four times that) and had the relay offer `SIZE` of 16
/// exabytes.
pub const MAX_MESSAGE_SIZE: u64 = 1 << 30;

/// `--http-max-connections-per-ip` and `--smtp-max-connections-per-ip`: a
/// whole number from 1. `0` was taken as 1: written to mean "no limit", as
/// with many servers, it let each address (a NAT of printers, an office
/// behind one router) hold one connection at a time.
pub fn parse_per_address(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("0 would let each address hold one connection at a time (0 does not mean unlimited): write a whole number of connections from 1, like the default".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("not a whole number of connections: write one from 1, like the default".into()),
    }
}

/// [`parse_per_address`] for the relay's option.
pub fn parse_per_address_u32(text: &str) -> Result<u32, String> {
    let n = parse_per_address(text)?;
    u32::try_from(n).map_err(|_| format!("{n} is more connections than one server serves: write a smaller number, like the default"))
}

/// `--intake-memory`: bytes, at least [`MIN_MESSAGE_SIZE`] (less is raised
/// to one largest message anyway, so it is surely a typo).
pub fn parse_intake_memory(text: &str) -> Result<u64, String> {
    let unset = "unset, it is four times --max-message-size, at least 268435456 (256 MiB)";
    let n: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("not a whole number of bytes: write one like 268435456; {unset}"))?;
    if n < MIN_MESSAGE_SIZE {
        return Err(format!(
            "{n} bytes cannot hold a message: write at least {MIN_MESSAGE_SIZE}; {unset}"
        ));
    }
    Ok(n)
}

/// Options shared by `serve` and `check` for the test email.
#[derive(Debug, Clone, Args, Default)]
pub struct TestArgs {
    /// Replaces the Microsoft login host, scheme included (http://127.0.0.1:9000).
    #[arg(long, env = "MAILROOM_ENTRA_AUTHORITY")]
    pub entra_authority: Option<String>,
    /// Replaces Microsoft Graph's endpoint, scheme included (http://127.0.0.1:9001);
    /// token scopes stay the cloud's real ones.
    #[arg(long, env = "MAILROOM_GRAPH_ENDPOINT")]
    pub graph_endpoint: Option<String>,
    /// A PEM file of extra root certificates trusted for SMTP TLS.
    #[arg(long, env = "MAILROOM_EXTRA_CA_FILE")]
    pub extra_ca_file: Option<PathBuf>,
}

/// Options of `mailroom check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// A SETTINGS JSON file, secrets included.
    #[arg(long, value_name = "FILE")]
    pub settings: PathBuf,
    /// Where to send the test email.
    #[arg(long, value_name = "ADDRESS")]
    pub to: String,
    #[command(flatten)]
    pub test: TestArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--smtps-listen` takes an address and port or `off`; anything else
    /// (a bare port, a port out of range, a line break inside, a host name)
    /// stops the start with the option named and an example.
    #[test]
    fn a_port_alone_or_localhost_is_told_the_address_meant() {
        for given in ["8080", ":8080", "localhost:8080", " 8080 "] {
            let e = parse_http_listen(given).unwrap_err();
            assert!(
                e.contains("give 127.0.0.1:8080 (this machine only) or 0.0.0.0:8080"),
                "{given}: {e}"
            );
        }
        let e = parse_smtp_listen("2525").unwrap_err();
        assert!(
            e.contains("like 127.0.0.1:2525 (or `off`): for port 2525, give 127.0.0.1:2525"),
            "{e}"
        );
        assert_eq!(parse_http_listen("[::1]:0"), Ok("[::1]:0".parse().unwrap()));
        // IPv6 without its brackets: told where they go.
        for (given, meant) in [
            ("::1:8080", "[::1]:8080"),
            ("::: 2525", ""),
            ("fe80::1:25", "[fe80::1]:25"),
        ] {
            let e = parse_http_listen(given).unwrap_err();
            assert_eq!(
                e.contains("goes in brackets"),
                !meant.is_empty(),
                "{given}: {e}"
            );
            assert!(e.contains(meant), "{given}: {e}");
        }
        let e = parse_http_listen("mail.contoso.com:8080").unwrap_err();
        assert_eq!(
            e,
            "“mail.contoso.com:8080” is not an address and port like 127.0.0.1:8080"
        );
    }

    #[test]
    fn a_listen_address_is_read_or_refused_naming_the_option() {
        assert_eq!(parse_smtps_listen(" OFF "), Ok(SmtpListen::Off));
        assert_eq!(
            parse_smtps_listen("[::]:465"),
            Ok(SmtpListen::On("[::]:465".parse().unwrap()))
        );
        for bad in [
            "465",
            "0.0.0.0:70000",
            "0.0.0.0:4\n65",
            "relay.contoso.com:465",
            "",
        ] {
            let e = parse_smtps_listen(bad).unwrap_err();
            assert!(
                e.contains("is not an address and port like 0.0.0.0:465 (or `off`)"),
                "{e}"
            );
        }
        let e = Cli::try_parse_from(["mailroom", "serve", "--smtps-listen", "465"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--smtps-listen") && e.contains("like 0.0.0.0:465"),
            "{e}"
        );
    }

    #[test]
    fn a_number_per_duration_is_read_or_refused_in_words() {
        use std::time::Duration;
        assert_eq!(
            parse_per("10000/10m"),
            Ok((10_000, Duration::from_secs(600)))
        );
        assert_eq!(
            parse_per(" 60000 / 3s "),
            Ok((60_000, Duration::from_secs(3)))
        );
        for bad in [
            "",
            "10000",
            "/10m",
            "0/10m",
            "-1/10m",
            "x/10m",
            "10/0s",
            "10/",
            "10/forever",
        ] {
            let e = parse_per(bad).expect_err(bad);
            assert!(!e.is_empty() && !e.contains("panick"), "{bad}: {e}");
        }
        assert!(parse_per("0/10m").unwrap_err().contains("at least 1"));
        assert!(parse_per("10000").unwrap_err().contains("like 10000/10m"));
    }

    #[test]
    fn trusted_networks_stop_at_a_slash_eight() {
        for ok in [
            "10.0.0.0/8",
            "192.168.10.0/24",
            "203.0.113.7",
            "fc00::/7",
            "2001:db8::/32",
            "::1",
            "::ffff:10.0.0.0/104",
        ] {
            for parse in [
                parse_trusted_network,
                parse_trusted_proxy,
                parse_proxy_protocol,
            ] {
                assert!(parse(ok).is_ok(), "{ok}");
            }
        }
        for wide in [
            "0.0.0.0/0",
            "0.0.0.0/1",
            "10.0.0.0/7",
            "::/0",
            "2000::/3",
            "::ffff:0.0.0.0/96",
            "::ffff:0:0/103",
        ] {
            let e = parse_trusted_network(wide).unwrap_err();
            assert!(
                e.contains("too wide to trust") && e.contains("without AUTH"),
                "{wide}: {e}"
            );
            assert!(parse_trusted_proxy(wide)
                .unwrap_err()
                .contains("X-Forwarded-For"));
            assert!(parse_proxy_protocol(wide)
                .unwrap_err()
                .contains("PROXY header"));
        }
        assert!(parse_trusted_network("bogus")
            .unwrap_err()
            .contains("is not a network"));
        // IPv4 written as IPv6 is the IPv4 network, which canonical peers match.
        for (written, read) in [
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:192.168.10.7/120", "192.168.10.0/24"),
            ("::ffff:192.0.2.9", "192.0.2.9/32"),
            ("2001:db8::/32", "2001:db8::/32"),
        ] {
            assert_eq!(parse_cidr(written), Ok(read.parse().unwrap()), "{written}");
        }
    }

    #[test]
    fn host_names_are_letters_digits_and_hyphens_in_dotted_parts() {
        for (ok, read) in [
            ("mail.contoso.com", "mail.contoso.com"),
            (" relay-1.corp.example. ", "relay-1.corp.example"),
            ("localhost", "localhost"),
            ("mail_relay.corp", "mail_relay.corp"),
            (" ", ""),
            ("192.0.2.25", "192.0.2.25"),
        ] {
            assert_eq!(parse_hostname(ok).as_deref(), Ok(read), "{ok}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        // Past 63 bytes with a character across byte 20 (it was cut there).
        let long_accented = format!("a{}", "é".repeat(40));
        let long_name = vec!["abcdefghi"; 26].join(".");
        for (bad, says) in [
            ("a..b", "empty part"),
            (".", "empty part"),
            ("mail\r\n250 fake", "“\\r” is not allowed"),
            ("mail host", "“ ” is not allowed"),
            ("mail/relay.example", "“/” is not allowed"),
            (long_accented.as_str(), "“é” is not allowed"),
            ("-mail.example", "starts or ends with a hyphen"),
            (long_label.as_str(), "longer than 63"),
            (long_name.as_str(), "at most 253"),
        ] {
            let e = parse_hostname(bad).unwrap_err();
            assert!(
                e.contains("is not a host name like") && e.contains(says),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn delivery_connections_go_from_0_to_32() {
        assert_eq!(parse_connections("0"), Ok(0));
        assert_eq!(parse_connections(" 3 "), Ok(3));
        assert_eq!(parse_connections("32"), Ok(32));
        for bad in ["33", "100000", "-1", "three", ""] {
            let e = parse_connections(bad).unwrap_err();
            assert!(
                e.contains("from 0 (this server only accepts mail) to 32"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn connections_per_address_start_at_one() {
        assert_eq!(parse_per_address(" 256 "), Ok(256));
        assert_eq!(parse_per_address_u32("1"), Ok(1));
        for zero in ["0", " 0"] {
            let e = parse_per_address(zero).unwrap_err();
            assert!(e.contains("0 does not mean unlimited"), "{e}");
            assert!(parse_per_address_u32(zero).is_err());
        }
        for odd in ["", "-1", "many", "2.5"] {
            assert!(parse_per_address(odd).unwrap_err().contains("whole number"));
        }
        assert!(parse_per_address_u32("4294967296").is_err());
    }

    #[test]
    fn message_sizes_start_at_a_kibibyte() {
        assert_eq!(parse_message_size("26214400"), Ok(26_214_400));
        assert_eq!(parse_message_size(" 1024 "), Ok(1024));
        for small in ["0", "1023"] {
            let e = parse_message_size(small).unwrap_err();
            assert!(e.contains("write at least 1024"), "{small}: {e}");
        }
        for odd in ["", "25MB", "-1", "1e6", "18446744073709551616"] {
            let e = parse_message_size(odd).unwrap_err();
            assert!(e.contains("whole number of bytes"), "{odd}: {e}");
        }
        assert_eq!(parse_message_size("1073741824"), Ok(MAX_MESSAGE_SIZE));
        for large in ["1073741825", "18446744073709551615"] {
            let e = parse_message_size(large).unwrap_err();
            assert!(
                e.contains("write at most 1073741824 (1 GiB)"),
                "{large}: {e}"
            );
        }
    }

    #[test]
    fn durations_are_read_up_to_a_hundred_years() {
        let secs = |t: &str| parse_duration(t).map(|d| d.as_secs());
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs(" 24h "), Ok(86_400));
        assert_eq!(secs("1s"), Ok(1));
        for zero in ["0s", "0", " 0m ", "0d", "999ms", "500ms"] {
            let e = parse_duration(zero).unwrap_err();
            assert!(e.contains("write at least 1s"), "{zero}: {e}");
        }
        assert_eq!(secs("36500d"), Ok(MAX_DURATION.as_secs()));
        for long in ["36501d", "290000y", "300000000000y"] {
            let e = parse_duration(long).unwrap_err();
            assert!(e.contains("at most 36500d"), "{long}: {e}");
        }
        for odd in ["", "soon", "-5s", "584942417355y"] {
            let e = parse_duration(odd).unwrap_err();
            assert!(e.contains("write a duration like"), "{odd}: {e}");
        }
    }

    #[test]
    fn the_sign_in_check_is_off_or_at_least_five_minutes() {
        let every = |t: &str| parse_sign_in_check(t).map(|c| c.0);
        assert_eq!(every("off"), Ok(None));
        assert_eq!(every(" OFF "), Ok(None));
        assert_eq!(every("5m"), Ok(Some(MIN_SIGN_IN_CHECK)));
        assert_eq!(every("6h"), Ok(Some(SIGN_IN_CHECK)));
        for short in ["1s", "299s", "4m"] {
            let e = parse_sign_in_check(short).unwrap_err();
            assert!(
                e.contains("Entra throttles") && e.contains("or off"),
                "{short}: {e}"
            );
        }
        for odd in ["0", "never", ""] {
            let e = parse_sign_in_check(odd).unwrap_err();
            assert!(
                e.contains("or off, to never sign in while idle"),
                "{odd}: {e}"
            );
        }
        // The default, and the hidden test form before it.
        let every = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["mailroom"], args].concat()).unwrap();
            cli.serve.sending.sign_in_check_every()
        };
        assert_eq!(every(&[]), Some(SIGN_IN_CHECK));
        assert_eq!(every(&["--sign-in-check", "off"]), None);
        assert_eq!(
            every(&["--sign-in-check", "off", "--sign-in-check-for-tests", "2s"]),
            Some(std::time::Duration::from_secs(2))
        );
        let e = Cli::try_parse_from(["mailroom", "--sign-in-check", "1m"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--sign-in-check") && e.contains("5m or more"),
            "{e}"
        );
    }
}
