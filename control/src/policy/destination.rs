//! Destinations as digits: which numbers are premium-rate, international or listed by prefix.

/// Premium-rate number ranges by default, as E.164 prefixes (country code first). A starting
/// list for the countries in `docs/policy.md`; operators replace it with
/// `policy.premium_prefixes` for their own market.
pub const DEFAULT_PREMIUM_PREFIXES: &[&str] = &[
    "1900", // NANP 900
    "1976", // NANP 976 (legacy pay-per-call)
    "449",  // UK 09 premium-rate services
    "4487", // UK 087 revenue-sharing
    "3389", // France 089 (08 9x) premium
    "3381", // France 081 shared-cost
    "49900", "49137", // Germany 0900 premium, 0137 televoting
    "34803", "34806", "34807", "34905", // Spain
    "39899", "39892", // Italy
    "61190", // Australia 190
    "4190",  // Switzerland 090x
    "43900", "43930", // Austria
];

/// The digits of an E.164 number (`+15550100` → `15550100`); `None` for anything else (a SIP
/// URI, whose destination rules are the outbound-connection policy's).
pub fn e164_digits(to: &str) -> Option<&str> {
    let digits = to.strip_prefix('+')?;
    (!digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some(digits)
}

/// The longest of `prefixes` that `digits` starts with (a leading `+` in a prefix is ignored).
pub(crate) fn matching<'a>(digits: &str, prefixes: &'a [String]) -> Option<&'a str> {
    prefixes
        .iter()
        .map(|p| p.trim_start_matches('+'))
        .filter(|p| !p.is_empty() && digits.starts_with(p))
        .max_by_key(|p| p.len())
}

/// Checks a prefix list as configuration: digits only, at most 15, an optional leading `+`.
pub(crate) fn check_prefixes(prefixes: &[String]) -> Result<(), String> {
    for prefix in prefixes {
        let digits = prefix.strip_prefix('+').unwrap_or(prefix);
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{prefix:?} is not a number prefix; write digits with the country code first, e.g. \"+1900\""
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_e164_numbers_have_digits() {
        assert_eq!(e164_digits("+15550100"), Some("15550100"));
        for other in [
            "15550100",
            "+",
            "+1 555",
            "sip:+1555@host",
            "+1234567890123456",
        ] {
            assert_eq!(e164_digits(other), None, "{other:?}");
        }
    }

    #[test]
    fn the_longest_prefix_matches() {
        let list = vec!["+33".to_owned(), "3389".to_owned(), "".to_owned()];
        assert_eq!(matching("33899123456", &list), Some("3389"));
        assert_eq!(matching("33123", &list), Some("33"));
        assert_eq!(matching("44123", &list), None);
        assert!(
            check_prefixes(&list).is_err(),
            "an empty prefix matches everything"
        );
        assert!(check_prefixes(&["+1900".to_owned()]).is_ok());
    }
}
