//! Checks on the addresses of `MAIL FROM` and `RCPT TO` beyond what the command parser does:
//! lengths (RFC 5321 §4.5.3.1), the domain (RFC 5890 IDNA) and non-ASCII without `SMTPUTF8`
//! (RFC 6531 §3.3).

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressProblem {
    /// Local part over 64 octets, domain over 255, or the path over 256 (§4.5.3.1).
    TooLong,
    /// No `@`, an empty local part or an empty domain.
    Malformed,
    /// The domain is not a valid (internationalised) domain name.
    BadDomain,
    /// Non-ASCII characters while the `MAIL` command did not ask for `SMTPUTF8`.
    NeedsSmtputf8,
}

/// Checks one non-empty address `local@domain` (angle brackets already removed).
pub fn check(address: &str, smtputf8: bool) -> Result<(), AddressProblem> {
    if address.len() > 254 {
        return Err(AddressProblem::TooLong);
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(AddressProblem::Malformed);
    };
    if local.is_empty() || domain.is_empty() {
        return Err(AddressProblem::Malformed);
    }
    if local.len() > 64 || domain.len() > 255 {
        return Err(AddressProblem::TooLong);
    }
    if !address.is_ascii() && !smtputf8 {
        return Err(AddressProblem::NeedsSmtputf8);
    }
    if address.chars().any(char::is_control) {
        return Err(AddressProblem::Malformed);
    }
    check_domain(domain)
}

/// A domain must convert to ASCII under IDNA's strict rules (this refuses `xn---`, labels
/// over 63 octets, and characters a host name cannot hold).
fn check_domain(domain: &str) -> Result<(), AddressProblem> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let ascii = idna::domain_to_ascii_strict(domain).map_err(|_| AddressProblem::BadDomain)?;
    if ascii.is_empty()
        || ascii
            .split('.')
            .any(|label| label.is_empty() || label.len() > 63)
    {
        return Err(AddressProblem::BadDomain);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_and_international_addresses_pass() {
        assert_eq!(check("user@example.com", false), Ok(()));
        assert_eq!(check("reminders+acme@outdial.test", false), Ok(()));
        assert_eq!(check("josé@bücher.example", true), Ok(()));
        assert_eq!(check("a@xn--bcher-kva.example", false), Ok(()));
    }

    #[test]
    fn each_problem_has_its_answer() {
        assert_eq!(check("pepe", false), Err(AddressProblem::Malformed));
        assert_eq!(check("@example.com", false), Err(AddressProblem::Malformed));
        assert_eq!(check("a@xn---", false), Err(AddressProblem::BadDomain));
        assert_eq!(
            check("a@exa mple.com", false),
            Err(AddressProblem::BadDomain)
        );
        assert_eq!(check("a@b..c", false), Err(AddressProblem::BadDomain));
        assert_eq!(
            check("josé@example.com", false),
            Err(AddressProblem::NeedsSmtputf8)
        );
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(check(&long_local, false), Err(AddressProblem::TooLong));
        let long = format!("a@{}.com", "b".repeat(260));
        assert_eq!(check(&long, false), Err(AddressProblem::TooLong));
        let long_label = format!("a@{}.com", "b".repeat(64));
        assert_eq!(check(&long_label, false), Err(AddressProblem::BadDomain));
    }
}
