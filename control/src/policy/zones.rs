//! The time zone of a telephone number, from its country calling code, for callees without a
//! record that says where they are.
//!
//! An approximation, and documented as one (`docs/policy.md`): a country code names one zone
//! even where the country spans several (+1 is read as America/New_York, +7 as Moscow,
//! +61 as Sydney, +55 as São Paulo). A callee record's `time_zone` overrides it; the operator's
//! `policy.default_time_zone` covers codes not listed here and SIP URIs.

/// Country calling codes (longest first where they share digits) and the zone they stand for.
const ZONES: &[(&str, &str)] = &[
    ("1", "America/New_York"),
    ("7", "Europe/Moscow"),
    ("20", "Africa/Cairo"),
    ("27", "Africa/Johannesburg"),
    ("30", "Europe/Athens"),
    ("31", "Europe/Amsterdam"),
    ("32", "Europe/Brussels"),
    ("33", "Europe/Paris"),
    ("34", "Europe/Madrid"),
    ("351", "Europe/Lisbon"),
    ("352", "Europe/Luxembourg"),
    ("353", "Europe/Dublin"),
    ("354", "Atlantic/Reykjavik"),
    ("358", "Europe/Helsinki"),
    ("36", "Europe/Budapest"),
    ("39", "Europe/Rome"),
    ("40", "Europe/Bucharest"),
    ("41", "Europe/Zurich"),
    ("420", "Europe/Prague"),
    ("421", "Europe/Bratislava"),
    ("43", "Europe/Vienna"),
    ("44", "Europe/London"),
    ("45", "Europe/Copenhagen"),
    ("46", "Europe/Stockholm"),
    ("47", "Europe/Oslo"),
    ("48", "Europe/Warsaw"),
    ("49", "Europe/Berlin"),
    ("51", "America/Lima"),
    ("52", "America/Mexico_City"),
    ("54", "America/Argentina/Buenos_Aires"),
    ("55", "America/Sao_Paulo"),
    ("56", "America/Santiago"),
    ("57", "America/Bogota"),
    ("60", "Asia/Kuala_Lumpur"),
    ("61", "Australia/Sydney"),
    ("62", "Asia/Jakarta"),
    ("63", "Asia/Manila"),
    ("64", "Pacific/Auckland"),
    ("65", "Asia/Singapore"),
    ("66", "Asia/Bangkok"),
    ("81", "Asia/Tokyo"),
    ("82", "Asia/Seoul"),
    ("84", "Asia/Ho_Chi_Minh"),
    ("852", "Asia/Hong_Kong"),
    ("86", "Asia/Shanghai"),
    ("880", "Asia/Dhaka"),
    ("90", "Europe/Istanbul"),
    ("91", "Asia/Kolkata"),
    ("92", "Asia/Karachi"),
    ("234", "Africa/Lagos"),
    ("254", "Africa/Nairobi"),
    ("966", "Asia/Riyadh"),
    ("971", "Asia/Dubai"),
    ("972", "Asia/Jerusalem"),
];

/// The zone of the country whose calling code starts `digits` (E.164 digits, no `+`).
pub fn zone_for_number(digits: &str) -> Option<&'static str> {
    ZONES
        .iter()
        .filter(|(code, _)| digits.starts_with(code))
        .max_by_key(|(code, _)| code.len())
        .map(|&(_, zone)| zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_zone_is_in_the_bundled_database() {
        for (code, zone) in ZONES {
            assert!(
                jiff::tz::TimeZone::get(zone).is_ok(),
                "+{code}: {zone} is not a known zone"
            );
        }
    }

    #[test]
    fn the_longest_country_code_wins() {
        assert_eq!(zone_for_number("33123456789"), Some("Europe/Paris"));
        assert_eq!(zone_for_number("353123456"), Some("Europe/Dublin"));
        assert_eq!(zone_for_number("3512345678"), Some("Europe/Lisbon"));
        assert_eq!(zone_for_number("15550100"), Some("America/New_York"));
        assert_eq!(zone_for_number("999"), None);
    }
}
