//! The `outdial` configuration: one TOML file, every key optional, unknown keys refused.
//!
//! `Config::default()` is what `outdial serve` runs with when no file is given. Every key is
//! documented in `docs/configuration.md`; `docs/outdial.example.toml` lists them all with their
//! defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use outdial_dataplane::sip::tls::TlsConfigError;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::trunk::{Password, TrunkConfig};

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The HTTP API listener.
    pub http: HttpConfig,
    /// SIP signalling: listener, trunk, identity and RFC 3261 timers.
    pub sip: SipConfig,
    /// The UDP port range for RTP media.
    pub rtp: RtpConfig,
    /// Dataplane threads and their I/O backend.
    pub dataplane: DataplaneConfig,
    /// Where call records are kept.
    pub store: StoreConfig,
    /// Limits applied to every call.
    pub calls: CallsConfig,
    /// How fast accepted calls are released to the telephony nodes.
    pub scheduler: SchedulerConfig,
    /// The text-to-speech engine for `<prompt>` text.
    pub tts: TtsConfig,
    /// Limits on fetching VoiceXML documents and audio.
    pub fetch: FetchConfig,
    /// Log level and format.
    pub log: LogConfig,
    /// Limits on each call's VoiceXML application.
    pub vxml: VxmlConfig,
    /// This node's identity among control nodes.
    pub cluster: ClusterConfig,
    /// `[[trunk]]`: carriers' SIP trunks, chosen per tenant (see [`crate::trunk`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trunk: Vec<TrunkConfig>,
    /// `[[inbound]]`: the application answering each number called (see
    /// [`crate::inbound`]); callers must come from `sip.inbound_sources`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inbound: Vec<crate::inbound::InboundNumber>,
    /// What e-mail call requests mean: recipient domains, tenants' rules, attached files.
    pub email: crate::intake::email::EmailConfig,
    /// The SMTP listener of the e-mail gateway.
    pub smtp: SmtpConfig,
    /// HTTPS for the API (`[https]`).
    pub https: HttpsConfig,
    /// The operator's rules over every call (`[policy]`, see `docs/policy.md`).
    pub policy: crate::policy::PolicyConfig,
    /// Where tenants' applications, callbacks and calls may connect (`[egress]`, see
    /// `docs/security.md`).
    pub egress: crate::egress::EgressConfig,
    /// Answering-machine detection's settings (`[machine_detection]`, see `docs/amd.md`).
    pub machine_detection: crate::runner::MachineDetectionConfig,
    /// Speech recognition for voice grammars (`[speech]`, see [`crate::speech`]).
    pub speech: SpeechConfig,
}

/// `[https]`: TLS for the API listener (`http.listen`), reloaded on SIGHUP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpsConfig {
    /// PEM certificate chain, leaf first. With `key`, the API speaks only HTTPS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

impl HttpsConfig {
    /// The certificate and key files when HTTPS is on.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.cert.as_deref()?, self.key.as_deref()?))
    }
}

/// `[smtp]`: the SMTP listener that takes call requests by e-mail (`docs/smtp.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Whether `outdial serve` listens for SMTP at all.
    pub enabled: bool,
    /// Address the SMTP listener binds.
    pub listen: SocketAddr,
    /// The name in the greeting and the EHLO reply; empty = the machine's host name.
    pub hostname: String,
    /// Largest message accepted, bytes (announced as `SIZE`).
    pub max_message_bytes: usize,
    /// Most recipients in one message.
    pub max_recipients: usize,
    /// SMTP connections open at once.
    pub max_connections: usize,
    /// SMTP connections open at once from one IP address.
    pub max_connections_per_source: usize,
    /// Seconds a client has for each command line.
    pub command_timeout_secs: u64,
    /// Seconds a client has to send a whole message after `354`.
    pub data_timeout_secs: u64,
    /// Refused commands after which a session is closed with `421`.
    pub max_errors: u32,
    /// PEM certificate chain for STARTTLS; with `tls_key`. Unset = no STARTTLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for STARTTLS; with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Offer AUTH without TLS to clients on the loopback interface.
    pub auth_on_loopback: bool,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 2525)),
            hostname: String::new(),
            max_message_bytes: 10 << 20,
            max_recipients: 100,
            max_connections: 100,
            max_connections_per_source: 10,
            command_timeout_secs: 300,
            data_timeout_secs: 600,
            max_errors: 10,
            tls_cert: None,
            tls_key: None,
            auth_on_loopback: false,
        }
    }
}

impl SmtpConfig {
    /// The greeting and EHLO name: `hostname`, or the machine's host name.
    pub fn hostname(&self) -> String {
        if !self.hostname.is_empty() {
            return self.hostname.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    }

    /// Checks values that parse but cannot work; the message names the key to fix.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |key: &str, problem: &str| Err(Error::Config(format!("`smtp.{key}` {problem}")));
        let name = &self.hostname;
        if name.len() > 253
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return bad(
                "hostname",
                "must be a domain name (letters, digits, dots and hyphens), or empty for the \
                 machine's host name",
            );
        }
        if !(1024..=1 << 30).contains(&self.max_message_bytes) {
            return bad(
                "max_message_bytes",
                "must be between 1024 and 1073741824 (1 GiB)",
            );
        }
        if self.max_recipients == 0 {
            return bad(
                "max_recipients",
                "must be > 0 (RFC 5321 asks servers to take at least 100)",
            );
        }
        if self.max_connections == 0 || self.max_connections_per_source == 0 {
            return bad(
                "max_connections",
                "and smtp.max_connections_per_source must be > 0",
            );
        }
        if self.command_timeout_secs == 0 || self.data_timeout_secs == 0 {
            return bad(
                "command_timeout_secs",
                "and smtp.data_timeout_secs must be > 0",
            );
        }
        if self.max_errors == 0 {
            return bad("max_errors", "must be > 0");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad(
                "tls_cert",
                "and smtp.tls_key go together: set both (PEM files) for STARTTLS, or neither",
            );
        }
        Ok(())
    }
}

/// `[cluster]`: this control node among others sharing a store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The id this node claims calls under; empty = the machine's host name. A restarting
    /// node recovers only the calls claimed under its own id.
    pub node_id: String,
}

/// `[http]`: the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the API listens on.
    pub listen: SocketAddr,
    /// Seconds a client has to send a request's headers (also how long a connection may stay
    /// silent before or between requests).
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request's body.
    pub body_timeout_secs: u64,
    /// Seconds without a byte moving either way after which a connection is closed.
    pub idle_timeout_secs: u64,
    /// Connections served at once; 0 = what the file descriptor limit leaves after calls.
    pub max_connections: usize,
}

/// `[sip]`: SIP signalling (RFC 3261).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// UDP address of dataplane core 0; core `i` listens on `port + i`.
    pub listen: SocketAddr,
    /// The IP address written into Via, Contact and SDP: where callees send SIP and RTP.
    /// `None` = the `listen` address, which then must not be a wildcard (0.0.0.0 or ::).
    pub public_ip: Option<IpAddr>,
    /// `sip:host:port` of the trunk that E.164 numbers are sent to; `None` = only SIP URIs.
    pub trunk: Option<String>,
    /// Where every INVITE is sent, whatever the host of its Request-URI (an outbound proxy,
    /// RFC 3261 §8.1.2, such as a session border controller); `None` = the URI's own host.
    pub outbound_proxy: Option<SocketAddr>,
    /// The From URI of calls whose request gives no `from`.
    pub from: String,
    /// The `[[trunk]]` used by tenants without their own; `None` = the trunk this section
    /// describes (`trunk`, `outbound_proxy`, `from`).
    pub default_trunk: Option<String>,
    /// RFC 3261 timer T1 (round-trip estimate), milliseconds.
    pub t1_ms: u64,
    /// RFC 3261 timer T2 (maximum retransmit interval), milliseconds.
    pub t2_ms: u64,
    /// RFC 3261 timer T4 (maximum time a message stays in the network), milliseconds.
    pub t4_ms: u64,
    /// The `User-Agent` header value.
    pub user_agent: String,
    /// Symmetric RTP latching for callees behind NAT (`docs/sip.md`, "Media source"):
    /// hear the first source on the signalling peer's IP that sends RTP, not only the
    /// address the callee's SDP named. Off by default.
    pub media_latching: bool,
    /// Longest SIP datagram read; longer ones are dropped unread.
    pub max_message_bytes: usize,
    /// Requests from strangers (outside our dialogs) answered per source IP per window.
    pub stranger_limit: u32,
    /// The window of `stranger_limit`, milliseconds.
    pub stranger_window_ms: u64,
    /// Answer an INVITE outside our dialogs with one `404` instead of nothing.
    pub answer_stranger_invite: bool,
    /// Networks (`10.0.0.0/8`) or addresses whose INVITEs are incoming calls, answered per
    /// `[[inbound]]`; registrars of `register = true` trunks are added. Empty = none.
    pub inbound_sources: Vec<String>,
    /// The RFC 4028 session interval, seconds, asked of callees (they refresh; a session
    /// not refreshed in time is ended with BYE); 0 = no session timers.
    pub session_expires_secs: u64,
    /// Give up on an INVITE that nothing answers at all (not even `100 Trying`) after this
    /// many milliseconds, as unreachable, and try the trunk's next address; 0 = wait for
    /// Timer B (64 × T1).
    pub no_response_timeout_ms: u64,
    /// Listen for SIP over TCP too, on the same port as UDP (each core's SIP port).
    pub tcp: bool,
    /// Requests bound for UDP longer than this many bytes go over TCP instead (RFC 3261
    /// §18.1.1, the MTU rule); 0 = never (most carriers' UDP trunks take no TCP).
    pub udp_mtu_switch: usize,
    /// A SIP connection (TCP or TLS) we open that is not established within this many
    /// milliseconds is given up: its INVITE ends `unreachable` and the trunk's next address
    /// is tried, instead of waiting out the kernel's SYN retries.
    pub tcp_connect_timeout_ms: u64,
    /// SIP connections (TCP or TLS) one address may have open to a core at once; more are
    /// closed as soon as they are accepted. Our own connections to trunks do not count.
    pub tcp_connections_per_source: u16,
    /// A SIP connection another host opens that has carried no SIP message this many
    /// milliseconds after it was accepted is closed (a keep-alive does not count).
    pub tcp_first_message_timeout_ms: u64,
    /// Copy every SIP message to this capture server (Homer, sngrep) as HEP v3 over UDP
    /// (`docs/sip.md`, "HEP capture"); `None` = off.
    pub hep_capture: Option<SocketAddr>,
    /// The capture agent id in every HEP packet: tells this node apart at the server.
    pub hep_agent_id: u32,
    /// The capture server's password, sent in every HEP packet; `None` = none.
    pub hep_password: Option<Password>,
    /// Our PEM certificate chain for SIP over TLS on the SIP listener (peers of TLS trunks
    /// send their requests there); with `tls_key_file`. Not set: TLS is not served.
    pub tls_cert_file: Option<PathBuf>,
    /// The PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificate(s): when set, a peer connecting with TLS must present a client
    /// certificate chaining to one of them (mutual TLS), else its handshake fails. Not set: no
    /// certificate is asked for.
    pub tls_client_ca_file: Option<PathBuf>,
    /// HEP packets each core sends per second at most; the rest are dropped and counted.
    pub hep_max_per_second: u32,
    /// DNS servers (`ip:port`, or an IP for port 53) that trunk proxies, registrars and
    /// callee host names are resolved with (RFC 3263). Empty = the system's resolv.conf.
    pub dns_servers: Vec<String>,
}

impl SipConfig {
    /// `inbound_sources` read as networks (an address is a /32 or /128); entries that do
    /// not parse are skipped (`validate` refuses them).
    pub fn inbound_networks(&self) -> Vec<ipnet::IpNet> {
        self.inbound_sources
            .iter()
            .filter_map(|text| parse_network(text).ok())
            .collect()
    }

    /// `dns_servers` as addresses; entries that do not parse are skipped (`validate`
    /// refuses them).
    pub fn dns_server_addrs(&self) -> Vec<SocketAddr> {
        self.dns_servers
            .iter()
            .filter_map(|text| parse_dns_server(text).ok())
            .collect()
    }
}

/// `192.0.2.53:53`, `[2001:db8::53]:5353` or a bare address (port 53).
fn parse_dns_server(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| {
            format!("{text:?} is not a DNS server address (write 192.0.2.53:53 or 192.0.2.53)")
        })
}

/// `10.0.0.0/8`, `2001:db8::/32` or a bare address.
fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            format!("{text:?} is not an address or network (write 192.0.2.10 or 10.0.0.0/8)")
        })
}

/// `[rtp]`: the UDP port range for media.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtpConfig {
    /// Lowest RTP port (inclusive).
    pub port_min: u16,
    /// Highest RTP port (inclusive).
    pub port_max: u16,
}

/// `[dataplane]`: the thread-per-core SIP/RTP engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataplaneConfig {
    /// Number of dataplane cores; 0 = one per CPU.
    pub cores: usize,
    /// I/O backend: `auto`, `io-uring` or `epoll`.
    pub backend: String,
    /// Pin each core's thread to one CPU.
    pub pin: bool,
    /// Nice value (0–19) of every thread but the cores' once they run, so the kernel runs a
    /// core before control's work when both want a CPU (default 10); 0 leaves control at the
    /// cores' level (see `cpu_priority`).
    pub control_nice: i32,
    /// `SCHED_FIFO` priority (1–99) of the cores' threads when the process may raise them; 0 =
    /// normal priority (see `dataplane::core::realtime`).
    pub realtime_priority: i32,
}

/// `[store]`: durable state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory for `outdial.sqlite` and the development API key.
    pub data_dir: PathBuf,
}

/// `[calls]`: limits on every call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// Seconds to let a call ring before giving up as `no-answer` (a request may override).
    pub ring_timeout_secs: u64,
    /// Longest a call may last once answered, seconds.
    pub max_duration_secs: u64,
    /// Calls dialing, ringing or in progress at once; the rest wait `queued`.
    pub max_concurrent: usize,
    /// On SIGTERM, seconds live calls may run on before they are hung up.
    pub drain_grace_secs: u64,
}

/// `[tts]`: text to speech.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TtsConfig {
    /// The espeak-ng-compatible program run to speak prompt text.
    pub command: String,
    /// The voice passed as `-v`.
    pub voice: String,
    /// Time the command has to render one piece of prompt text, milliseconds; past it the
    /// command is killed and the application gets `error.noresource`.
    pub timeout_ms: u64,
}

/// `[speech]`: the recognizer for fields with voice grammars (see [`crate::speech`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpeechConfig {
    /// Recognize speech on live calls; off, voice grammars are not listened for.
    pub enabled: bool,
    /// The PocketSphinx acoustic model directory (16 kHz, `pocketsphinx-en-us`).
    pub model_dir: PathBuf,
    /// The pronunciation dictionary; grammar words must be in it.
    pub dict: PathBuf,
    /// The telephone-band MLLR transform: `builtin` (made by `bench/speech/adapt.sh`), a
    /// file, or `none` (or empty) for none.
    pub mllr: String,
    /// Recognizer threads; 0 means one per two CPUs (at least one).
    pub workers: usize,
    /// Utterances queued per recognizer thread before new ones are refused at once.
    pub queue_per_worker: usize,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        let paths = crate::speech::ModelPaths::debian_default();
        Self {
            enabled: true,
            model_dir: paths.model_dir,
            dict: paths.dict,
            mllr: "builtin".to_owned(),
            workers: 0,
            queue_per_worker: 4,
        }
    }
}

impl SpeechConfig {
    /// The model's paths (`builtin` is written out to a temporary file here).
    pub fn model_paths(&self) -> Result<crate::speech::ModelPaths, crate::speech::SpeechError> {
        let mllr = match self.mllr.trim() {
            "" | "none" => None,
            "builtin" => Some(crate::speech::engine::builtin_mllr()?),
            path => Some(PathBuf::from(path)),
        };
        Ok(crate::speech::ModelPaths {
            model_dir: self.model_dir.clone(),
            dict: self.dict.clone(),
            mllr,
            extra_args: Vec::new(),
        })
    }

    /// Recognizer threads: `workers`, or one per two CPUs.
    pub fn worker_count(&self) -> usize {
        if self.workers == 0 {
            crate::speech::Workers::default_count()
        } else {
            self.workers
        }
    }
}

/// `[fetch]`: HTTP fetches of VoiceXML documents and audio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchConfig {
    /// Time limit for one fetch, milliseconds.
    pub timeout_ms: u64,
    /// Largest VoiceXML or grammar document accepted, bytes.
    pub max_document_bytes: usize,
    /// Largest audio file accepted, bytes.
    pub max_audio_bytes: usize,
    /// Bytes of response bodies the HTTP cache shared by all calls may hold (0: no cache).
    pub cache_bytes: usize,
    /// Responses the HTTP cache may hold (0: no cache).
    pub cache_entries: usize,
}

/// `[vxml]`: limits on each call's VoiceXML application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VxmlConfig {
    /// Interrupt checks (about 10,000 ECMAScript operations each) all of one call's scripts
    /// may use together; past it the session ends with `error.semantic`.
    pub call_script_budget: u32,
    /// Most fetches (documents, submits, scripts, data, grammars) one call's application may
    /// make; later ones fail with `error.badfetch`.
    pub max_fetches_per_call: u32,
    /// Most characters one prompt may speak; a longer one throws `error.noresource`.
    pub max_prompt_chars: usize,
}

/// `[log]`: diagnostics on standard error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A level (`error` … `trace`) or a `tracing` filter such as `info,outdial_control=debug`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
    /// Mask callee numbers and the application's `<log>` text in info-level lines.
    pub redact: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            idle_timeout_secs: 60,
            max_connections: 0,
        }
    }
}

/// The smallest `sip.max_message_bytes`: RFC 3261 §18.1.1's 1,300-byte path MTU guess, less
/// headroom; a smaller cap would refuse ordinary INVITEs.
const MIN_SIP_MESSAGE: usize = 1024;
/// The largest UDP payload over IPv4 (65,535 − 8 − 20).
const MAX_UDP_PAYLOAD: usize = 65_507;
/// The longest `sip.hep_password`: it travels in every HEP packet.
const MAX_HEP_PASSWORD: usize = 256;

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            public_ip: None,
            trunk: None,
            outbound_proxy: None,
            from: "sip:outdial@127.0.0.1".to_owned(),
            default_trunk: None,
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            user_agent: concat!("Outdial/", env!("CARGO_PKG_VERSION")).to_owned(),
            media_latching: false,
            max_message_bytes: 8192,
            stranger_limit: 20,
            stranger_window_ms: 2000,
            answer_stranger_invite: false,
            inbound_sources: Vec::new(),
            session_expires_secs: 1800,
            tcp: true,
            udp_mtu_switch: 0,
            tcp_connect_timeout_ms: 2000,
            tcp_connections_per_source: 32,
            tcp_first_message_timeout_ms: 10_000,
            no_response_timeout_ms: 5000,
            hep_capture: None,
            hep_agent_id: 2001,
            hep_password: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            hep_max_per_second: 10_000,
            dns_servers: Vec::new(),
        }
    }
}

impl Default for RtpConfig {
    fn default() -> Self {
        Self {
            port_min: 20000,
            port_max: 29999,
        }
    }
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        Self {
            cores: 0,
            backend: "auto".to_owned(),
            pin: true,
            control_nice: 10,
            realtime_priority: 10,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./outdial-data"),
        }
    }
}

/// `[scheduler]`: the release rate of accepted calls (token buckets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Calls this control node releases per second, over all telephony nodes; 0 = no limit.
    pub calls_per_second: u32,
    /// Calls released at once after an idle period, over all nodes.
    pub burst: u32,
    /// Calls one telephony node is handed per second; 0 = no limit.
    pub node_calls_per_second: u32,
    /// Calls one telephony node is handed at once after an idle period.
    pub node_burst: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            calls_per_second: 200,
            burst: 20,
            node_calls_per_second: 200,
            node_burst: 20,
        }
    }
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            ring_timeout_secs: 30,
            max_duration_secs: 3600,
            max_concurrent: 1000,
            drain_grace_secs: 30,
        }
    }
}

impl Default for TtsConfig {
    fn default() -> Self {
        Self {
            command: "espeak-ng".to_owned(),
            voice: "en-us".to_owned(),
            timeout_ms: 10_000,
        }
    }
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            max_document_bytes: 1 << 20,
            max_audio_bytes: 10 << 20,
            cache_bytes: crate::fetch::DEFAULT_CACHE_BYTES,
            cache_entries: crate::fetch::DEFAULT_CACHE_ENTRIES,
        }
    }
}

impl Default for VxmlConfig {
    fn default() -> Self {
        Self {
            call_script_budget: outdial_vxml::DEFAULT_CALL_SCRIPT_BUDGET,
            max_fetches_per_call: outdial_vxml::DEFAULT_MAX_FETCHES,
            max_prompt_chars: outdial_vxml::DEFAULT_MAX_PROMPT_CHARS,
        }
    }
}

impl VxmlConfig {
    /// The interpreter's limits for one call.
    pub fn limits(&self) -> outdial_vxml::Limits {
        outdial_vxml::Limits {
            call_script_budget: self.call_script_budget,
            max_fetches: self.max_fetches_per_call,
            max_prompt_chars: self.max_prompt_chars,
            ..outdial_vxml::Limits::default()
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: "text".to_owned(),
            redact: true,
        }
    }
}

/// The dataplane backends `dataplane.backend` accepts.
pub const BACKENDS: [&str; 3] = ["auto", "io-uring", "epoll"];

/// The log formats `log.format` accepts.
pub const LOG_FORMATS: [&str; 2] = ["text", "json"];

impl Config {
    /// The TLS server settings of the SIP listener (`sip.tls_cert_file`, `sip.tls_key_file`,
    /// and `sip.tls_client_ca_file` for mutual TLS), when set.
    pub fn sip_tls_server(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, Error> {
        let client_ca = self.sip.tls_client_ca_file.as_deref();
        match (&self.sip.tls_cert_file, &self.sip.tls_key_file) {
            (None, None) if client_ca.is_some() => Err(Error::Config(
                "`sip.tls_client_ca_file` asks TLS peers for a certificate, but TLS is not \
                 served: set `sip.tls_cert_file` and `sip.tls_key_file` too, or remove it"
                    .to_owned(),
            )),
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => {
                if !self.sip.tcp {
                    return Err(Error::Config(
                        "`sip.tls_cert_file` serves TLS on the SIP TCP listener: it needs `sip.tcp = true`"
                            .to_owned(),
                    ));
                }
                outdial_dataplane::sip::tls::server_config(cert, key, client_ca)
                    .map(Some)
                    .map_err(|e| match e {
                        // The only error that names no key.
                        TlsConfigError::KeyMismatch(_) => Error::Config(format!(
                            "`sip.tls_cert_file` and `sip.tls_key_file`: {e}"
                        )),
                        other => Error::Config(other.to_string()),
                    })
            }
            _ => Err(Error::Config(
                "`sip.tls_cert_file` and `sip.tls_key_file` go together: set both, or neither"
                    .to_owned(),
            )),
        }
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let config = toml::from_str::<Self>(&text).map_err(|e| {
            Error::Config(format!("{}: {}", path.display(), e.to_string().trim_end()))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text; keys that are left out take their defaults.
    pub fn parse(text: &str) -> Result<Self, Error> {
        toml::from_str(text).map_err(|e| Error::Config(e.to_string().trim_end().to_owned()))
    }

    /// Checks values that parse but cannot work; the message names the key to fix.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |key: &str, problem: String| Err(Error::Config(format!("`{key}` {problem}")));
        self.email.validate().map_err(Error::Config)?;
        self.policy.validate().map_err(Error::Config)?;
        self.egress.validate().map_err(Error::Config)?;
        self.machine_detection.validate().map_err(Error::Config)?;
        if self.https.cert.is_some() != self.https.key.is_some() {
            return bad(
                "https.cert",
                "and https.key go together: set both (PEM files) to serve the API over HTTPS, \
                 or neither"
                    .to_owned(),
            );
        }
        let http = &self.http;
        if http.header_timeout_secs == 0
            || http.body_timeout_secs == 0
            || http.idle_timeout_secs == 0
        {
            return bad(
                "http",
                "header_timeout_secs, body_timeout_secs and idle_timeout_secs must be > 0"
                    .to_owned(),
            );
        }
        if self.speech.workers > 64 || !(1..=64).contains(&self.speech.queue_per_worker) {
            return bad(
                "speech",
                "workers must be 0 (one per two CPUs) to 64 and queue_per_worker 1 to 64"
                    .to_owned(),
            );
        }
        let sip = &self.sip;
        if let Some(trunk) = &sip.trunk {
            trunk_host_port(trunk).map_err(|p| Error::Config(format!("`sip.trunk` {p}")))?;
        }
        self.validate_trunks()?;
        self.validate_inbound()?;
        for (index, server) in self.sip.dns_servers.iter().enumerate() {
            parse_dns_server(server).map_err(|problem| {
                Error::Config(format!("`sip.dns_servers[{index}]`: {problem}"))
            })?;
        }
        if !has_scheme(&sip.from, "sip") || sip.from.len() <= 4 {
            return bad(
                "sip.from",
                format!("must be a sip: URI, not {:?}", sip.from),
            );
        }
        if sip.listen.ip().is_unspecified() && sip.public_ip.is_none() {
            return bad(
                "sip.public_ip",
                format!(
                    "must be set when sip.listen is a wildcard ({}): callees need a real \
                     address in Via, Contact and SDP",
                    sip.listen
                ),
            );
        }
        if sip.public_ip.is_some_and(|ip| ip.is_unspecified()) {
            return bad("sip.public_ip", "must not be a wildcard address".to_owned());
        }
        if sip.t1_ms == 0 || sip.t2_ms < sip.t1_ms || sip.t4_ms == 0 {
            return bad(
                "sip.t1_ms",
                "must be > 0, with sip.t2_ms >= sip.t1_ms and sip.t4_ms > 0".to_owned(),
            );
        }
        if sip.user_agent.is_empty() || sip.user_agent.chars().any(char::is_control) {
            return bad(
                "sip.user_agent",
                "must be non-empty text on one line".to_owned(),
            );
        }
        if !(MIN_SIP_MESSAGE..=MAX_UDP_PAYLOAD).contains(&sip.max_message_bytes) {
            return bad(
                "sip.max_message_bytes",
                format!(
                    "must be between {MIN_SIP_MESSAGE} and {MAX_UDP_PAYLOAD} (a UDP payload), not {}",
                    sip.max_message_bytes
                ),
            );
        }
        if sip.stranger_limit == 0 {
            return bad(
                "sip.stranger_limit",
                "must be > 0 (a source is blocked after this many requests in a window)".to_owned(),
            );
        }
        if !(100..=3_600_000).contains(&sip.stranger_window_ms) {
            return bad(
                "sip.stranger_window_ms",
                format!(
                    "must be between 100 and 3600000 milliseconds, not {}",
                    sip.stranger_window_ms
                ),
            );
        }
        if let Some(capture) = sip.hep_capture
            && (capture.ip().is_unspecified() || capture.port() == 0)
        {
            return bad(
                "sip.hep_capture",
                format!(
                    "must be the capture server's ip:port (such as \"192.0.2.30:9060\"), \
                     not {capture}"
                ),
            );
        }
        if let Some(password) = &sip.hep_password
            && !(1..=MAX_HEP_PASSWORD).contains(&password.0.len())
        {
            return bad(
                "sip.hep_password",
                format!(
                    "must be 1 to {MAX_HEP_PASSWORD} bytes (leave it out for no password), \
                     not {} bytes",
                    password.0.len()
                ),
            );
        }
        if sip.hep_max_per_second == 0 {
            return bad(
                "sip.hep_max_per_second",
                "must be > 0 (HEP packets per core per second; unset sip.hep_capture to stop \
                 copying)"
                    .to_owned(),
            );
        }
        if self.rtp.port_min == 0 || self.rtp.port_min >= self.rtp.port_max {
            return bad(
                "rtp.port_min",
                format!(
                    "must be above 0 and below rtp.port_max ({} >= {})",
                    self.rtp.port_min, self.rtp.port_max
                ),
            );
        }
        if !BACKENDS.contains(&self.dataplane.backend.as_str()) {
            return bad(
                "dataplane.backend",
                format!(
                    "must be one of {BACKENDS:?}, not {:?}",
                    self.dataplane.backend
                ),
            );
        }
        if !(0..=19).contains(&self.dataplane.control_nice) {
            return bad(
                "dataplane.control_nice",
                format!(
                    "must be 0 (off) to 19 (lowest priority), not {}",
                    self.dataplane.control_nice
                ),
            );
        }
        if !(0..=99).contains(&self.dataplane.realtime_priority) {
            return bad(
                "dataplane.realtime_priority",
                format!(
                    "must be 0 (normal priority) or 1 to 99 (SCHED_FIFO), not {}",
                    self.dataplane.realtime_priority
                ),
            );
        }
        if self.store.data_dir.as_os_str().is_empty() {
            return bad("store.data_dir", "must not be empty".to_owned());
        }
        let calls = &self.calls;
        if calls.ring_timeout_secs == 0 || calls.max_duration_secs == 0 {
            return bad(
                "calls.ring_timeout_secs",
                "and calls.max_duration_secs must be > 0".to_owned(),
            );
        }
        if calls.max_concurrent == 0 {
            return bad("calls.max_concurrent", "must be > 0".to_owned());
        }
        let scheduler = &self.scheduler;
        if scheduler.burst == 0 || scheduler.node_burst == 0 {
            return bad(
                "scheduler.burst",
                "scheduler.burst and scheduler.node_burst must be > 0".to_owned(),
            );
        }
        if self.tts.command.trim().is_empty() {
            return bad("tts.command", "must name a program".to_owned());
        }
        if !(1..=600_000).contains(&self.tts.timeout_ms) {
            return bad(
                "tts.timeout_ms",
                format!("must be 1 to 600000 ms, not {}", self.tts.timeout_ms),
            );
        }
        let fetch = &self.fetch;
        if fetch.timeout_ms == 0 || fetch.max_document_bytes == 0 || fetch.max_audio_bytes == 0 {
            return bad(
                "fetch",
                "timeout_ms, max_document_bytes and max_audio_bytes must be > 0".to_owned(),
            );
        }
        if self.vxml.call_script_budget == 0 {
            return bad(
                "vxml.call_script_budget",
                "must be > 0 (interrupt checks a call's scripts may use)".to_owned(),
            );
        }
        let node = &self.cluster.node_id;
        if node.len() > 64 || node.chars().any(|c| !c.is_ascii_graphic()) {
            return bad(
                "cluster.node_id",
                format!("must be up to 64 printable ASCII characters without spaces, not {node:?}"),
            );
        }
        if self.vxml.max_fetches_per_call == 0 {
            return bad(
                "vxml.max_fetches_per_call",
                "must be > 0 (the first document is a fetch)".to_owned(),
            );
        }
        if self.vxml.max_prompt_chars == 0 {
            return bad("vxml.max_prompt_chars", "must be > 0".to_owned());
        }
        if let Err(problem) = check_log_level(&self.log.level) {
            return bad("log.level", problem);
        }
        self.smtp.validate()?;
        if !LOG_FORMATS.contains(&self.log.format.as_str()) {
            return bad(
                "log.format",
                format!("must be \"text\" or \"json\", not {:?}", self.log.format),
            );
        }
        Ok(())
    }

    /// `[[trunk]]` tables and `sip.default_trunk`.
    fn validate_inbound(&self) -> Result<(), Error> {
        let silence = self.sip.no_response_timeout_ms;
        if silence != 0 && !(500..=self.sip.t1_ms.saturating_mul(64)).contains(&silence) {
            return Err(Error::Config(format!(
                "`sip.no_response_timeout_ms` is {silence}: use 0 (Timer B only) or 500 up to \
                 Timer B (64 x sip.t1_ms = {} ms)",
                self.sip.t1_ms.saturating_mul(64)
            )));
        }
        self.sip_tls_server()?;
        let connect = self.sip.tcp_connect_timeout_ms;
        if !(100..=60_000).contains(&connect) {
            return Err(Error::Config(format!(
                "`sip.tcp_connect_timeout_ms` is {connect}: use 100 to 60000 ms (default 2000)"
            )));
        }
        let per_source = self.sip.tcp_connections_per_source;
        if !(1..=1024).contains(&per_source) {
            return Err(Error::Config(format!(
                "`sip.tcp_connections_per_source` is {per_source}: use 1 to 1024 (default 32)"
            )));
        }
        let first_message = self.sip.tcp_first_message_timeout_ms;
        if !(1000..=600_000).contains(&first_message) {
            return Err(Error::Config(format!(
                "`sip.tcp_first_message_timeout_ms` is {first_message}: use 1000 to 600000 ms \
                 (default 10000)"
            )));
        }
        let switch = self.sip.udp_mtu_switch;
        if switch != 0 && !(500..=65_507).contains(&switch) {
            return Err(Error::Config(format!(
                "`sip.udp_mtu_switch` is {switch}: use 0 (never) or 500 to 65507 bytes \
                 (RFC 3261 suggests 1300)"
            )));
        }
        if switch != 0 && !self.sip.tcp {
            return Err(Error::Config(
                "`sip.udp_mtu_switch` moves large requests to TCP: it needs `sip.tcp = true`"
                    .to_owned(),
            ));
        }
        let floor = outdial_dataplane::sip::endpoint::MIN_SESSION_EXPIRES.as_secs();
        let expires = self.sip.session_expires_secs;
        if expires != 0 && !(floor..=86_400).contains(&expires) {
            return Err(Error::Config(format!(
                "`sip.session_expires_secs` is {expires}: use 0 (no session timers) or \
                 {floor} to 86400 seconds (RFC 4028's Min-SE is {floor})"
            )));
        }
        for (index, source) in self.sip.inbound_sources.iter().enumerate() {
            parse_network(source).map_err(|problem| {
                Error::Config(format!("`sip.inbound_sources[{index}]`: {problem}"))
            })?;
        }
        let mut numbers = std::collections::HashSet::new();
        for (index, entry) in self.inbound.iter().enumerate() {
            entry
                .validate()
                .map_err(|problem| Error::Config(format!("`inbound[{index}]`: {problem}")))?;
            if !numbers.insert(entry.number.as_str()) {
                return Err(Error::Config(format!(
                    "`inbound[{index}]`: the number {:?} is answered twice; keep one entry per \
                     number",
                    entry.number
                )));
            }
        }
        Ok(())
    }

    fn validate_trunks(&self) -> Result<(), Error> {
        let mut names = std::collections::HashSet::new();
        for (index, trunk) in self.trunk.iter().enumerate() {
            trunk.validate().map_err(|problem| {
                Error::Config(format!("`trunk[{index}]` ({:?}): {problem}", trunk.name))
            })?;
            if !self.sip.tcp && !trunk.transport.eq_ignore_ascii_case("udp") {
                return Err(Error::Config(format!(
                    "`trunk[{index}]` ({:?}): transport = {:?} needs `sip.tcp = true` (the \
                     carrier's requests in the dialog come back to our TCP listener)",
                    trunk.name, trunk.transport
                )));
            }
            if !names.insert(trunk.name.as_str()) {
                return Err(Error::Config(format!(
                    "`trunk[{index}]`: the name {:?} is used twice; trunk names must be unique",
                    trunk.name
                )));
            }
        }
        if let Some(name) = &self.sip.default_trunk {
            if !names.contains(name.as_str()) {
                return Err(Error::Config(format!(
                    "`sip.default_trunk` names {name:?}, but no [[trunk]] has that name"
                )));
            }
            if self.sip.trunk.is_some() || self.sip.outbound_proxy.is_some() {
                return Err(Error::Config(
                    "`sip.default_trunk` is set, so sip.trunk and sip.outbound_proxy (which \
                     describe the built-in default trunk) would be ignored; remove them"
                        .to_owned(),
                ));
            }
        }
        Ok(())
    }

    /// This node's id: `cluster.node_id`, or the host name when that is empty.
    pub fn node_id(&self) -> String {
        if !self.cluster.node_id.is_empty() {
            return self.cluster.node_id.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    }

    /// Checks what the configuration needs from this machine and `serve` would only warn
    /// about: the text-to-speech program exists and, with `speech.enabled`, the speech model's files.
    /// Used by `outdial config check`.
    pub fn check_environment(&self) -> Result<(), Error> {
        if self.speech.enabled {
            crate::speech::check(&self.speech).map_err(|e| {
                Error::Config(format!(
                    "[speech]: {e} (or set speech.enabled = false: fields with only voice \
                     grammars then get error.noresource)"
                ))
            })?;
        }
        let program = self.tts.command.trim();
        if find_program(program).is_none() {
            return Err(Error::Config(format!(
                "`tts.command` {program:?} is not an executable file{}: install it (apt-get \
                 install espeak-ng) or set tts.command to the program's path",
                if program.contains('/') {
                    ""
                } else {
                    " on the PATH"
                }
            )));
        }
        Ok(())
    }

    /// The SQLite database file: `store.data_dir/outdial.sqlite`.
    pub fn database_path(&self) -> PathBuf {
        self.store.data_dir.join("outdial.sqlite")
    }
}

/// The levels `log.level` accepts, alone or as `target=level`.
pub const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks `log.level`: comma-separated directives, each a level or `target=level`.
/// (`tracing` would read a lone unknown word such as "verbose" as a target to trace.)
fn check_log_level(level: &str) -> Result<(), String> {
    let known = |word: &str| LOG_LEVELS.contains(&word.trim().to_ascii_lowercase().as_str());
    for directive in level.split(',') {
        let level_word = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !known(level_word) {
            return Err(format!(
                "{level:?} is not a level: use one of {LOG_LEVELS:?}, or target=level \
                 directives such as \"info,outdial_control=debug\""
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(level)
        .map(|_| ())
        .map_err(|e| format!("is not a tracing filter: {e}"))
}

/// The executable file `program` names: a path, or a name looked up on `PATH`.
fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |path: &Path| {
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.is_empty() {
        return None;
    }
    if program.contains('/') {
        let path = PathBuf::from(program);
        return executable(&path).then_some(path);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| executable(path))
}

/// True when `uri` starts with `scheme:` (schemes compare case-insensitively, RFC 3261 §19.1.1).
pub(crate) fn has_scheme(uri: &str, scheme: &str) -> bool {
    uri.get(..scheme.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
        && uri.as_bytes().get(scheme.len()) == Some(&b':')
}

/// The `host:port` part of a trunk written `sip:host[:port]`, checked.
pub(crate) fn trunk_host_port(trunk: &str) -> Result<&str, String> {
    let rest = if has_scheme(trunk, "sip") {
        trunk.get(4..).unwrap_or_default()
    } else {
        ""
    };
    let valid = !rest.is_empty()
        && !rest.contains('@')
        && rest
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>\"".contains(&b));
    if valid {
        Ok(rest)
    } else {
        Err(format!("must look like \"sip:host:port\", not {trunk:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/outdial.example.toml"
    ));
    const REFERENCE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ));

    /// Every `section.key` of the default configuration, plus the optional `sip.trunk` and
    /// `smtp.tls_cert`/`smtp.tls_key`.
    fn all_keys() -> Vec<String> {
        let value = toml::Value::try_from(Config::default()).unwrap_or(toml::Value::Boolean(false));
        let mut keys = vec![
            "sip.trunk".to_owned(),
            "sip.default_trunk".to_owned(),
            "sip.hep_capture".to_owned(),
            "sip.hep_password".to_owned(),
            "sip.tls_cert_file".to_owned(),
            "sip.tls_key_file".to_owned(),
            "sip.tls_client_ca_file".to_owned(),
            "smtp.tls_cert".to_owned(),
            "smtp.tls_key".to_owned(),
            "https.cert".to_owned(),
            "https.key".to_owned(),
        ];
        for key in [
            "name",
            "request_uri",
            "proxy",
            "transport",
            "tls_ca_file",
            "tls_cert_file",
            "tls_key_file",
            "auth_user",
            "auth_password",
            "auth_realm",
            "caller_id",
            "from_domain",
            "asserted_identity",
            "privacy",
            "follow_redirects",
            "media_latching",
            "register",
            "register_expires_secs",
        ] {
            keys.push(format!("trunk.{key}"));
        }
        for key in ["number", "url", "tenant", "status_callback", "early_media"] {
            keys.push(format!("inbound.{key}"));
        }
        for (section, table) in value.as_table().into_iter().flatten() {
            for key in table.as_table().into_iter().flat_map(|t| t.keys()) {
                keys.push(format!("{section}.{key}"));
            }
        }
        keys
    }

    #[test]
    fn log_levels_are_levels_or_target_directives() {
        for good in [
            "info",
            "WARN",
            "off",
            "info,outdial_control=debug",
            "outdial_dataplane=trace",
        ] {
            assert!(check_log_level(good).is_ok(), "{good}");
        }
        for bad in ["verbose", "info,chatty", "outdial_control=loud", ""] {
            let problem = check_log_level(bad).err().unwrap_or_default();
            assert!(problem.contains("is not a level"), "{bad}: {problem}");
        }
        let mut config = Config::default();
        config.log.level = "verbose".to_owned();
        assert!(config.validate().is_err());
    }

    #[test]
    fn a_missing_tts_program_is_refused_by_the_environment_check() {
        let mut config = Config::default();
        config.tts.command = "sh".to_owned(); // on every PATH
        assert!(config.check_environment().is_ok());
        config.tts.command = "outdial-no-such-tts".to_owned();
        let message = config
            .check_environment()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("tts.command") && message.contains("PATH"),
            "{message}"
        );
        config.tts.command = "/nonexistent/espeak-ng".to_owned();
        assert!(config.check_environment().is_err());
        assert!(config.validate().is_ok(), "serve itself only warns");
    }

    #[test]
    fn default_is_valid() {
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn example_file_parses_to_the_defaults() {
        let mut parsed = Config::parse(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.sip.trunk.as_deref(), Some("sip:192.0.2.10:5060"));
        parsed.sip.trunk = None;
        assert_eq!(parsed.trunk.len(), 1);
        assert_eq!(parsed.trunk[0].validate(), Ok(()));
        parsed.trunk.clear();
        assert_eq!(parsed.inbound.len(), 1);
        assert_eq!(parsed.inbound[0].validate(), Ok(()));
        parsed.inbound.clear();
        assert_eq!(parsed.sip.public_ip, Some(IpAddr::from([127, 0, 0, 1])));
        parsed.sip.public_ip = None;
        assert!(parsed.smtp.tls_cert.is_some() && parsed.smtp.tls_key.is_some());
        parsed.smtp.tls_cert = None;
        parsed.smtp.tls_key = None;
        // The example spells out today's version; the default follows the crate version.
        assert!(parsed.sip.user_agent.starts_with("Outdial/"));
        parsed.sip.user_agent = Config::default().sip.user_agent;
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn every_key_is_in_the_example_and_the_reference() {
        let keys = all_keys();
        assert!(keys.len() > 20, "found only {keys:?}");
        for key in keys {
            let (section, name) = key.split_once('.').unwrap_or_default();
            assert!(
                EXAMPLE.contains(&format!("[{section}]")),
                "example lacks [{section}]"
            );
            assert!(
                EXAMPLE.lines().any(|l| l
                    .trim_start()
                    .trim_start_matches("# ")
                    .starts_with(&format!("{name} ="))),
                "example lacks {key}"
            );
            assert!(
                REFERENCE.contains(&format!("`{key}`")),
                "configuration.md lacks `{key}`"
            );
        }
    }

    #[test]
    fn node_id_defaults_to_the_host_name_and_is_checked() {
        let mut config = Config::default();
        assert!(!config.node_id().is_empty());
        config.cluster.node_id = "node-a".to_owned();
        assert_eq!(config.node_id(), "node-a");
        config.cluster.node_id = "node a".to_owned();
        let err = config
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("cluster.node_id"), "{err}");
    }

    #[test]
    fn dns_servers_are_addresses_with_port_53_by_default() {
        let config = Config::parse(
            "[sip]\ndns_servers = [\"127.0.0.1:5353\", \"192.0.2.53\", \"[::1]:53\"]\n",
        )
        .expect("parses");
        assert!(config.validate().is_ok(), "{:?}", config.validate());
        let expected: Vec<SocketAddr> = ["127.0.0.1:5353", "192.0.2.53:53", "[::1]:53"]
            .iter()
            .map(|a| a.parse().expect("address"))
            .collect();
        assert_eq!(config.sip.dns_server_addrs(), expected);
        let err = Config::parse("[sip]\ndns_servers = [\"ns1.example:53\"]\n")
            .and_then(|c| c.validate())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("sip.dns_servers[0]"), "{err}");
        assert!(err.contains("ns1.example:53"), "{err}");
    }

    #[test]
    fn inbound_sources_and_numbers_are_checked() {
        let good = "[sip]\ninbound_sources = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\"]\n\n\
                    [[inbound]]\nnumber = \"+15550100\"\nurl = \"http://app/ivr.vxml\"\n\n\
                    [[inbound]]\nnumber = \"*\"\nurl = \"https://app/any.vxml\"\ntenant = \"acme\"\n";
        let config = Config::parse(good).expect("parses");
        assert!(config.validate().is_ok(), "{:?}", config.validate());
        let networks = config.sip.inbound_networks();
        assert_eq!(networks.len(), 3);
        assert!(networks[1].contains(&"192.0.2.7".parse::<IpAddr>().expect("ip")));
        assert!(!networks[1].contains(&"192.0.2.8".parse::<IpAddr>().expect("ip")));
        let message = |text: &str| {
            Config::parse(text)
                .and_then(|c| c.validate())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let short = message("[sip]\nsession_expires_secs = 30\n");
        assert!(short.contains("sip.session_expires_secs"), "{short}");
        for (text, key) in [
            ("[sip]\nudp_mtu_switch = 100\n", "sip.udp_mtu_switch"),
            (
                "[sip]\ntcp_connect_timeout_ms = 0\n",
                "sip.tcp_connect_timeout_ms",
            ),
            (
                "[sip]\ntcp_connect_timeout_ms = 60001\n",
                "sip.tcp_connect_timeout_ms",
            ),
            (
                "[sip]\ntcp_connections_per_source = 0\n",
                "sip.tcp_connections_per_source",
            ),
            (
                "[sip]\ntcp_first_message_timeout_ms = 999\n",
                "sip.tcp_first_message_timeout_ms",
            ),
            ("[sip]\ntcp = false\nudp_mtu_switch = 1300\n", "sip.tcp"),
            (
                "[sip]\ntcp = false\n[[trunk]]\nname = \"c\"\nrequest_uri = \"sip:{number}@c.example\"\ntransport = \"tcp\"\n",
                "sip.tcp",
            ),
            (
                "[sip]\ntls_cert_file = \"/nonexistent.pem\"\n",
                "sip.tls_cert_file",
            ),
            (
                "[sip]\ntls_client_ca_file = \"/nonexistent.pem\"\n",
                "sip.tls_client_ca_file",
            ),
            (
                "[sip]\ntls_cert_file = \"/nonexistent.pem\"\ntls_key_file = \"/nonexistent.key\"\n",
                "sip.tls_cert_file",
            ),
        ] {
            let problem = message(text);
            assert!(problem.contains(key), "{text}: {problem}");
        }
        let off = Config::parse("[sip]\nsession_expires_secs = 0\n").expect("parses");
        assert!(off.validate().is_ok());
        let bad_source = message("[sip]\ninbound_sources = [\"10.0.0.0/33\"]\n");
        assert!(
            bad_source.contains("sip.inbound_sources[0]"),
            "{bad_source}"
        );
        let twice = message(
            "[[inbound]]\nnumber = \"100\"\nurl = \"http://a/x\"\n[[inbound]]\nnumber = \"100\"\nurl = \"http://a/y\"\n",
        );
        assert!(
            twice.contains("inbound[1]") && twice.contains("twice"),
            "{twice}"
        );
        let bad_url = message("[[inbound]]\nnumber = \"100\"\nurl = \"ftp://a/x\"\n");
        assert!(
            bad_url.contains("inbound[0]") && bad_url.contains("http"),
            "{bad_url}"
        );
        let unknown = message("[[inbound]]\nnumber = \"100\"\nurl = \"http://a/x\"\napp = 1\n");
        assert!(unknown.contains("app"), "{unknown}");
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(Config::parse("").ok(), Some(Config::default()));
    }

    #[test]
    fn partial_section_keeps_other_defaults() {
        let config = Config::parse("[calls]\nmax_concurrent = 7\n").unwrap_or_default();
        assert_eq!(config.calls.max_concurrent, 7);
        assert_eq!(config.calls.ring_timeout_secs, 30);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[sip]\ntimer_t1 = 5\n")
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|m| m.contains("timer_t1")),
            "{err:?}"
        );
        let err = Config::parse("[sipp]\n").err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|m| m.contains("sipp")),
            "{err:?}"
        );
    }

    #[test]
    fn trunk_tables_are_validated_and_named() {
        let carrier =
            "[[trunk]]\nname = \"carrier\"\nrequest_uri = \"sip:{number}@carrier.example\"\n";
        let good = Config::parse(carrier).unwrap_or_else(|e| panic!("{e}"));
        assert!(good.validate().is_ok());
        let cases = [
            (format!("{carrier}transport = \"sctp\"\n"), "trunk[0]"),
            (format!("{carrier}{carrier}"), "used twice"),
            (
                "[sip]\ndefault_trunk = \"nope\"\n".to_owned(),
                "sip.default_trunk",
            ),
            (
                format!("[sip]\ndefault_trunk = \"carrier\"\ntrunk = \"sip:10.0.0.1\"\n{carrier}"),
                "sip.default_trunk",
            ),
        ];
        for (text, wanted) in cases {
            let config = Config::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let err = config
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(wanted), "{text}: {err}");
        }
        let unknown = Config::parse(&format!("{carrier}password = \"x\"\n"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(unknown.contains("password"), "{unknown}");
    }

    #[test]
    fn validate_names_the_bad_key() {
        let cases: [(&str, &str); 22] = [
            ("[https]\nkey = \"/etc/key.pem\"", "https.cert"),
            ("[smtp]\nhostname = \"mail host\"", "smtp.hostname"),
            ("[smtp]\nmax_message_bytes = 10", "smtp.max_message_bytes"),
            ("[smtp]\nmax_recipients = 0", "smtp.max_recipients"),
            (
                "[smtp]\nmax_connections_per_source = 0",
                "smtp.max_connections",
            ),
            ("[smtp]\ndata_timeout_secs = 0", "smtp.command_timeout_secs"),
            ("[smtp]\ntls_cert = \"/etc/cert.pem\"", "smtp.tls_cert"),
            ("[sip]\nlisten = \"0.0.0.0:5060\"", "sip.public_ip"),
            (
                "[sip]\nlisten = \"0.0.0.0:5060\"\npublic_ip = \"::\"",
                "sip.public_ip",
            ),
            ("[sip]\ntrunk = \"10.0.0.1:5060\"", "sip.trunk"),
            ("[sip]\ntrunk = \"sip:user@10.0.0.1\"", "sip.trunk"),
            ("[sip]\nfrom = \"tel:+15550001\"", "sip.from"),
            ("[sip]\nt1_ms = 0", "sip.t1_ms"),
            ("[rtp]\nport_min = 30000\nport_max = 20000", "rtp.port_min"),
            ("[dataplane]\nbackend = \"dpdk\"", "dataplane.backend"),
            (
                "[dataplane]\nrealtime_priority = 100",
                "dataplane.realtime_priority",
            ),
            ("[dataplane]\ncontrol_nice = 20", "dataplane.control_nice"),
            ("[log]\nformat = \"xml\"", "log.format"),
            ("[calls]\nmax_concurrent = 0", "calls.max_concurrent"),
            ("[vxml]\ncall_script_budget = 0", "vxml.call_script_budget"),
            (
                "[vxml]\nmax_fetches_per_call = 0",
                "vxml.max_fetches_per_call",
            ),
            ("[vxml]\nmax_prompt_chars = 0", "vxml.max_prompt_chars"),
        ];
        for (text, key) in cases {
            let config = Config::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let err = config
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn border_keys_are_validated() {
        for (text, key) in [
            ("[sip]\nmax_message_bytes = 512", "sip.max_message_bytes"),
            ("[sip]\nmax_message_bytes = 65508", "sip.max_message_bytes"),
            ("[sip]\nstranger_limit = 0", "sip.stranger_limit"),
            ("[sip]\nstranger_window_ms = 10", "sip.stranger_window_ms"),
        ] {
            let config = Config::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let err = config
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(key), "{text}: {err}");
        }
        let edge = "[sip]\nmax_message_bytes = 65507\nstranger_limit = 1\nstranger_window_ms = 100\nanswer_stranger_invite = true\nmedia_latching = true";
        let config = Config::parse(edge).unwrap_or_else(|e| panic!("{e}"));
        assert!(config.validate().is_ok());
        assert!(config.sip.answer_stranger_invite && config.sip.media_latching);
    }

    #[test]
    fn hep_keys_are_validated_and_the_password_never_shown() {
        let off = Config::default();
        assert_eq!(off.sip.hep_capture, None, "off unless configured");
        assert_eq!(off.sip.hep_agent_id, 2001);
        let on = "[sip]\nhep_capture = \"192.0.2.30:9060\"\nhep_agent_id = 7\n\
                  hep_password = \"s3cret\"\nhep_max_per_second = 1";
        let config = Config::parse(on).unwrap_or_else(|e| panic!("{e}"));
        assert!(config.validate().is_ok(), "{:?}", config.validate());
        assert_eq!(
            config.sip.hep_capture,
            Some("192.0.2.30:9060".parse().expect("addr"))
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        for (text, key) in [
            ("[sip]\nhep_capture = \"0.0.0.0:9060\"", "sip.hep_capture"),
            ("[sip]\nhep_capture = \"192.0.2.30:0\"", "sip.hep_capture"),
            ("[sip]\nhep_password = \"\"", "sip.hep_password"),
            ("[sip]\nhep_max_per_second = 0", "sip.hep_max_per_second"),
        ] {
            let config = Config::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let err = config
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(key), "{text}: {err}");
        }
        let unparsable = Config::parse("[sip]\nhep_capture = \"homer:9060\"")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(unparsable.contains("hep_capture"), "{unparsable}");
    }

    #[test]
    fn load_reports_the_path() {
        let missing = Path::new("/nonexistent/outdial.toml");
        let err = Config::load(missing)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/outdial.toml"), "{err}");
    }

    #[test]
    fn trunk_host_port_strips_the_scheme() {
        assert_eq!(trunk_host_port("sip:192.0.2.1:5070"), Ok("192.0.2.1:5070"));
        assert_eq!(trunk_host_port("SIP:trunk.example"), Ok("trunk.example"));
        assert!(trunk_host_port("sip:").is_err());
        assert!(trunk_host_port("sips:trunk.example").is_err());
    }
}
