//! `outdial tenant ...`, `outdial key ...` and `outdial cdr export`: operator commands that work
//! directly on the store in the data directory (a running server sees their effect at once).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::Config;
use crate::error::Error;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    CdrQuery, CdrStore as _, NewApiKey, NewTenant, Scope, SigningStore as _, TenantStore as _,
};

/// Where the store is: the configuration's `store.data_dir`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// TOML configuration file whose `store.data_dir` holds the store; defaults if omitted.
    #[arg(long, short, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

/// `outdial tenant ...`.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; prints it and its webhook signing secret (shown once).
    Add {
        /// Its id: 1 to 64 of a-z, 0-9, - and _.
        id: String,
        /// Its trunk: a [[trunk]] name, or `sip:host:port` its E.164 numbers are sent to
        /// (default: the default trunk).
        #[arg(long, value_name = "NAME|URI")]
        trunk: Option<String>,
        /// Its default caller ID: a sip: URI or an E.164 number (default: sip.from).
        #[arg(long, value_name = "URI|NUMBER")]
        caller_id: Option<String>,
        /// Most calls it may have live at once.
        #[arg(long, value_name = "N")]
        max_concurrent: Option<u32>,
    },
    /// List tenants.
    List,
    /// Disable a tenant: its keys stop working at once.
    Disable {
        /// The tenant's id.
        id: String,
    },
    /// Enable a disabled tenant again.
    Enable {
        /// The tenant's id.
        id: String,
    },
    /// Create or rotate the tenant's request signing secret; prints it (shown once). The
    /// old secret stops working at once.
    SigningSecret {
        /// The tenant's id.
        id: String,
    },
    /// Require (`on`) or stop requiring (`off`) signed requests from the tenant.
    RequireSigning {
        /// The tenant's id.
        id: String,
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

/// `outdial key ...`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key; prints the key (shown once) and its id.
    Create {
        /// The tenant it acts for.
        #[arg(long)]
        tenant: String,
        /// A scope: calls:create, calls:read or admin (repeatable; default: calls:create and
        /// calls:read).
        #[arg(long = "scope", value_name = "SCOPE", value_parser = parse_scope)]
        scopes: Vec<Scope>,
        /// A note (which system uses it).
        #[arg(long)]
        label: Option<String>,
    },
    /// List keys (never the keys themselves).
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key by its id (`key_...`): it stops working at once.
    Revoke {
        /// The key's id.
        id: String,
    },
}

/// `outdial cdr ...`.
#[derive(Debug, Subcommand)]
pub enum CdrCommand {
    /// Write the CDRs of attempts that ended in [from, to) to standard output.
    Export {
        /// Start (RFC 3339), inclusive.
        #[arg(long, value_parser = parse_time)]
        from: Option<OffsetDateTime>,
        /// End (RFC 3339), exclusive.
        #[arg(long, value_parser = parse_time)]
        to: Option<OffsetDateTime>,
        /// Only this tenant's (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CdrFormat::Csv)]
        format: CdrFormat,
    },
}

/// CDR export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CdrFormat {
    /// RFC 4180 CSV with a header line.
    Csv,
    /// One JSON object per line.
    Json,
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    Scope::parse(text)
        .ok_or_else(|| format!("{text:?} is not a scope; use calls:create, calls:read or admin"))
}

fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| format!("{text:?} is not an RFC 3339 time like 2026-12-01T00:00:00Z"))
}

/// Opens the store of the configuration `args` names.
pub fn open_store(args: &StoreArgs) -> Result<SqliteStore, Error> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    Ok(SqliteStore::open(&config.database_path())?)
}

/// Writes `value` as one line of JSON (every admin command's output).
pub(crate) fn json_line(out: &mut dyn Write, value: &impl serde::Serialize) -> Result<(), Error> {
    let text = serde_json::to_string(value)
        .map_err(|e| Error::Client(format!("cannot encode the answer: {e}")))?;
    writeln!(out, "{text}")?;
    Ok(())
}

/// Runs `outdial tenant ...`, printing JSON lines to `out`.
pub async fn tenant(
    store: &SqliteStore,
    command: TenantCommand,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let now = OffsetDateTime::now_utc();
    match command {
        TenantCommand::Add {
            id,
            trunk,
            caller_id,
            max_concurrent,
        } => {
            let new = NewTenant {
                id,
                trunk,
                caller_id,
                max_concurrent,
            };
            crate::api::admin::check_new_tenant(&new, None)?;
            let (tenant, secret) = store.add_tenant(new, now).await?;
            let mut value = serde_json::to_value(&tenant).unwrap_or_default();
            value["webhook_secret"] = serde_json::Value::String(secret);
            json_line(out, &value)
        }
        TenantCommand::List => {
            for tenant in store.list_tenants().await? {
                json_line(out, &tenant)?;
            }
            Ok(())
        }
        TenantCommand::Disable { id } => {
            json_line(out, &store.set_tenant_disabled(&id, true, now).await?)
        }
        TenantCommand::Enable { id } => {
            json_line(out, &store.set_tenant_disabled(&id, false, now).await?)
        }
        TenantCommand::SigningSecret { id } => {
            let secret = crate::signing::new_secret()?;
            store.set_signing_secret(&id, secret.clone(), now).await?;
            let settings = store.signing_settings(&id).await?;
            json_line(
                out,
                &serde_json::json!({
                    "tenant": id, "signing_secret": secret, "required": settings.required
                }),
            )
        }
        TenantCommand::RequireSigning { id, state } => {
            store.set_signing_required(&id, state == "on").await?;
            let settings = store.signing_settings(&id).await?;
            json_line(
                out,
                &serde_json::json!({
                    "tenant": id,
                    "required": settings.required,
                    "has_secret": settings.secret.is_some()
                }),
            )
        }
    }
}

/// Runs `outdial key ...`, printing JSON lines to `out`.
pub async fn key(
    store: &SqliteStore,
    command: KeyCommand,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let now = OffsetDateTime::now_utc();
    match command {
        KeyCommand::Create {
            tenant,
            mut scopes,
            label,
        } => {
            if scopes.is_empty() {
                scopes = vec![Scope::CallsCreate, Scope::CallsRead];
            }
            let new = NewApiKey {
                tenant,
                scopes,
                label,
            };
            let (info, key) = store.create_key(new, now).await?;
            let mut value = serde_json::to_value(&info).unwrap_or_default();
            value["key"] = serde_json::Value::String(key);
            json_line(out, &value)
        }
        KeyCommand::List { tenant } => {
            for key in store.list_keys(tenant).await? {
                json_line(out, &key)?;
            }
            Ok(())
        }
        KeyCommand::Revoke { id } => json_line(out, &store.revoke_key(&id, now).await?),
    }
}

/// Runs `outdial cdr export`: every page of the range, to `out`.
pub async fn cdr(
    store: &SqliteStore,
    command: CdrCommand,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let CdrCommand::Export {
        from,
        to,
        tenant,
        format,
    } = command;
    let mut query = CdrQuery {
        from,
        to,
        cursor: None,
        limit: 1000,
    };
    if format == CdrFormat::Csv {
        write!(out, "{}\r\n", crate::store::Cdr::CSV_HEADER)?;
    }
    loop {
        let page = store.cdrs(tenant.clone(), query.clone()).await?;
        for cdr in &page.cdrs {
            match format {
                CdrFormat::Csv => write!(out, "{}\r\n", cdr.csv_row())?,
                CdrFormat::Json => json_line(out, cdr)?,
            }
        }
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CallStatus, Next};
    use crate::store::{AttemptEnd, CallStore as _, testing};

    async fn run_tenant(store: &SqliteStore, command: TenantCommand) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        tenant(store, command, &mut out)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        lines(&out)
    }

    fn lines(out: &[u8]) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_default())
            .collect()
    }

    #[tokio::test]
    async fn tenants_and_keys_from_the_command_line() {
        let (_dir, store) = testing::open_temp();
        let added = run_tenant(
            &store,
            TenantCommand::Add {
                id: "newco".to_owned(),
                trunk: Some("sip:192.0.2.1:5060".to_owned()),
                caller_id: Some("+15550100".to_owned()),
                max_concurrent: Some(5),
            },
        )
        .await;
        assert_eq!(added[0]["id"], "newco");
        assert!(
            added[0]["webhook_secret"]
                .as_str()
                .is_some_and(|s| s.starts_with("whsec_"))
        );
        let bad = TenantCommand::Add {
            id: "x".to_owned(),
            trunk: Some("http://nope".to_owned()),
            caller_id: None,
            max_concurrent: None,
        };
        assert!(tenant(&store, bad, &mut Vec::new()).await.is_err());

        let mut out = Vec::new();
        let create = KeyCommand::Create {
            tenant: "newco".to_owned(),
            scopes: Vec::new(),
            label: None,
        };
        key(&store, create, &mut out)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let created = lines(&out);
        let secret = created[0]["key"].as_str().unwrap_or_default().to_owned();
        assert_eq!(
            created[0]["scopes"],
            serde_json::json!(["calls:create", "calls:read"])
        );
        assert!(store.authenticate(&secret).await.ok().flatten().is_some());
        let disabled = run_tenant(
            &store,
            TenantCommand::Disable {
                id: "newco".to_owned(),
            },
        )
        .await;
        assert_eq!(disabled[0]["disabled"], true);
        assert_eq!(store.authenticate(&secret).await.ok(), Some(None));
        run_tenant(
            &store,
            TenantCommand::Enable {
                id: "newco".to_owned(),
            },
        )
        .await;
        let id = created[0]["id"].as_str().unwrap_or_default().to_owned();
        key(&store, KeyCommand::Revoke { id }, &mut Vec::new())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.authenticate(&secret).await.ok(), Some(None));
        let listed = run_tenant(&store, TenantCommand::List).await;
        assert_eq!(listed.len(), 3);
        let require = |state: &str| TenantCommand::RequireSigning {
            id: "newco".to_owned(),
            state: state.to_owned(),
        };
        assert!(
            tenant(&store, require("on"), &mut Vec::new())
                .await
                .is_err(),
            "no secret yet"
        );
        let signing = TenantCommand::SigningSecret {
            id: "newco".to_owned(),
        };
        let made = run_tenant(&store, signing).await;
        let made = made[0]["signing_secret"].as_str().unwrap_or_default();
        assert!(made.starts_with("odsig_"), "{made}");
        let on = run_tenant(&store, require("on")).await;
        assert_eq!(on[0]["required"], true);
        let settings = store.signing_settings("newco").await.unwrap_or_default();
        assert_eq!(settings.secret.as_deref(), Some(made));
        assert!(settings.required);
        assert!(listed.iter().all(|t| t.get("webhook_secret").is_none()));
    }

    #[tokio::test]
    async fn cdr_export_writes_every_page_as_csv_or_json() {
        let (_dir, store) = testing::open_temp();
        for n in 0..3 {
            let call = testing::insert(store.as_ref(), testing::new_call("acme", n)).await;
            testing::claim(store.as_ref(), "n", &call.id).await;
            let end = AttemptEnd {
                media: None,
                status: CallStatus::NoAnswer,
                ended_at: OffsetDateTime::now_utc(),
                sip_status: Some(480),
                disposition: None,
                reason: "no answer, \"really\"".to_owned(),
                core: None,
                sip_call_id: None,
                result: None,
            };
            store
                .finish_attempt(
                    &call.id,
                    1,
                    end,
                    Next::Final {
                        status: CallStatus::NoAnswer,
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let export = |format| CdrCommand::Export {
            from: None,
            to: None,
            tenant: Some("acme".to_owned()),
            format,
        };
        let mut csv = Vec::new();
        cdr(&store, export(CdrFormat::Csv), &mut csv)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let csv = String::from_utf8_lossy(&csv);
        let rows: Vec<_> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(rows.len(), 4, "{csv}");
        assert!(rows[0].starts_with("call_id,attempt,tenant"));
        assert!(
            // The reason quoted, then the eight empty media columns (no media) and the two
            // empty machine detection columns.
            rows[1].ends_with(",480,\"no answer, \"\"really\"\"\",,,,,,,,,,"),
            "{}",
            rows[1]
        );
        let mut json = Vec::new();
        cdr(&store, export(CdrFormat::Json), &mut json)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let records = lines(&json);
        assert_eq!(records.len(), 3);
        assert_eq!(records[0]["disposition"], "no-answer");
    }
}
