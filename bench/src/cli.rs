//! `outdial bench …`: the subcommands and their options (clap), and running them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use outdial_dataplane::core::{self, Backend, LoopConfig, WakeFd};
use outdial_dataplane::sip::transaction::Timing;
use tokio::sync::mpsc;

use crate::appserver;
use crate::callee::challenge::DigestGate;
use crate::callee::media::Sound;
use crate::callee::phone::PhoneSettings;
use crate::callee::{Population, PopulationConfig, Shares};
use crate::load::{self, LoadArgs};
use crate::sip::{LoadConfig, SipLoad};
use crate::sounds::Sounds;
use crate::spec::{DtmfSpec, DtmfTiming, Span};

/// Exit status: the run finished as asked.
pub const EXIT_OK: u8 = 0;
/// Exit status: unusable options, or the run could not start.
pub const EXIT_ERROR: u8 = 1;
/// Exit status: the run finished but calls failed (`bench sip`).
pub const EXIT_FAILED_CALLS: u8 = 2;

/// The `outdial bench` subcommands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process")]
pub enum BenchCommand {
    /// Drive a deployment through its HTTP API at a paced rate and check every call.
    Load(LoadArgs),
    /// Serve the bench applications (and a directory), print each submit and status callback.
    Appserver(AppserverArgs),
    /// Simulated phones answering calls on a SIP port (the callee for load tests).
    #[command(after_help = CALLEE_HELP)]
    Callee(CalleeArgs),
    /// Raw SIP UAC load: INVITE, ACK, BYE (optionally RTP), like SIPp's built-in uac.
    #[command(after_help = SIP_HELP)]
    Sip(SipArgs),
    /// Call requests by e-mail: messages accepted per second by the SMTP gateway.
    Smtp(crate::smtp::SmtpArgs),
    /// The physical limit for media: a bare paced UDP sender and receiver (and its reflector).
    Udp(crate::udp::UdpArgs),
}

const CALLEE_HELP: &str = "\
Each INVITE gets a phone drawn (with --seed) from the shares: answer after --ring, busy
(486 at once), reject (603 after --ring) or no answer (180 until CANCEL, 480 after
--no-answer-timeout). Of answered calls, --machine are answering machines: a greeting of
--greeting seconds, a beep, then silence. Answered phones send --media and press --dtmf
(RFC 4733 events when the caller offered telephone-event, else in-band tones).

With --dtmf from-uri a call to sip:press-4821@HOST presses 4,8,2,1 then # (--dtmf-delay
after the answer, --dtmf-gap apart): a load generator knows per call what was pressed.
With --dtmf-after-prompt MS the keys wait for the caller's prompt instead: they start
--dtmf-delay after its audio, once heard, has been silent for MS milliseconds.

Durations are seconds, fixed (2, 0.5) or drawn uniformly per call (1..5).
With --challenge USER:PASSWORD every new INVITE must carry digest credentials (realm
outdial-bench, MD5, qop=auth), as a carrier trunk asks: 401 without them, 401 again when
wrong.

Report: one JSON line per call with --report FILE (call_id, user, outcome, keys_sent, rx
packets, loss, jitter, gaps); a summary at exit (text, or JSON with --json).
Stops after --calls, after --duration, or on Ctrl-C / SIGTERM.

Example:
  outdial bench callee --listen 127.0.0.1:5090 --dtmf from-uri --report calls.jsonl";

const SIP_HELP: &str = "\
Places calls to TARGET with the dataplane's SIP user agent: INVITE (with an SDP offer),
ACK, then BYE after --hold. A call is completed when its BYE got 2xx (as SIPp counts).
Give --rate (calls/s), --concurrency (calls at once), or both; stop with --calls or
--duration (or Ctrl-C: calls up are hung up). Exit status 2 when any call failed.

Example (against SIPp's uas):
  sipp -sn uas -i 127.0.0.1 -p 5070 &
  outdial bench sip sip:service@127.0.0.1:5070 --rate 2000 --calls 20000";

/// The socket loop.
#[derive(Clone, Copy, Debug, Eq, PartialEq, ValueEnum)]
pub enum LoopBackend {
    /// io_uring when the kernel allows it, else epoll.
    Auto,
    /// io_uring only.
    IoUring,
    /// epoll.
    Epoll,
}

impl From<LoopBackend> for Backend {
    fn from(value: LoopBackend) -> Self {
        match value {
            LoopBackend::Auto => Self::Auto,
            LoopBackend::IoUring => Self::IoUring,
            LoopBackend::Epoll => Self::Epoll,
        }
    }
}

/// What answered phones send.
#[derive(Clone, Copy, Debug, Eq, PartialEq, ValueEnum)]
pub enum MediaMode {
    /// Every received audio packet straight back.
    Echo,
    /// A 440 Hz tone.
    Tone,
    /// The --prompt WAV file, looped.
    Prompt,
    /// Silence.
    Silence,
}

/// Options both tools share.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Seed of every random draw (tags, SSRCs, which phone does what).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seconds between progress lines on standard error (0: none).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub progress: f64,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// The socket loop.
    #[command(flatten)]
    pub socket_loop: LoopArgs,
}

/// Which socket loop a tool runs, and where (`bench callee`, `bench sip`, `bench udp`).
#[derive(Debug, Args)]
pub struct LoopArgs {
    /// The socket loop: the dataplane's (io_uring with batched sends, or epoll).
    #[arg(long, value_enum, default_value_t = LoopBackend::Auto)]
    pub backend: LoopBackend,
    /// Pin the loop's thread to this CPU (as `[dataplane] pin` pins Outdial's cores).
    #[arg(long, value_name = "CPU")]
    pub cpu: Option<usize>,
    /// Run the loop's thread under SCHED_FIFO at this priority, 1-99 (as `[dataplane]
    /// realtime_priority` runs Outdial's cores; needs root or CAP_SYS_NICE, else a warning).
    #[arg(long, value_name = "PRIORITY", value_parser = clap::value_parser!(u8).range(1..=99))]
    pub realtime_priority: Option<u8>,
}

impl LoopArgs {
    /// The dataplane loop's configuration for these options.
    pub fn config(&self) -> LoopConfig {
        LoopConfig {
            backend: self.backend.into(),
            pin_to_cpu: self.cpu,
            realtime_priority: self.realtime_priority,
            ..LoopConfig::default()
        }
    }
}

/// `outdial bench callee`.
#[derive(Debug, Args)]
pub struct CalleeArgs {
    /// SIP address the phones listen on.
    #[arg(long, default_value = "127.0.0.1:5090")]
    pub listen: SocketAddr,
    /// Ring time before answering (or rejecting), seconds: 2 or 1..5.
    #[arg(long, value_name = "SECONDS", default_value = "0")]
    pub ring: Span,
    /// Share of calls answered (weights are relative to each other).
    #[arg(long, value_name = "WEIGHT", default_value_t = 1.0)]
    pub answer: f64,
    /// Share of calls answered 486 Busy Here at once.
    #[arg(long, value_name = "WEIGHT", default_value_t = 0.0)]
    pub busy: f64,
    /// Share of calls that ring without answer (until CANCEL or --no-answer-timeout).
    #[arg(long, value_name = "WEIGHT", default_value_t = 0.0)]
    pub no_answer: f64,
    /// Share of calls rejected with 603 Decline after ringing.
    #[arg(long, value_name = "WEIGHT", default_value_t = 0.0)]
    pub reject: f64,
    /// Fraction (0 to 1) of answered calls answered by an answering machine.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
    pub machine: f64,
    /// Answering machine greeting length before the beep, seconds.
    #[arg(long, value_name = "SECONDS", default_value = "4..8")]
    pub greeting: Span,
    /// What answered phones send.
    #[arg(long, value_enum, default_value_t = MediaMode::Echo)]
    pub media: MediaMode,
    /// WAV file (8 kHz mono 16-bit) for --media prompt.
    #[arg(long, value_name = "FILE")]
    pub prompt: Option<PathBuf>,
    /// Keys pressed after answering: none, from-uri (press-DIGITS user part, then #), a key
    /// string such as 12#, or KEY@SECONDS,... offsets after the answer.
    #[arg(long, value_name = "SPEC", default_value = "none")]
    pub dtmf: DtmfSpec,
    /// Milliseconds from the answer to the first key (from-uri and key strings).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub dtmf_delay: u64,
    /// Milliseconds from one key's start to the next.
    #[arg(long, value_name = "MS", default_value_t = 300)]
    pub dtmf_gap: u64,
    /// Milliseconds each key is held (whole 20 ms packets).
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub dtmf_duration: u64,
    /// Press the keys in answer to the caller's prompt, as a person does: once its audio has
    /// been heard and then silent for MS milliseconds; --dtmf-delay and key offsets count
    /// from then instead of from the answer.
    #[arg(long, value_name = "MS")]
    pub dtmf_after_prompt: Option<u64>,
    /// Hang up (BYE) this long after answering, seconds; default: wait for the caller's BYE.
    #[arg(long, value_name = "SECONDS")]
    pub hangup_after: Option<Span>,
    /// Longest answered call, seconds: then the phone hangs up whatever --hangup-after says.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub max_call: u64,
    /// How long a no-answer phone rings before giving up with 480, seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub no_answer_timeout: u64,
    /// Calls at once at most; more are answered 503.
    #[arg(long, value_name = "N", default_value_t = 50_000)]
    pub max_concurrent: usize,
    /// Demand SIP digest credentials: a new INVITE without them gets 401 (realm
    /// "outdial-bench", MD5, qop=auth), with wrong ones 401 again.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub challenge: Option<String>,
    /// Exit after this many calls ended.
    #[arg(long, value_name = "N")]
    pub calls: Option<u64>,
    /// Exit after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Write one JSON line per ended call here.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Shared options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `outdial bench sip`.
#[derive(Debug, Args)]
pub struct SipArgs {
    /// Request-URI of every INVITE, e.g. sip:service@127.0.0.1:5070 (an IP address).
    #[arg(value_name = "TARGET")]
    pub target: String,
    /// Local SIP address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub local: SocketAddr,
    /// From URI.
    #[arg(long, default_value = "sip:bench@127.0.0.1")]
    pub from: String,
    /// New calls per second (default 10 when --concurrency is not given either).
    #[arg(long, value_name = "CPS")]
    pub rate: Option<f64>,
    /// Calls at once at most.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Calls to place in all.
    #[arg(long, value_name = "N")]
    pub calls: Option<u64>,
    /// Seconds to place calls for.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Milliseconds from the answer to our BYE.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub hold: u64,
    /// Seconds of ringing before CANCEL.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub ring_timeout: u64,
    /// Send paced G.711 silence on answered calls (one RTP port each) and count what returns.
    #[arg(long)]
    pub media: bool,
    /// Shared options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Runs one bench command on the calling thread until it ends or `stop` is set; prints
/// the summary on standard output and progress on standard error. Returns the exit status.
pub fn run(command: BenchCommand, stop: Arc<AtomicBool>) -> u8 {
    let result = match command {
        // The HTTP tools are async: they run on the runtime this blocking thread belongs to.
        BenchCommand::Load(args) => Ok(tokio::runtime::Handle::current().block_on(load::run(args))),
        BenchCommand::Appserver(args) => {
            Ok(tokio::runtime::Handle::current().block_on(appserver_main(args)))
        }
        BenchCommand::Callee(args) => callee(args, stop),
        BenchCommand::Sip(args) => sip(args, stop),
        BenchCommand::Smtp(args) => {
            Ok(tokio::runtime::Handle::current().block_on(crate::smtp::run(args)))
        }
        BenchCommand::Udp(args) => Ok(crate::udp::run(&args, stop)),
    };
    result.unwrap_or_else(|message| {
        eprintln!("error: {message}");
        EXIT_ERROR
    })
}

/// A per-run secret for digest nonces: the clock's nanoseconds (nonces need only differ
/// between runs, not be unguessable to a load generator).
fn nonce_secret() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn seconds(value: f64, name: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("--{name} must be a non-negative number of seconds"))
}

fn progress(run: &RunArgs) -> Result<Option<Duration>, String> {
    Ok(Some(seconds(run.progress, "progress")?).filter(|d| !d.is_zero()))
}

fn callee(args: CalleeArgs, stop: Arc<AtomicBool>) -> Result<u8, String> {
    let weights = [args.answer, args.busy, args.no_answer, args.reject];
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) || weights.iter().sum::<f64>() <= 0.0 {
        return Err(
            "--answer, --busy, --no-answer and --reject are non-negative weights, not all 0".into(),
        );
    }
    if !(0.0..=1.0).contains(&args.machine) {
        return Err("--machine is a fraction from 0 to 1".into());
    }
    let sound = match args.media {
        MediaMode::Echo => Sound::Echo,
        MediaMode::Tone => Sound::Tone,
        MediaMode::Silence => Sound::Silence,
        MediaMode::Prompt if args.prompt.is_some() => Sound::Prompt,
        MediaMode::Prompt => return Err("--media prompt needs --prompt FILE".into()),
    };
    if args.dtmf_gap < args.dtmf_duration + 60 {
        return Err(
            "--dtmf-gap must exceed --dtmf-duration by 60 ms (the three end packets)".into(),
        );
    }
    let sounds = Sounds::new(args.prompt.as_deref()).map_err(|e| e.to_string())?;
    let report = match &args.report {
        Some(path) => Some(Box::new(
            std::fs::File::create(path)
                .map_err(|e| format!("cannot create the report {}: {e}", path.display()))?,
        ) as Box<dyn std::io::Write + Send>),
        None => None,
    };
    let config = PopulationConfig {
        listen: args.listen,
        phone: Arc::new(PhoneSettings {
            local_sip: args.listen,
            timing: Timing::default(),
            sound,
            sounds: Arc::new(sounds),
            key_duration: Duration::from_millis(args.dtmf_duration),
            keys_after_prompt: args.dtmf_after_prompt.map(Duration::from_millis),
            max_call: Duration::from_secs(args.max_call),
            no_answer_timeout: Duration::from_secs(args.no_answer_timeout),
            user_agent: format!("outdial-bench-callee/{}", env!("CARGO_PKG_VERSION")),
        }),
        ring: args.ring,
        talk: args.hangup_after,
        greeting: args.greeting,
        shares: Shares {
            answer: args.answer,
            busy: args.busy,
            no_answer: args.no_answer,
            reject: args.reject,
            machine: args.machine,
        },
        dtmf: args.dtmf,
        dtmf_timing: DtmfTiming {
            delay: Duration::from_millis(args.dtmf_delay),
            gap: Duration::from_millis(args.dtmf_gap),
            duration: Duration::from_millis(args.dtmf_duration),
        },
        seed: args.run.seed,
        calls: args.calls,
        duration: args.duration.map(|d| seconds(d, "duration")).transpose()?,
        max_concurrent: args.max_concurrent,
        progress: progress(&args.run)?,
        challenge: args
            .challenge
            .as_deref()
            .map(|text| DigestGate::parse(text, nonce_secret()))
            .transpose()?,
    };
    let mut population = Population::new(config, report, stop);
    let wake = WakeFd::new().map_err(|e| format!("cannot create an eventfd: {e}"))?;
    let backend = core::run(&args.run.socket_loop.config(), &wake, &mut population)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    population
        .finish_report()
        .map_err(|e| format!("cannot write the report: {e}"))?;
    let summary = population
        .summary()
        .report(population.elapsed().as_secs_f64(), backend.name());
    print_summary(args.run.json, &summary, |s, out| s.write_text(out))?;
    Ok(EXIT_OK)
}

fn sip(args: SipArgs, stop: Arc<AtomicBool>) -> Result<u8, String> {
    if args.rate.is_some_and(|r| !r.is_finite() || r <= 0.0) {
        return Err("--rate must be a positive number of calls per second".into());
    }
    if args.concurrency == Some(0) {
        return Err("--concurrency must be at least 1".into());
    }
    if args.calls.is_none() && args.duration.is_none() {
        return Err("give --calls N or --duration SECONDS".into());
    }
    let rate = match (args.rate, args.concurrency) {
        (None, None) => Some(10.0),
        (rate, _) => rate,
    };
    let config = LoadConfig {
        target: args.target.clone(),
        local: args.local,
        from: args.from,
        rate,
        concurrency: args.concurrency,
        calls: args.calls,
        duration: args.duration.map(|d| seconds(d, "duration")).transpose()?,
        hold: Duration::from_millis(args.hold),
        ring_timeout: Duration::from_secs(args.ring_timeout),
        media: args.media,
        progress: progress(&args.run)?,
        seed: args.run.seed,
    };
    outdial_dataplane::sip::target::dial_target(&args.target)
        .ok()
        .and_then(|t| t.socket_addr())
        .ok_or_else(|| {
            format!(
                "{} is not a SIP URI with an IP address (sip:user@127.0.0.1:5070)",
                args.target
            )
        })?;
    let mut load = SipLoad::new(config, stop);
    let wake = WakeFd::new().map_err(|e| format!("cannot create an eventfd: {e}"))?;
    let backend = core::run(&args.run.socket_loop.config(), &wake, &mut load)
        .map_err(|e| format!("cannot bind {}: {e}", args.local))?;
    let summary = load
        .summary()
        .report(load.elapsed().as_secs_f64(), backend.name());
    print_summary(args.run.json, &summary, |s, out| s.write_text(out))?;
    Ok(if summary.failed == 0 {
        EXIT_OK
    } else {
        EXIT_FAILED_CALLS
    })
}

fn print_summary<T: serde::Serialize>(
    json: bool,
    summary: &T,
    text: impl Fn(&T, &mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    let written = if json {
        serde_json::to_writer_pretty(&mut out, summary)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        text(summary, &mut out)
    };
    written.map_err(|e| format!("cannot print the summary: {e}"))
}

use std::io::Write as _;

/// `outdial bench appserver`.
#[derive(Debug, Clone, Args)]
#[command(after_help = APPSERVER_HELP)]
pub struct AppserverArgs {
    /// Where to listen.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Also serve the files in this directory (GET /NAME serves DIR/NAME).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

const APPSERVER_HELP: &str = "\
Serves /survey.vxml, /reminder.vxml and /long-prompt.vxml (the applications `bench load`
uses) and the files of --dir. Any POST, and any GET with a query to a path that is not a
file, is a <submit>: it is printed (`submit POST /confirm confirm=true`) and answered with a
document that says goodbye and hangs up. A POST to /status is a status callback: the call's
id, status, SIP status and result are printed. Runs until interrupted.

Example:
  outdial bench appserver --dir docs/examples";

/// `outdial bench appserver`: serves until interrupted, printing what it receives.
async fn appserver_main(args: AppserverArgs) -> u8 {
    if let Some(dir) = &args.dir
        && !dir.is_dir()
    {
        eprintln!("error: --dir {} is not a directory", dir.display());
        return EXIT_ERROR;
    }
    let (listener, addr) = match appserver::bind(args.listen).await {
        Ok(bound) => bound,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {}: {e} (is another server on that port? choose one with --listen)",
                args.listen
            );
            return EXIT_ERROR;
        }
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let server = tokio::spawn(appserver::serve(listener, args.dir.clone(), tx));
    // A closed standard output (`| head`) ends the server instead of panicking it.
    let say = |line: &str| {
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), "{line}").is_ok()
    };
    let banner = format!(
        "serving on http://{addr}/ (survey.vxml, reminder.vxml, long-prompt.vxml{})",
        args.dir
            .as_ref()
            .map(|d| format!(", and the files of {}", d.display()))
            .unwrap_or_default()
    );
    if !say(&banner) {
        server.abort();
        return EXIT_OK;
    }
    loop {
        tokio::select! {
            event = rx.recv() => match event {
                Some(event) => {
                    if !say(&appserver::describe(&event)) {
                        break;
                    }
                }
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    server.abort();
    EXIT_OK
}
