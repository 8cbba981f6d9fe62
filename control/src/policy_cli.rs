//! `outdial policy ...` and `outdial callee ...`: the requester's and the callee's rules
//! (`docs/policy.md`), set directly in the store of the data directory, as `outdial tenant`
//! does. A running server applies them to the next request and the next release.

use std::io::Write;

use clap::Subcommand;
use time::OffsetDateTime;

use crate::admin_cli::json_line;
use crate::error::{Error, RequestError};
use crate::intake::{FieldError, Rule};
use crate::policy::{CalleeRecord, RequesterPolicy};
use crate::store::sqlite::SqliteStore;
use crate::store::{OptOutScope, PolicyStore as _};

/// `outdial policy ...`: a tenant's own rules.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print a tenant's policy as JSON (the defaults when none is set).
    Show {
        /// The tenant's id.
        tenant: String,
    },
    /// Replace a tenant's policy with JSON (fields left out take their defaults), e.g.
    /// '{"calling_hours": ["mon-fri 09:00-19:00"], "international": true}'.
    Set {
        /// The tenant's id.
        tenant: String,
        /// The policy, as JSON.
        json: String,
    },
}

/// `outdial callee ...`: callee records, kept on the callee's behalf.
#[derive(Debug, Subcommand)]
pub enum CalleeCommand {
    /// Print a callee's record as JSON.
    Show {
        /// The callee as requests write `to` (+15550100, or a sip: URI).
        number: String,
    },
    /// Replace a callee's record with JSON, e.g.
    /// '{"time_zone": "Europe/Paris", "quiet_hours": ["21:00-08:00"], "max_calls": 3}'.
    Set {
        /// The callee as requests write `to`.
        number: String,
        /// The record, as JSON.
        json: String,
    },
    /// Delete a callee's record.
    Delete {
        /// The callee as requests write `to`.
        number: String,
    },
    /// Record that the callee opted out of one tenant, or of every tenant with `--all`.
    OptOut {
        /// The callee as requests write `to`.
        number: String,
        /// The tenant they opted out of.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        tenant: Option<String>,
        /// Every tenant (do-not-call).
        #[arg(long)]
        all: bool,
    },
    /// Lift an opt-out (of one tenant, or the do-not-call with `--all`).
    OptIn {
        /// The callee as requests write `to`.
        number: String,
        /// The tenant the opt-out was for.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        tenant: Option<String>,
        /// The do-not-call for every tenant.
        #[arg(long)]
        all: bool,
    },
}

fn parse<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, Error> {
    serde_json::from_str(json).map_err(|e| {
        RequestError::Field(FieldError::new(
            "",
            Rule::Object,
            format!("is not valid JSON here: {e}"),
        ))
        .into()
    })
}

fn invalid(field: &str, problem: String) -> Error {
    RequestError::Field(FieldError::new(field, Rule::Range, problem)).into()
}

/// Runs `outdial policy ...`.
pub async fn policy(
    store: &SqliteStore,
    command: PolicyCommand,
    out: &mut dyn Write,
) -> Result<(), Error> {
    match command {
        PolicyCommand::Show { tenant } => json_line(out, &store.tenant_policy(&tenant).await?),
        PolicyCommand::Set { tenant, json } => {
            let policy: RequesterPolicy = parse(&json)?;
            policy.check().map_err(|e| invalid(e.field, e.problem))?;
            store
                .set_tenant_policy(&tenant, policy.clone(), OffsetDateTime::now_utc())
                .await?;
            json_line(out, &policy)
        }
    }
}

/// Runs `outdial callee ...`.
pub async fn callee(
    store: &SqliteStore,
    command: CalleeCommand,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let now = OffsetDateTime::now_utc();
    let scope = |tenant: Option<String>| tenant.map_or(OptOutScope::All, OptOutScope::Tenant);
    match command {
        CalleeCommand::Show { number } => match store.callee(&number).await? {
            Some(record) => json_line(out, &record),
            None => Err(Error::Refused(crate::store::StoreError::NotFound {
                what: "callee record",
                id: number,
            })),
        },
        CalleeCommand::Set { number, json } => {
            let record: CalleeRecord = parse(&json)?;
            record.check().map_err(|problem| invalid("", problem))?;
            store.put_callee(&number, record.clone(), now).await?;
            json_line(out, &record)
        }
        CalleeCommand::Delete { number } => {
            let deleted = store.delete_callee(&number).await?;
            json_line(out, &serde_json::json!({ "deleted": deleted }))
        }
        CalleeCommand::OptOut { number, tenant, .. } => json_line(
            out,
            &store.set_opt_out(&number, scope(tenant), true, now).await?,
        ),
        CalleeCommand::OptIn { number, tenant, .. } => json_line(
            out,
            &store
                .set_opt_out(&number, scope(tenant), false, now)
                .await?,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TenantStore as _;

    #[tokio::test]
    async fn commands_set_and_show_what_the_engine_reads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("outdial.db")).expect("store");
        store
            .ensure_dev_tenant(dir.path())
            .await
            .expect("dev tenant");
        let run = async |command| {
            let mut out = Vec::new();
            policy(&store, command, &mut out)
                .await
                .map(|()| String::from_utf8(out).unwrap_or_default())
        };
        let set = PolicyCommand::Set {
            tenant: "dev".to_owned(),
            json: r#"{"international": true, "calling_hours": ["mon-fri 09:00-17:00"]}"#.to_owned(),
        };
        assert!(
            run(set)
                .await
                .is_ok_and(|o| o.contains("mon,tue,wed,thu,fri 09:00-17:00"))
        );
        let shown = run(PolicyCommand::Show {
            tenant: "dev".to_owned(),
        })
        .await
        .expect("show");
        assert!(shown.contains("\"international\":true"), "{shown}");
        let bad = PolicyCommand::Set {
            tenant: "dev".to_owned(),
            json: r#"{"burst": 0}"#.to_owned(),
        };
        assert!(run(bad).await.is_err());
        let nobody = PolicyCommand::Set {
            tenant: "nobody".to_owned(),
            json: "{}".to_owned(),
        };
        assert!(run(nobody).await.is_err());

        let mut out = Vec::new();
        let opt_out = CalleeCommand::OptOut {
            number: "+15550100".to_owned(),
            tenant: None,
            all: true,
        };
        callee(&store, opt_out, &mut out).await.expect("opt out");
        let record = store
            .callee("+15550100")
            .await
            .expect("read")
            .expect("record");
        assert!(record.opt_out.all);
        let opt_in = CalleeCommand::OptIn {
            number: "+15550100".to_owned(),
            tenant: None,
            all: true,
        };
        callee(&store, opt_in, &mut out).await.expect("opt in");
        assert!(
            !store
                .callee("+15550100")
                .await
                .expect("read")
                .expect("record")
                .opt_out
                .all
        );
    }
}
