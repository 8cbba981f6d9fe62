//! `outdial bench …`: the subcommands, each documented by its own `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use tokio::sync::mpsc;

use crate::appserver;
use crate::load::{self, LoadArgs};

/// The bench tools.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process")]
pub enum BenchCommand {
    /// Drive a deployment through its HTTP API at a paced rate and check every call.
    Load(LoadArgs),
    /// Serve the bench applications (and a directory), print each submit and status callback.
    Appserver(AppserverArgs),
}

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

/// Runs a bench command; returns the exit status.
pub async fn run(command: BenchCommand) -> ExitCode {
    match command {
        BenchCommand::Load(args) => load::run(args).await,
        BenchCommand::Appserver(args) => appserver_main(args).await,
    }
}

async fn appserver_main(args: AppserverArgs) -> ExitCode {
    if let Some(dir) = &args.dir
        && !dir.is_dir()
    {
        eprintln!("error: --dir {} is not a directory", dir.display());
        return ExitCode::from(1);
    }
    let (listener, addr) = match appserver::bind(args.listen).await {
        Ok(bound) => bound,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {}: {e} (is another server on that port? choose one with --listen)",
                args.listen
            );
            return ExitCode::from(1);
        }
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let server = tokio::spawn(appserver::serve(listener, args.dir.clone(), tx));
    println!(
        "serving on http://{addr}/ (survey.vxml, reminder.vxml, long-prompt.vxml{})",
        args.dir
            .as_ref()
            .map(|d| format!(", and the files of {}", d.display()))
            .unwrap_or_default()
    );
    loop {
        tokio::select! {
            event = rx.recv() => match event {
                Some(event) => println!("{}", appserver::describe(&event)),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    server.abort();
    ExitCode::SUCCESS
}
