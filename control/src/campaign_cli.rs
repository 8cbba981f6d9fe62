//! `outdial campaign ...`: create a campaign, upload its callees, follow its progress, cancel
//! it, through the HTTP API (`docs/campaigns.md`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::admin_cli::json_line;
use crate::cli::ServerArgs;
use crate::error::Error;

/// `outdial campaign ...`.
#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign; prints it (its id is what the other commands take).
    Create(CreateArgs),
    /// Upload callees from a CSV (header row naming `to` and the variables) or NDJSON file
    /// (`-` reads standard input); prints how many rows were accepted, skipped and invalid.
    Upload {
        /// The campaign's id (`cmp_...`).
        id: String,
        /// The file.
        file: PathBuf,
        /// The file's format (default: from its extension; csv for standard input).
        #[arg(long, value_enum)]
        format: Option<RowFormat>,
        /// Which server.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print the campaign's progress: rows accepted, skipped, invalid, and calls by status.
    Status {
        /// The campaign's id.
        id: String,
        /// Keep printing a progress line every 2 s until no call is waiting or live.
        #[arg(long)]
        follow: bool,
        /// Which server.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Cancel the campaign: its queued calls end `canceled`.
    Cancel {
        /// The campaign's id.
        id: String,
        /// Which server.
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// `outdial campaign create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The application every call runs (http:// or https://).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// Pacing: calls per second (0.001–1000).
    #[arg(long, value_name = "N")]
    pub rate: f64,
    /// A name for people.
    #[arg(long)]
    pub name: Option<String>,
    /// First call not before (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,
    /// Calls not placed by then end `expired` (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub end: Option<String>,
    /// A variable every call gets; VALUE is JSON if it parses, else a string (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = crate::cli::parse_var)]
    pub vars: Vec<(String, String)>,
    /// URL that receives each call's record on every status change.
    #[arg(long, value_name = "URL")]
    pub status_callback: Option<String>,
    /// Which server.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Upload formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RowFormat {
    /// CSV with a header row.
    Csv,
    /// One JSON object per line.
    Ndjson,
}

/// Runs `outdial campaign ...`, printing JSON to `out` and progress to `progress`.
pub async fn run(
    command: CampaignCommand,
    out: &mut dyn Write,
    progress: &mut dyn Write,
) -> Result<(), Error> {
    match command {
        CampaignCommand::Create(args) => {
            let mut spec = json!({ "url": args.url, "calls_per_second": args.rate });
            for (key, value) in [
                ("name", args.name),
                ("start", args.start),
                ("end", args.end),
                ("status_callback", args.status_callback),
            ] {
                if let Some(value) = value {
                    spec[key] = Value::String(value);
                }
            }
            if !args.vars.is_empty() {
                let vars: Map<String, Value> = args
                    .vars
                    .iter()
                    .map(|(k, v)| (k.clone(), crate::vxml_run::var_value(v)))
                    .collect();
                spec["vars"] = Value::Object(vars);
            }
            let api = args.server.client()?;
            let campaign: Value = api
                .send_bytes(
                    Method::POST,
                    "v1/campaigns",
                    "application/json",
                    spec.to_string().into_bytes(),
                )
                .await?;
            json_line(out, &campaign)
        }
        CampaignCommand::Upload {
            id,
            file,
            format,
            server,
        } => {
            let format =
                format.unwrap_or_else(|| match file.extension().and_then(|e| e.to_str()) {
                    Some("ndjson" | "jsonl") => RowFormat::Ndjson,
                    _ => RowFormat::Csv,
                });
            let body = if file.as_os_str() == "-" {
                let mut body = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)?;
                body
            } else {
                std::fs::read(&file)
                    .map_err(|e| Error::Client(format!("cannot read {}: {e}", file.display())))?
            };
            let _ = writeln!(progress, "uploading {} bytes to {id}…", body.len());
            let content_type = match format {
                RowFormat::Csv => "text/csv",
                RowFormat::Ndjson => "application/x-ndjson",
            };
            let api = server.client()?;
            let report: Value = api
                .send_bytes(
                    Method::POST,
                    &format!("v1/campaigns/{id}/callees"),
                    content_type,
                    body,
                )
                .await?;
            json_line(out, &report)
        }
        CampaignCommand::Status { id, follow, server } => {
            let api = server.client()?;
            loop {
                let campaign: Value = api
                    .send_bytes(Method::GET, &format!("v1/campaigns/{id}"), "", Vec::new())
                    .await?;
                let calls = campaign["calls"].as_object().cloned().unwrap_or_default();
                let waiting: u64 = ["queued", "dialing", "ringing", "in-progress"]
                    .iter()
                    .filter_map(|s| calls.get(*s).and_then(Value::as_u64))
                    .sum();
                if !follow || waiting == 0 {
                    return json_line(out, &campaign);
                }
                let counts: Vec<String> = calls.iter().map(|(k, v)| format!("{k} {v}")).collect();
                let _ = writeln!(
                    progress,
                    "{id}: {} accepted, {} skipped; {}",
                    campaign["accepted"],
                    campaign["skipped"],
                    counts.join(", ")
                );
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        CampaignCommand::Cancel { id, server } => {
            let api = server.client()?;
            let campaign: Value = api
                .send_bytes(
                    Method::DELETE,
                    &format!("v1/campaigns/{id}"),
                    "",
                    Vec::new(),
                )
                .await?;
            json_line(out, &campaign)
        }
    }
}
