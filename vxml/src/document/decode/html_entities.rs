//! The HTML 4.01 character entities that wild VoiceXML documents use without declaring them
//! (HTML 4.01 §24.2–24.4; the VoiceXML DTD does not define them, editors wrote them anyway).
//!
//! Covered: the whole ISO 8859-1 set (`&nbsp;` … `&yuml;`, U+00A0–U+00FF) and the
//! typographic characters of the "special" and "symbol" sets that appear in prompt text
//! (quotes, dashes, ellipsis, euro, trade mark, arrows). Greek letters and mathematical
//! symbols are not: a reference to one is kept as text, with a warning.

/// Names of U+00A0 to U+00FF, in code point order (HTML 4.01 §24.2).
const LATIN_1: [&str; 96] = [
    "nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect", "uml", "copy", "ordf",
    "laquo", "not", "shy", "reg", "macr", "deg", "plusmn", "sup2", "sup3", "acute", "micro",
    "para", "middot", "cedil", "sup1", "ordm", "raquo", "frac14", "frac12", "frac34", "iquest",
    "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring", "AElig", "Ccedil", "Egrave", "Eacute",
    "Ecirc", "Euml", "Igrave", "Iacute", "Icirc", "Iuml", "ETH", "Ntilde", "Ograve", "Oacute",
    "Ocirc", "Otilde", "Ouml", "times", "Oslash", "Ugrave", "Uacute", "Ucirc", "Uuml", "Yacute",
    "THORN", "szlig", "agrave", "aacute", "acirc", "atilde", "auml", "aring", "aelig", "ccedil",
    "egrave", "eacute", "ecirc", "euml", "igrave", "iacute", "icirc", "iuml", "eth", "ntilde",
    "ograve", "oacute", "ocirc", "otilde", "ouml", "divide", "oslash", "ugrave", "uacute", "ucirc",
    "uuml", "yacute", "thorn", "yuml",
];

/// Typographic characters outside Latin-1 (HTML 4.01 §24.3 and §24.4, a selection).
const TYPOGRAPHIC: [(&str, char); 36] = [
    ("OElig", '\u{152}'),
    ("oelig", '\u{153}'),
    ("Scaron", '\u{160}'),
    ("scaron", '\u{161}'),
    ("Yuml", '\u{178}'),
    ("fnof", '\u{192}'),
    ("circ", '\u{2c6}'),
    ("tilde", '\u{2dc}'),
    ("ensp", '\u{2002}'),
    ("emsp", '\u{2003}'),
    ("thinsp", '\u{2009}'),
    ("zwnj", '\u{200c}'),
    ("zwj", '\u{200d}'),
    ("lrm", '\u{200e}'),
    ("rlm", '\u{200f}'),
    ("ndash", '\u{2013}'),
    ("mdash", '\u{2014}'),
    ("lsquo", '\u{2018}'),
    ("rsquo", '\u{2019}'),
    ("sbquo", '\u{201a}'),
    ("ldquo", '\u{201c}'),
    ("rdquo", '\u{201d}'),
    ("bdquo", '\u{201e}'),
    ("dagger", '\u{2020}'),
    ("Dagger", '\u{2021}'),
    ("bull", '\u{2022}'),
    ("hellip", '\u{2026}'),
    ("permil", '\u{2030}'),
    ("prime", '\u{2032}'),
    ("Prime", '\u{2033}'),
    ("lsaquo", '\u{2039}'),
    ("rsaquo", '\u{203a}'),
    ("euro", '\u{20ac}'),
    ("trade", '\u{2122}'),
    ("larr", '\u{2190}'),
    ("rarr", '\u{2192}'),
];

/// The character an HTML entity name stands for (names are case-sensitive).
pub(super) fn lookup(name: &str) -> Option<char> {
    if let Some(index) = LATIN_1.iter().position(|n| *n == name) {
        return char::from_u32(0xa0 + u32::try_from(index).ok()?);
    }
    TYPOGRAPHIC
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin_1_names_sit_at_their_code_points() {
        assert_eq!(lookup("nbsp"), Some('\u{a0}'));
        assert_eq!(lookup("copy"), Some('\u{a9}'));
        assert_eq!(lookup("shy"), Some('\u{ad}'));
        assert_eq!(lookup("frac34"), Some('\u{be}'));
        assert_eq!(lookup("Agrave"), Some('\u{c0}'));
        assert_eq!(lookup("times"), Some('\u{d7}'));
        assert_eq!(lookup("szlig"), Some('\u{df}'));
        assert_eq!(lookup("eacute"), Some('\u{e9}'));
        assert_eq!(lookup("divide"), Some('\u{f7}'));
        assert_eq!(lookup("yuml"), Some('\u{ff}'));
    }

    #[test]
    fn names_are_case_sensitive_and_unique() {
        assert_eq!(lookup("Eacute"), Some('\u{c9}'));
        assert_eq!(lookup("EACUTE"), None);
        assert_eq!(lookup("Yuml"), Some('\u{178}'));
        assert_eq!(lookup("alpha"), None);
        let mut names: Vec<&str> = LATIN_1.to_vec();
        names.extend(TYPOGRAPHIC.iter().map(|(n, _)| *n));
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "duplicate entity name");
    }
}
