//! Recipient addresses: `tenant@domain`, or `application+tenant@domain` to name one of the
//! tenant's configured applications.

use super::reply::refusal;
use super::settings::is_name;
use crate::smtp::Reply;

/// What a recipient address selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The tenant the calls belong to.
    pub tenant: String,
    /// The named application, if the address has `name+` before the tenant.
    pub application: Option<String>,
}

/// Reads `address` (a forward-path without angle brackets). `domains` empty accepts any
/// domain. Local parts compare without case (`Acme` is tenant `acme`).
pub fn parse(address: &str, domains: &[String]) -> Result<Recipient, Reply> {
    let bad_syntax = || {
        refusal(
            553,
            (5, 1, 3),
            "address",
            &format!(
                "{address:?} is not an Outdial address; write tenant@domain or application+tenant@domain (a-z, 0-9, - and _)"
            ),
        )
    };
    let (local, domain) = address.rsplit_once('@').ok_or_else(bad_syntax)?;
    let domain = domain.to_ascii_lowercase();
    if !domains.is_empty() && !domains.contains(&domain) {
        return Err(refusal(
            550,
            (5, 1, 2),
            "domain",
            &format!(
                "this server takes call requests at {} only, not {domain:?}",
                domains.join(", ")
            ),
        ));
    }
    let local = local.to_ascii_lowercase();
    let (application, tenant) = match local.split_once('+') {
        Some((application, tenant)) => (Some(application.to_owned()), tenant.to_owned()),
        None => (None, local),
    };
    if !is_name(&tenant) || application.as_deref().is_some_and(|a| !is_name(a)) {
        return Err(bad_syntax());
    }
    Ok(Recipient {
        tenant,
        application,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(address: &str, domains: &[&str]) -> Result<Recipient, (u16, (u8, u16, u16))> {
        let domains: Vec<String> = domains.iter().map(|d| (*d).to_owned()).collect();
        parse(address, &domains).map_err(|r| (r.code, r.enhanced))
    }

    #[test]
    fn tenant_and_application_are_read_without_case() {
        assert_eq!(
            code("Acme@Calls.Example", &["calls.example"]),
            Ok(Recipient {
                tenant: "acme".into(),
                application: None
            })
        );
        assert_eq!(
            code("reminders+acme@x", &[]),
            Ok(Recipient {
                tenant: "acme".into(),
                application: Some("reminders".into())
            })
        );
    }

    #[test]
    fn other_domains_and_bad_syntax_are_refused() {
        assert_eq!(
            code("acme@elsewhere", &["calls.example"]),
            Err((550, (5, 1, 2)))
        );
        for bad in [
            "acme",
            "@x",
            "+acme@x",
            "reminders+@x",
            "a+b+c@x",
            "\"a b\"@x",
            "acme.corp@x",
            &format!("{}@x", "a".repeat(65)),
        ] {
            assert_eq!(code(bad, &[]), Err((553, (5, 1, 3))), "{bad}");
        }
    }
}
