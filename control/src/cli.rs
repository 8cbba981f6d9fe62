//! The `outdial` command line: `serve`, `call`, `vxml run`, `config check` and `bench`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::client::{self, ApiClient};
use crate::config::{Config, LogConfig};
use crate::error::Error;
use crate::model::{CallRecord, CallRequest, CallStatus};
use crate::store::CallEvent;

/// Exit status: the call completed (or the command succeeded).
pub const EXIT_OK: u8 = 0;
/// Exit status: an error (bad arguments, API error, server unreachable).
pub const EXIT_ERROR: u8 = 1;
/// Exit status: the call ended, but not as `completed` (busy, no-answer, failed, canceled).
pub const EXIT_NOT_COMPLETED: u8 = 2;

/// How often `outdial call` polls the call's status.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Outdial places telephone calls on HTTP request and runs a VoiceXML application on each.
#[derive(Debug, Parser)]
#[command(name = "outdial", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process")]
pub enum Command {
    /// Run the server: HTTP API, store, dispatcher and dataplane.
    Serve(ServeArgs),
    /// Place a call through a running server and follow it to the end.
    Call(CallArgs),
    /// Work with VoiceXML applications without placing a call.
    Vxml {
        /// What to do with the application.
        #[command(subcommand)]
        command: VxmlCommand,
    },
    /// Manage tenants in the store of the data directory.
    Tenant {
        /// Where the store is.
        #[command(flatten)]
        store: crate::admin_cli::StoreArgs,
        /// What to do.
        #[command(subcommand)]
        command: crate::admin_cli::TenantCommand,
    },
    /// Manage API keys in the store of the data directory.
    Key {
        /// Where the store is.
        #[command(flatten)]
        store: crate::admin_cli::StoreArgs,
        /// What to do.
        #[command(subcommand)]
        command: crate::admin_cli::KeyCommand,
    },
    /// Bulk calling: create a campaign, upload its callees, follow it, cancel it (over the API).
    Campaign {
        /// What to do.
        #[command(subcommand)]
        command: crate::campaign_cli::CampaignCommand,
    },
    /// Read or set a tenant's own policy (calling hours, destinations, rate).
    Policy {
        /// Where the store is.
        #[command(flatten)]
        store: crate::admin_cli::StoreArgs,
        /// What to do.
        #[command(subcommand)]
        command: crate::policy_cli::PolicyCommand,
    },
    /// Read or set callee records: time zone, quiet hours, caps, opt-outs.
    Callee {
        /// Where the store is.
        #[command(flatten)]
        store: crate::admin_cli::StoreArgs,
        /// What to do.
        #[command(subcommand)]
        command: crate::policy_cli::CalleeCommand,
    },
    /// Export call detail records from the store of the data directory.
    Cdr {
        /// Where the store is.
        #[command(flatten)]
        store: crate::admin_cli::StoreArgs,
        /// What to do.
        #[command(subcommand)]
        command: crate::admin_cli::CdrCommand,
    },
    /// Speech recognition without a call: try a grammar and a phrase as a call would hear it.
    Speech {
        /// What to do.
        #[command(subcommand)]
        command: SpeechCommand,
    },
    /// Work with configuration files.
    Config {
        /// What to do with the configuration.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Load tools: the load generator and its application server, simulated callees, SIP load
    /// (see `outdial bench <tool> --help`).
    Bench {
        /// Which tool.
        #[command(subcommand)]
        command: outdial_bench::cli::BenchCommand,
    },
}

/// `outdial speech ...`.
#[derive(Debug, Subcommand)]
pub enum SpeechCommand {
    /// Recognise one utterance (espeak-ng's speech of --say, or --raw audio) through G.711 and
    /// the recognizer with a grammar; prints the confidence and the words.
    Recognize(crate::speech_cli::RecognizeArgs),
}

/// `outdial serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (see docs/configuration.md); built-in defaults if omitted.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `outdial call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// Who to call: a sip: URI, or an E.164 number (+15551234567) if a trunk is configured.
    #[arg(long, value_name = "URI|NUMBER")]
    pub to: String,
    /// The VoiceXML application to run when the callee answers (http:// or https://).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// The caller: a sip: URI or an E.164 number (default: the server's sip.from).
    #[arg(long, value_name = "URI|NUMBER")]
    pub from: Option<String>,
    /// A variable for the application, readable as session.NAME; VALUE is JSON if it parses
    /// (a number, true, false), else a string (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Seconds to let the phone ring before giving up (default: the server's setting).
    #[arg(long, value_name = "SECONDS")]
    pub ring_timeout: Option<u64>,
    /// URL that receives the call record on every status change (signed webhooks).
    #[arg(long, value_name = "URL")]
    pub status_callback: Option<String>,
    /// Only these status changes go to --status-callback (comma-separated: queued, dialing,
    /// ringing, in-progress, final); default every one.
    #[arg(long, value_name = "EVENTS", value_delimiter = ',')]
    pub status_callback_events: Option<Vec<String>>,
    /// Answering-machine detection: off, detect, hangup (end the call on a machine) or
    /// wait_for_beep (start the application after a machine's beep). Default off.
    #[arg(long, value_name = "MODE")]
    pub machine_detection: Option<String>,
    /// Start the application on early media (a 183 with SDP: announcements before the
    /// answer) instead of at the answer.
    #[arg(long)]
    pub early_media: bool,
    /// Which server, and how to reach it.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print the new call and exit instead of following it.
    #[arg(long)]
    pub no_wait: bool,
    /// Print the final record as JSON on standard output (progress goes to standard error).
    #[arg(long)]
    pub json: bool,
}

/// How a command reaches an Outdial server's API.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Base URL of the Outdial API.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// The server's configuration file: the API address is its http.listen and the key
    /// defaults to the development key in its store.data_dir.
    #[arg(long, short, value_name = "FILE", conflicts_with = "api")]
    pub config: Option<PathBuf>,
    /// API key [default: $OUTDIAL_API_KEY, else the development key in the data directory,
    /// ./outdial-data/dev-api-key unless --config names another].
    #[arg(
        long,
        value_name = "KEY",
        env = "OUTDIAL_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// PEM file of the certificate authority (or self-signed certificate) to trust for an
    /// https:// API, besides the system's.
    #[arg(long, value_name = "FILE", env = "OUTDIAL_CACERT")]
    pub cacert: Option<PathBuf>,
    /// Sign every request with this tenant signing secret (`odsig_...`; see docs/security.md).
    #[arg(
        long,
        value_name = "SECRET",
        env = "OUTDIAL_SIGNING_SECRET",
        hide_env_values = true
    )]
    pub signing_secret: Option<String>,
}

impl ServerArgs {
    /// A client for the server these arguments name.
    pub fn client(&self) -> Result<ApiClient, Error> {
        let (base, key_file) = match &self.config {
            Some(path) => {
                let config = Config::load(path)?;
                (api_url(&config), config.store.data_dir.join("dev-api-key"))
            }
            None => (
                self.api.clone(),
                PathBuf::from(client::DEFAULT_DEV_KEY_FILE),
            ),
        };
        let key = client::resolve_api_key(self.api_key.clone(), &key_file)?;
        ApiClient::configured(
            &base,
            key,
            self.cacert.as_deref(),
            self.signing_secret.clone(),
        )
    }
}

/// `outdial vxml ...`.
#[derive(Debug, Subcommand)]
pub enum VxmlCommand {
    /// Run an application against a scripted caller in virtual time and print the transcript.
    #[command(after_help = VXML_RUN_HELP)]
    Run(VxmlRunArgs),
}

const VXML_RUN_HELP: &str = "\
Input script (comma-separated, answered in order whenever the application waits):
  1, 2#, *9       press these keys once the prompts have played
  !1              press keys at once (barge-in)
  noinput         stay silent until the noinput timeout
  say:new york    say these words (matched against voice grammars as text)
  hangup          hang up
  transfer:busy   how the next <transfer> goes (busy, noanswer, far_end_disconnect, ...)
When the script runs out the caller hangs up. Prompts take virtual time; nothing waits.

Exit status: 0 when the session ends normally (exit, disconnect, hangup), 1 when the
arguments are unusable, 2 when it ends with an error event or hits a limit.

Examples:
  outdial vxml run app.vxml --input \"1,noinput,2#,hangup\"
  outdial vxml run https://example.com/ivr.vxml --input \"say:yes\" --var name=Alice --json";

/// `outdial vxml run`.
#[derive(Debug, Args)]
pub struct VxmlRunArgs {
    /// The application: a VoiceXML file, or an http:// or https:// URL.
    #[arg(value_name = "URL_OR_FILE")]
    pub target: String,
    /// What the caller does, e.g. "1,noinput,2#,say:new york,hangup".
    #[arg(long, value_name = "SCRIPT", default_value = "")]
    pub input: String,
    /// A variable for the application, readable as session.NAME; VALUE is JSON if it parses,
    /// else a string (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Print the transcript as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Run as a call whose answer machine detection classified:
    /// session.connection.outdial.answered_by is this (human, machine or unknown).
    #[arg(long, value_name = "WHO", value_parser = ["human", "machine", "unknown"])]
    pub answered_by: Option<String>,
    /// Stop the run after this many seconds of virtual time.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub max_time: u64,
}

/// `outdial config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Parse and validate a configuration file; exit 0 if it is usable.
    Check {
        /// The TOML file to check.
        file: PathBuf,
    },
}

/// Runs a parsed command line and returns the process exit status.
pub async fn run(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Call(args) => {
            let mut stdout = std::io::stdout().lock();
            let mut stderr = std::io::stderr();
            call(&args, POLL_INTERVAL, &mut stdout, &mut stderr).await
        }
        Command::Vxml {
            command: VxmlCommand::Run(args),
        } => vxml_run(args).await,
        Command::Tenant { store, command } => {
            admin(&store, async |s, out| {
                crate::admin_cli::tenant(s, command, out).await
            })
            .await
        }
        Command::Key { store, command } => {
            admin(&store, async |s, out| {
                crate::admin_cli::key(s, command, out).await
            })
            .await
        }
        Command::Campaign { command } => {
            let mut stdout = std::io::stdout().lock();
            let mut stderr = std::io::stderr().lock();
            match crate::campaign_cli::run(command, &mut stdout, &mut stderr).await {
                Ok(()) => EXIT_OK,
                Err(e) => {
                    let _ = writeln!(stderr, "error: {e}");
                    EXIT_ERROR
                }
            }
        }
        Command::Policy { store, command } => {
            admin(&store, async |s, out| {
                crate::policy_cli::policy(s, command, out).await
            })
            .await
        }
        Command::Callee { store, command } => {
            admin(&store, async |s, out| {
                crate::policy_cli::callee(s, command, out).await
            })
            .await
        }
        Command::Cdr { store, command } => {
            admin(&store, async |s, out| {
                crate::admin_cli::cdr(s, command, out).await
            })
            .await
        }
        Command::Bench { command } => bench(command).await,
        Command::Speech {
            command: SpeechCommand::Recognize(args),
        } => match tokio::task::spawn_blocking(move || crate::speech_cli::recognize(&args)).await {
            Ok(Ok(())) => EXIT_OK,
            Ok(Err(e)) => {
                eprintln!("error: {e}");
                EXIT_ERROR
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_ERROR
            }
        },
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match Config::load(&file).and_then(|config| config.check_environment()) {
            Ok(()) => {
                println!("{}: ok", file.display());
                EXIT_OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_ERROR
            }
        },
    };
    ExitCode::from(code)
}

/// Opens the store and runs one operator command on it, writing to standard output.
async fn admin(
    args: &crate::admin_cli::StoreArgs,
    command: impl AsyncFnOnce(&crate::store::sqlite::SqliteStore, &mut dyn Write) -> Result<(), Error>,
) -> u8 {
    let store = match crate::admin_cli::open_store(args) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_ERROR;
        }
    };
    let mut stdout = std::io::stdout().lock();
    match command(&store, &mut stdout).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_ERROR
        }
    }
}

/// Sets up logging to standard error per `[log]`; `RUST_LOG`, when set, takes precedence.
pub fn init_tracing(log: &LogConfig) -> Result<(), Error> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => {
            tracing_subscriber::EnvFilter::try_new(directives)
        }
        _ => tracing_subscriber::EnvFilter::try_new(&log.level),
    }
    .map_err(|e| Error::Config(format!("`log.level` (or RUST_LOG): {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let installed = if log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    installed.map_err(|e| Error::Config(format!("cannot install the logger: {e}")))
}

/// `outdial bench …`: the tool runs its own loop on a blocking thread; Ctrl-C or SIGTERM
/// asks it to stop (it then prints its summary).
async fn bench(command: outdial_bench::cli::BenchCommand) -> u8 {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    let signals = tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let run = tokio::task::spawn_blocking(move || outdial_bench::cli::run(command, stop));
    let code = run.await.unwrap_or_else(|e| {
        eprintln!("error: the bench run failed: {e}");
        EXIT_ERROR
    });
    signals.abort();
    code
}

/// `outdial vxml run`: the run blocks (fetches go through its own runtime), so it runs on a
/// blocking thread.
async fn vxml_run(args: VxmlRunArgs) -> u8 {
    let options = crate::vxml_run::RunOptions {
        target: args.target,
        inputs: args.input,
        vars: args.vars,
        json: args.json,
        answered_by: args.answered_by,
        max_time: Duration::from_secs(args.max_time),
    };
    let run = tokio::task::spawn_blocking(move || {
        let mut stdout = std::io::stdout().lock();
        let mut stderr = std::io::stderr();
        crate::vxml_run::command(&options, &mut stdout, &mut stderr)
    });
    run.await.unwrap_or_else(|e| {
        eprintln!("error: the VoiceXML run failed: {e}");
        EXIT_ERROR
    })
}

async fn serve(args: ServeArgs) -> u8 {
    let config = match &args.config {
        Some(path) => Config::load(path),
        None => Ok(Config::default()),
    };
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_ERROR;
        }
    };
    if let Err(e) = init_tracing(&config.log) {
        eprintln!("error: {e}");
        return EXIT_ERROR;
    }
    match crate::serve::run(config).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_ERROR
        }
    }
}

/// `outdial call`: create, then follow the call, writing the record to `out` and progress to
/// `out` (or to `progress` with `--json`). Returns the exit status.
async fn call(
    args: &CallArgs,
    poll: Duration,
    out: &mut dyn Write,
    progress: &mut dyn Write,
) -> u8 {
    match follow_call(args, poll, out, progress).await {
        Ok(record) if record.status == CallStatus::Completed => EXIT_OK,
        Ok(record) if record.status.is_final() => EXIT_NOT_COMPLETED,
        Ok(_) => EXIT_OK, // --no-wait: the call was accepted
        Err(e) => {
            let _ = writeln!(progress, "error: {e}");
            EXIT_ERROR
        }
    }
}

async fn follow_call(
    args: &CallArgs,
    poll: Duration,
    out: &mut dyn Write,
    progress: &mut dyn Write,
) -> Result<CallRecord, Error> {
    let api = args.server.client()?;
    let request = CallRequest {
        to: args.to.clone(),
        url: args.url.clone(),
        from: args.from.clone(),
        vars: args
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), crate::vxml_run::var_value(v)))
            .collect(),
        status_callback: args.status_callback.clone(),
        status_callback_events: args.status_callback_events.clone(),
        machine_detection: args.machine_detection.clone(),
        early_media: args.early_media,
        ring_timeout: args.ring_timeout,
    };
    let created = api.create_call(&request).await?;
    let record = if args.no_wait {
        created
    } else {
        let log: &mut dyn Write = if args.json { progress } else { &mut *out };
        let _ = writeln!(log, "{} → {}", created.id, created.target_uri);
        // Each change at its recorded time, from the call's creation.
        let mut show = |event: &CallEvent| {
            let since = (event.at - created.created_at).max(time::Duration::ZERO);
            let _ = writeln!(log, "{:>6.1}s  {}", since.as_seconds_f64(), event.status);
        };
        let followed = tokio::select! {
            record = api.wait_for_final(&created.id, poll, &mut show) => Some(record?),
            _ = tokio::signal::ctrl_c() => None,
        };
        match followed {
            Some(record) => record,
            None => {
                if !confirm_cancel(&created.id).await {
                    eprintln!("{} keeps running", created.id);
                    return Ok(created);
                }
                eprintln!("canceling {}", created.id);
                match api.cancel_call(&created.id).await {
                    Ok(_) | Err(Error::Api { status: 409, .. }) => {}
                    Err(e) => return Err(e),
                }
                api.wait_for_final(&created.id, poll, &mut show).await?
            }
        }
    };
    print_record(&record, args.json, out)?;
    Ok(record)
}

fn print_record(record: &CallRecord, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    if json {
        let text = serde_json::to_string_pretty(record)
            .map_err(|e| Error::Client(format!("cannot print the record: {e}")))?;
        writeln!(out, "{text}")?;
        return Ok(());
    }
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    writeln!(out, "{}: {}", record.id, record.status)?;
    writeln!(out, "  to:          {}", record.to)?;
    writeln!(
        out,
        "  SIP status:  {}",
        or_dash(record.sip_status.map(|s| s.to_string()))
    )?;
    writeln!(
        out,
        "  disposition: {}",
        or_dash(record.disposition.clone())
    )?;
    writeln!(out, "  reason:      {}", or_dash(record.reason.clone()))?;
    writeln!(
        out,
        "  result:      {}",
        or_dash(record.result.as_ref().map(|r| r.to_string()))
    )?;
    Ok(())
}

/// Asks on the terminal whether to cancel call `id` after Ctrl-C; without a terminal (a script,
/// a pipe) there is nobody to ask and the call is canceled.
async fn confirm_cancel(id: &str) -> bool {
    use std::io::IsTerminal as _;
    if !std::io::stdin().is_terminal() {
        return true;
    }
    eprint!("\ncancel call {id}? [Y/n] ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await;
    match answer {
        Ok(Ok(line)) => wants_cancel(&line),
        _ => true,
    }
}

/// The answer to "cancel call …? [Y/n]": yes unless it starts with n.
fn wants_cancel(answer: &str) -> bool {
    !answer.trim_start().to_ascii_lowercase().starts_with('n')
}

/// The API's base URL from a server configuration: its `http.listen`, with a wildcard
/// address replaced by loopback.
pub fn api_url(config: &Config) -> String {
    let mut listen = config.http.listen;
    if listen.ip().is_unspecified() {
        listen.set_ip(match listen {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let scheme = if config.https.files().is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{listen}")
}

/// Parses `--var NAME=VALUE`.
pub(crate) fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use clap::CommandFactory as _;

    use crate::api::{AppState, router};
    use crate::dispatch::CallControl;
    use crate::model::Next;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{AttemptEnd, CallStore as _, TenantStore as _, Transition, testing};

    struct NoControl;

    impl CallControl for NoControl {
        fn queued(&self, _record: &CallRecord) {}
        fn removed(&self, _id: &str) {}
        fn nodes(&self) -> Vec<crate::telephony::NodeLoad> {
            Vec::new()
        }
        fn queued_calls(&self) -> usize {
            0
        }
        fn tenant_cap(&self, _tenant: &str, _cap: Option<usize>) {}
        fn cancel(&self, _id: &str) -> bool {
            false
        }
    }

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn call_arguments_parse() {
        let cli = Cli::try_parse_from([
            "outdial",
            "call",
            "--to",
            "sip:a@127.0.0.1",
            "--url",
            "http://x/a.vxml",
            "--var",
            "pin=12=34",
            "--var",
            "name=Bo",
            "--no-wait",
            "--api-key",
            "k",
        ]);
        let Ok(Cli {
            command: Command::Call(args),
        }) = cli
        else {
            panic!("{cli:?}")
        };
        assert_eq!(
            args.vars,
            vec![("pin".into(), "12=34".into()), ("name".into(), "Bo".into())]
        );
        assert!(args.no_wait && !args.json);
        assert_eq!(args.server.api, "http://127.0.0.1:8080");
        assert!(
            Cli::try_parse_from([
                "outdial", "call", "--to", "x", "--url", "y", "--var", "novalue"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["outdial", "call", "--url", "y"]).is_err());
    }

    #[test]
    fn call_takes_a_config_file_instead_of_an_api_url() {
        let cli = Cli::try_parse_from([
            "outdial", "call", "--to", "x", "--url", "y", "--config", "o.toml",
        ]);
        let Ok(Cli {
            command: Command::Call(args),
        }) = cli
        else {
            panic!("{cli:?}")
        };
        assert_eq!(args.server.config, Some(PathBuf::from("o.toml")));
        let both = Cli::try_parse_from([
            "outdial", "call", "--to", "x", "--url", "y", "--config", "o.toml", "--api", "http://h",
        ]);
        assert!(both.is_err(), "--config and --api conflict");
        let mut config = Config::default();
        assert_eq!(api_url(&config), "http://127.0.0.1:8080");
        config.http.listen = "0.0.0.0:9000".parse().unwrap_or(config.http.listen);
        assert_eq!(api_url(&config), "http://127.0.0.1:9000");
        config.http.listen = "[::]:9000".parse().unwrap_or(config.http.listen);
        assert_eq!(api_url(&config), "http://[::1]:9000");
    }

    #[test]
    fn an_interrupt_cancels_unless_the_answer_is_no() {
        for yes in ["", "\n", "y\n", "Yes", "  y"] {
            assert!(wants_cancel(yes), "{yes:?}");
        }
        for no in ["n\n", "No", " N"] {
            assert!(!wants_cancel(no), "{no:?}");
        }
    }

    #[test]
    fn every_command_has_help() {
        let mut command = Cli::command();
        command.build();
        let mut stack = vec![command];
        let mut seen = 0;
        while let Some(command) = stack.pop() {
            seen += 1;
            assert!(
                command.get_about().is_some() || command.get_name() == "outdial",
                "{} has no help text",
                command.get_name()
            );
            for arg in command.get_arguments() {
                assert!(
                    arg.get_help().is_some(),
                    "{} --{} has no help text",
                    command.get_name(),
                    arg.get_id()
                );
            }
            stack.extend(
                command
                    .get_subcommands()
                    .filter(|c| c.get_name() != "help")
                    .cloned(),
            );
        }
        assert!(seen >= 6, "{seen}");
    }

    #[test]
    fn vxml_run_arguments_parse() {
        let cli = Cli::try_parse_from([
            "outdial",
            "vxml",
            "run",
            "app.vxml",
            "--input",
            "1,noinput,2#",
            "--var",
            "n=5",
            "--json",
        ]);
        let Ok(Cli {
            command: Command::Vxml {
                command: VxmlCommand::Run(args),
            },
        }) = cli
        else {
            panic!("{cli:?}")
        };
        assert_eq!(args.target, "app.vxml");
        assert_eq!(args.input, "1,noinput,2#");
        assert_eq!(args.vars, vec![("n".into(), "5".into())]);
        assert!(args.json);
        assert_eq!(args.max_time, 3600);
        assert!(Cli::try_parse_from(["outdial", "vxml", "run"]).is_err());
    }

    #[test]
    fn serve_and_config_parse() {
        let cli = Cli::try_parse_from(["outdial", "serve", "--config", "o.toml"]);
        assert!(matches!(
            cli,
            Ok(Cli {
                command: Command::Serve(ServeArgs { config: Some(_) })
            })
        ));
        let cli = Cli::try_parse_from(["outdial", "config", "check", "o.toml"]);
        assert!(matches!(
            cli,
            Ok(Cli {
                command: Command::Config { .. }
            })
        ));
    }

    /// A real server on 127.0.0.1:0 whose calls a background task moves through `statuses`.
    async fn server() -> (tempfile::TempDir, Arc<SqliteStore>, String, String) {
        let (dir, store) = testing::open_temp();
        let key = store
            .ensure_dev_tenant(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let state = AppState {
            store: store.clone(),
            gate: crate::policy_gate::PolicyGate::new(
                store.clone(),
                Config::default().policy.operator_policy(),
            ),
            control: Arc::new(NoControl),
            config: Arc::new(Config::default()),
            metrics: None,
            nonces: Default::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        (dir, store, format!("http://{addr}"), key)
    }

    /// Plays the call runner: claims the call and moves it through `statuses`.
    fn drive(store: Arc<SqliteStore>, statuses: Vec<(CallStatus, Option<u16>)>) {
        tokio::spawn(async move {
            let claimed = loop {
                let pending = store.pending_calls("test").await.unwrap_or_default();
                if let Some(call) = pending.first() {
                    break testing::claim(store.as_ref(), "test", &call.id).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            let id = claimed.record.id.clone();
            for (status, sip_status) in statuses {
                tokio::time::sleep(Duration::from_millis(30)).await;
                let now = time::OffsetDateTime::now_utc();
                if status.is_final() {
                    let end = AttemptEnd {
                        media: None,
                        status,
                        ended_at: now,
                        sip_status,
                        disposition: Some(status.as_str().to_owned()),
                        reason: status.as_str().to_owned(),
                        core: Some(0),
                        sip_call_id: None,
                        result: (status == CallStatus::Completed)
                            .then(|| serde_json::json!({"pin": "1234"})),
                    };
                    let next = Next::Final { status };
                    let _ = store.finish_attempt(&id, claimed.attempt, end, next).await;
                } else {
                    let transition = Transition {
                        status,
                        at: now,
                        cause: None,
                        sip_status,
                    };
                    let _ = store
                        .record_transition(&id, claimed.attempt, transition)
                        .await;
                }
            }
        });
    }

    fn args(api: &str, key: &str) -> CallArgs {
        CallArgs {
            to: "sip:alice@127.0.0.1:5080".to_owned(),
            url: "http://127.0.0.1:8000/app.vxml".to_owned(),
            from: None,
            vars: vec![("name".to_owned(), "Alice".to_owned())],
            ring_timeout: None,
            status_callback: None,
            status_callback_events: None,
            machine_detection: None,
            early_media: false,
            server: ServerArgs {
                api: api.to_owned(),
                config: None,
                api_key: Some(key.to_owned()),
                cacert: None,
                signing_secret: None,
            },
            no_wait: false,
            json: false,
        }
    }

    #[tokio::test]
    async fn call_follows_a_completed_call_and_exits_0() {
        let (_dir, store, api, key) = server().await;
        drive(
            store,
            vec![
                (CallStatus::Ringing, Some(180)),
                (CallStatus::InProgress, Some(200)),
                (CallStatus::Completed, None),
            ],
        );
        let (mut out, mut progress) = (Vec::new(), Vec::new());
        // Polls slower than the statuses change: every change is still shown, from the history.
        let code = call(
            &args(&api, &key),
            Duration::from_millis(200),
            &mut out,
            &mut progress,
        )
        .await;
        let out = String::from_utf8_lossy(&out);
        assert_eq!(code, EXIT_OK, "{out}{}", String::from_utf8_lossy(&progress));
        let order: Vec<_> = ["dialing", "ringing", "in-progress", "completed"]
            .iter()
            .map(|s| out.find(&format!("s  {s}\n")))
            .collect();
        assert!(order.iter().all(Option::is_some), "{out}");
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
        assert!(out.contains("SIP status:  200"), "{out}");
        assert!(out.contains(r#"{"pin":"1234"}"#), "{out}");
    }

    #[tokio::test]
    async fn call_exits_2_when_the_callee_is_busy_and_prints_json() {
        let (_dir, store, api, key) = server().await;
        drive(store, vec![(CallStatus::Busy, Some(486))]);
        let mut args = args(&api, &key);
        args.json = true;
        let (mut out, mut progress) = (Vec::new(), Vec::new());
        let code = call(&args, Duration::from_millis(5), &mut out, &mut progress).await;
        assert_eq!(code, EXIT_NOT_COMPLETED);
        let record: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(record["status"], "busy");
        assert_eq!(record["sip_status"], 486);
        assert_eq!(record["vars"]["name"], "Alice");
        assert!(String::from_utf8_lossy(&progress).contains("busy"));
    }

    #[tokio::test]
    async fn call_reports_api_errors_and_exits_1() {
        let (_dir, _store, api, key) = server().await;
        let mut bad = args(&api, &key);
        bad.to = "+15551234567".to_owned(); // no trunk configured
        let (mut out, mut progress) = (Vec::new(), Vec::new());
        assert_eq!(
            call(&bad, POLL_INTERVAL, &mut out, &mut progress).await,
            EXIT_ERROR
        );
        let message = String::from_utf8_lossy(&progress);
        assert!(
            message.contains("no_trunk") && message.contains("sip.trunk"),
            "{message}"
        );

        let wrong_key = args(&api, "od_dev_wrong");
        let (mut out, mut progress) = (Vec::new(), Vec::new());
        assert_eq!(
            call(&wrong_key, POLL_INTERVAL, &mut out, &mut progress).await,
            EXIT_ERROR
        );
        assert!(String::from_utf8_lossy(&progress).contains("invalid_api_key"));
    }

    #[tokio::test]
    async fn no_wait_prints_the_queued_call() {
        let (_dir, _store, api, key) = server().await;
        let mut args = args(&api, &key);
        args.no_wait = true;
        let (mut out, mut progress) = (Vec::new(), Vec::new());
        assert_eq!(
            call(&args, POLL_INTERVAL, &mut out, &mut progress).await,
            EXIT_OK
        );
        assert!(String::from_utf8_lossy(&out).contains(": queued"));
    }
}
