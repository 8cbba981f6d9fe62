//! VoiceXML builtin grammars (VoiceXML 2.0 Appendix P).
//!
//! Builtins are matched by code rather than compiled to rules: each type checks a whole key
//! (or word) sequence and says whether it is complete, could grow, is a prefix or is hopeless,
//! and computes the value Appendix P prescribes. DTMF keys are read here; spoken words by
//! [`super::voice`], whose phrases are those of each type's JSGF form (`jsgf/builtins.rs`).

use super::voice::{self, Read};
use super::{GrammarError, Mode, SemanticValue};

/// A builtin grammar type with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Builtin {
    /// `boolean`: DTMF `y` (default 1) is true, `n` (default 2) false; voice yes/no.
    Boolean { yes: String, no: String },
    /// `digits`: keys 0–9, `min..=max` of them.
    Digits { min: usize, max: Option<usize> },
    /// `number`: digits with `*` as the decimal point; value a number.
    Number,
    /// `currency`: digits with `*` as the decimal point; value `mm.nn` (no currency code can
    /// be keyed in, so none is given).
    Currency,
    /// `date`: eight keys `yyyymmdd`; value the same string.
    Date,
    /// `time`: four keys `hhmm`; value `hhmmx` with `x` = `h` (24-hour) or `?` (ambiguous).
    Time,
    /// `phone`: digits with `*` standing for an extension `x`.
    Phone,
}

/// How a builtin judges an input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BuiltinMatch {
    /// Complete; no longer input can match.
    Complete(SemanticValue),
    /// Complete; a longer input could match too.
    Extendable(SemanticValue),
    /// Not yet; more input could match.
    Prefix,
    /// No continuation can match.
    NoMatch,
}

impl Builtin {
    /// Parses `type?param=value;...` for `mode`.
    pub(crate) fn parse(spec: &str, mode: Mode) -> Result<Self, GrammarError> {
        let (name, params) = spec.split_once('?').unwrap_or((spec, ""));
        let mut pairs = Vec::new();
        for param in params.split(';').filter(|p| !p.trim().is_empty()) {
            let (key, value) = param
                .split_once('=')
                .ok_or_else(|| GrammarError::BadParameter(param.trim().to_owned()))?;
            pairs.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let number = |key: &str| -> Result<Option<usize>, GrammarError> {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| {
                    v.parse::<usize>()
                        .map_err(|_| GrammarError::BadParameter(format!("{key}={v}")))
                })
                .transpose()
        };
        let key = |key: &str, default: &str| -> Result<String, GrammarError> {
            match pairs.iter().find(|(k, _)| k == key) {
                None => Ok(default.to_owned()),
                Some((_, v)) if mode == Mode::Voice || is_key(v) => Ok(v.to_lowercase()),
                Some((_, v)) => Err(GrammarError::BadParameter(format!("{key}={v}"))),
            }
        };
        let name = name.trim().to_ascii_lowercase();
        let builtin = match name.as_str() {
            "boolean" => Self::Boolean {
                yes: key("y", "1")?,
                no: key("n", "2")?,
            },
            "digits" => {
                let length = number("length")?;
                let min = length.or(number("minlength")?).unwrap_or(1);
                let max = length.or(number("maxlength")?);
                if max.is_some_and(|max| max < min || max == 0) {
                    return Err(GrammarError::BadParameter(params.to_owned()));
                }
                Self::Digits { min, max }
            }
            "number" => Self::Number,
            "currency" => Self::Currency,
            "date" => Self::Date,
            "time" => Self::Time,
            "phone" => Self::Phone,
            _ => return Err(GrammarError::UnknownBuiltin(spec.to_owned())),
        };
        Ok(builtin)
    }

    /// Judges `tokens` (lower-cased keys or words) in `mode`.
    pub(crate) fn judge(&self, tokens: &[&str], mode: Mode) -> BuiltinMatch {
        match mode {
            Mode::Dtmf => {
                let keys: Option<String> = tokens
                    .iter()
                    .map(|t| {
                        let mut chars = t.chars();
                        match (chars.next(), chars.next()) {
                            (Some(c), None) if is_key_char(c) => Some(c),
                            _ => None,
                        }
                    })
                    .collect();
                match keys {
                    Some(keys) => self.judge_keys(&keys),
                    None => BuiltinMatch::NoMatch,
                }
            }
            Mode::Voice => self.judge_words(tokens),
        }
    }

    fn judge_keys(&self, keys: &str) -> BuiltinMatch {
        use BuiltinMatch::{Complete, Extendable, NoMatch, Prefix};
        let len = keys.len();
        let all_digits = keys.bytes().all(|b| b.is_ascii_digit());
        match self {
            Self::Boolean { yes, no } => match keys {
                "" => Prefix,
                k if k == yes => Complete(SemanticValue::Bool(true)),
                k if k == no => Complete(SemanticValue::Bool(false)),
                k if yes.starts_with(k) || no.starts_with(k) => Prefix,
                _ => NoMatch,
            },
            Self::Digits { min, max } => {
                if !all_digits || max.is_some_and(|m| len > m) {
                    NoMatch
                } else if len < *min.max(&1) {
                    Prefix
                } else if *max == Some(len) {
                    Complete(SemanticValue::String(keys.to_owned()))
                } else {
                    Extendable(SemanticValue::String(keys.to_owned()))
                }
            }
            Self::Number | Self::Currency => {
                let Some(decimal) = decimal(keys) else {
                    return NoMatch;
                };
                match decimal {
                    Decimal::Partial => Prefix,
                    Decimal::Whole(text) => {
                        let value = if matches!(self, Self::Number) {
                            text.parse::<f64>().map_or_else(
                                |_| SemanticValue::String(text.clone()),
                                SemanticValue::Number,
                            )
                        } else {
                            SemanticValue::String(text)
                        };
                        Extendable(value)
                    }
                }
            }
            Self::Date => {
                if !all_digits || len > 8 {
                    return NoMatch;
                }
                let month = keys.get(4..6).and_then(|m| m.parse::<u32>().ok());
                let day = keys.get(6..8).and_then(|d| d.parse::<u32>().ok());
                if month.is_some_and(|m| !(1..=12).contains(&m))
                    || day.is_some_and(|d| !(1..=31).contains(&d))
                {
                    return NoMatch;
                }
                if len < 8 {
                    Prefix
                } else {
                    Complete(SemanticValue::String(keys.to_owned()))
                }
            }
            Self::Time => {
                if !all_digits || len > 4 {
                    return NoMatch;
                }
                let hour = keys.get(0..2).and_then(|h| h.parse::<u32>().ok());
                let minute = keys.get(2..4).and_then(|m| m.parse::<u32>().ok());
                if hour.is_some_and(|h| h > 24) || minute.is_some_and(|m| m > 59) {
                    return NoMatch;
                }
                match hour {
                    Some(h) if len == 4 => {
                        let suffix = if h == 0 || h > 12 { 'h' } else { '?' };
                        Complete(SemanticValue::String(format!("{keys}{suffix}")))
                    }
                    _ => Prefix,
                }
            }
            Self::Phone => {
                let (number, extension) = keys.split_once('*').unwrap_or((keys, ""));
                let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
                if !digits(number) || !digits(extension) || number.is_empty() && len > 0 {
                    return NoMatch;
                }
                if number.is_empty() || keys.ends_with('*') {
                    return Prefix;
                }
                let value = if keys.contains('*') {
                    format!("{number}x{extension}")
                } else {
                    number.to_owned()
                };
                Extendable(SemanticValue::String(value))
            }
        }
    }

    fn judge_words(&self, words: &[&str]) -> BuiltinMatch {
        let read = match self {
            Self::Boolean { .. } => voice::boolean(words),
            Self::Digits { min, max } => voice::digits(words, *min, *max),
            Self::Number => voice::number(words),
            Self::Currency => voice::currency(words),
            Self::Date => voice::date(words),
            Self::Time => voice::time(words),
            Self::Phone => voice::phone(words),
        };
        match read {
            Read::Value { value, more: false } => BuiltinMatch::Complete(value),
            Read::Value { value, more: true } => BuiltinMatch::Extendable(value),
            Read::Prefix => BuiltinMatch::Prefix,
            Read::No => BuiltinMatch::NoMatch,
        }
    }
}

/// A `*`-decimal key string read as a number.
enum Decimal {
    /// Not a number yet (empty, or ends in the decimal point).
    Partial,
    /// A number, written with `.`.
    Whole(String),
}

fn decimal(keys: &str) -> Option<Decimal> {
    let (whole, fraction) = match keys.split_once('*') {
        Some((w, f)) => (w, Some(f)),
        None => (keys, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !fraction.is_none_or(digits) {
        return None;
    }
    match fraction {
        None if whole.is_empty() => Some(Decimal::Partial),
        None => Some(Decimal::Whole(whole.to_owned())),
        Some("") => Some(Decimal::Partial),
        Some(f) => {
            let whole = if whole.is_empty() { "0" } else { whole };
            Some(Decimal::Whole(format!("{whole}.{f}")))
        }
    }
}

fn is_key_char(c: char) -> bool {
    matches!(c, '0'..='9' | '*' | '#' | 'a'..='d' | 'A'..='D')
}

fn is_key(value: &str) -> bool {
    let mut chars = value.chars();
    matches!((chars.next(), chars.next()), (Some(c), None) if is_key_char(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use BuiltinMatch::{Complete, Extendable, NoMatch, Prefix};

    fn keys(b: &Builtin, input: &str) -> BuiltinMatch {
        let tokens: Vec<String> = input.chars().map(String::from).collect();
        let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
        b.judge(&tokens, Mode::Dtmf)
    }

    fn s(v: &str) -> SemanticValue {
        SemanticValue::String(v.to_owned())
    }

    #[test]
    fn digits_lengths() {
        let b = Builtin::parse("digits?minlength=2;maxlength=3", Mode::Dtmf).unwrap();
        assert_eq!(keys(&b, "1"), Prefix);
        assert_eq!(keys(&b, "12"), Extendable(s("12")));
        assert_eq!(keys(&b, "123"), Complete(s("123")));
        assert_eq!(keys(&b, "1234"), NoMatch);
        assert_eq!(keys(&b, "1*"), NoMatch);
        let exact = Builtin::parse("digits?length=4", Mode::Dtmf).unwrap();
        assert_eq!(
            exact,
            Builtin::Digits {
                min: 4,
                max: Some(4)
            }
        );
        assert!(Builtin::parse("digits?maxlength=x", Mode::Dtmf).is_err());
        assert!(Builtin::parse("digits?minlength=3;maxlength=2", Mode::Dtmf).is_err());
        assert!(Builtin::parse("colour", Mode::Dtmf).is_err());
    }

    #[test]
    fn boolean_keys_are_configurable() {
        let b = Builtin::parse("boolean?y=7;n=9", Mode::Dtmf).unwrap();
        assert_eq!(keys(&b, "7"), Complete(SemanticValue::Bool(true)));
        assert_eq!(keys(&b, "9"), Complete(SemanticValue::Bool(false)));
        assert_eq!(keys(&b, "1"), NoMatch);
        assert!(Builtin::parse("boolean?y=77", Mode::Dtmf).is_err());
    }

    #[test]
    fn number_and_currency_use_star_as_decimal_point() {
        let n = Builtin::parse("number", Mode::Dtmf).unwrap();
        assert_eq!(keys(&n, "12*5"), Extendable(SemanticValue::Number(12.5)));
        assert_eq!(keys(&n, "12*"), Prefix);
        assert_eq!(keys(&n, "1*2*3"), NoMatch);
        let c = Builtin::parse("currency", Mode::Dtmf).unwrap();
        assert_eq!(keys(&c, "1250*75"), Extendable(s("1250.75")));
        assert_eq!(keys(&c, "#"), NoMatch);
    }

    #[test]
    fn date_time_phone() {
        let d = Builtin::parse("date", Mode::Dtmf).unwrap();
        assert_eq!(keys(&d, "2024"), Prefix);
        assert_eq!(keys(&d, "20240229"), Complete(s("20240229")));
        assert_eq!(keys(&d, "20241301"), NoMatch);
        let t = Builtin::parse("time", Mode::Dtmf).unwrap();
        assert_eq!(keys(&t, "1430"), Complete(s("1430h")));
        assert_eq!(keys(&t, "0230"), Complete(s("0230?")));
        assert_eq!(keys(&t, "0290"), NoMatch);
        let p = Builtin::parse("phone", Mode::Dtmf).unwrap();
        assert_eq!(keys(&p, "5551234*12"), Extendable(s("5551234x12")));
        assert_eq!(keys(&p, "5551234*"), Prefix);
        assert_eq!(keys(&p, "*1"), NoMatch);
    }

    #[test]
    fn voice_forms() {
        let b = Builtin::parse("boolean", Mode::Voice).unwrap();
        assert_eq!(
            b.judge(&["yes"], Mode::Voice),
            Complete(SemanticValue::Bool(true))
        );
        assert_eq!(b.judge(&["maybe"], Mode::Voice), NoMatch);
        let d = Builtin::parse("digits?length=2", Mode::Voice).unwrap();
        assert_eq!(d.judge(&["four", "oh"], Mode::Voice), Complete(s("40")));
        let date = Builtin::parse("date", Mode::Voice).unwrap();
        assert_eq!(date.judge(&["today"], Mode::Voice), NoMatch);
        assert_eq!(
            date.judge(&["may", "fifth"], Mode::Voice),
            Extendable(s("????0505"))
        );
        let time = Builtin::parse("time", Mode::Voice).unwrap();
        assert_eq!(
            time.judge(&["three", "thirty", "p", "m"], Mode::Voice),
            Complete(s("0330p"))
        );
        let number = Builtin::parse("number", Mode::Voice).unwrap();
        assert_eq!(number.judge(&["minus"], Mode::Voice), Prefix);
    }
}
