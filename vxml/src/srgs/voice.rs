//! Spoken forms of the VoiceXML builtin grammars (VoiceXML 2.0 Appendix P), read from
//! recognised words.
//!
//! Each type is a small recursive-descent reader over lower-case words. The words it accepts
//! are exactly the sentences of the type's JSGF form (`jsgf/builtins.rs`), so what a
//! recogniser returns for that JSGF is read back here; typed input gets a few extra
//! spellings (`pm`, `am`). Values are Appendix P's:
//! - `boolean`: `true`/`false` (yes, yeah, yep, sure, okay, ok, true / no, nope, false);
//! - `digits`: the digit string (`zero`/`oh` … `nine`);
//! - `number`: a number; cardinals to 999,999,999, `minus`/`negative`, `point` and digits;
//! - `currency`: `UUUmm.nn` with the ISO 4217 code, or `mm.nn` when the currency is not said
//!   or is ambiguous (`dollars`, as Appendix P says); `twelve dollars fifty` → `12.50`,
//!   `five euros` → `EUR5.00`, `fifty cents` → `0.50`;
//! - `date`: `yyyymmdd`, `????` / `??` for a part not said; `march third` → `????0303`,
//!   `the fifth of may twenty twenty six` → `20260505`;
//! - `time`: `hhmmx`, `x` = `a`, `p`, `h` (24-hour) or `?` (ambiguous); `three thirty p m` →
//!   `0330p`, `fifteen hundred` → `1500h`, `noon` → `1200p`, `midnight` → `1200a`;
//! - `phone`: digits (`oh`, `double`/`triple` d) and `x` before an `extension`.

use super::SemanticValue;
use super::spoken::{DIGITS, ORDINALS, TEENS, TENS, TENS_ORDINALS};

/// Words that mean yes / no to the boolean builtin.
pub(crate) const YES: [&str; 7] = ["yes", "yeah", "yep", "true", "okay", "ok", "sure"];
/// See [`YES`].
pub(crate) const NO: [&str; 3] = ["no", "nope", "false"];

/// Month names, January first.
pub(crate) const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Currency words: (singular, plural, ISO 4217 code or "" when ambiguous, sub-unit words).
pub(crate) const CURRENCIES: [(&str, &str, &str); 4] = [
    ("dollar", "dollars", ""),
    ("euro", "euros", "EUR"),
    ("pound", "pounds", "GBP"),
    ("yen", "yen", "JPY"),
];

/// Sub-unit words (a hundredth of the unit).
pub(crate) const CENTS: [&str; 3] = ["cent", "cents", "pence"];

/// The outcome of reading words as one builtin type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Read {
    /// The words are a whole phrase; `more` when a longer phrase could start with them.
    Value { value: SemanticValue, more: bool },
    /// Not a phrase, but the start of one.
    Prefix,
    /// Not a phrase nor the start of one.
    No,
}

/// A position in the words, remembering whether a reader looked past the end.
struct Words<'a> {
    words: &'a [&'a str],
    at: usize,
    wanted_more: bool,
}

impl<'a> Words<'a> {
    fn peek(&mut self) -> Option<&'a str> {
        let word = self.words.get(self.at).copied();
        if word.is_none() {
            self.wanted_more = true;
        }
        word
    }

    /// Takes the next word if it is `word`.
    fn eat(&mut self, word: &str) -> bool {
        if self.peek() == Some(word) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// Takes the next word if it is in `set`, giving its index.
    fn eat_in(&mut self, set: &[&str]) -> Option<usize> {
        let word = self.peek()?;
        let index = set.iter().position(|w| !w.is_empty() && *w == word)?;
        self.at += 1;
        Some(index)
    }

    /// Runs `read`, rewinding when it fails.
    fn attempt<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let at = self.at;
        let value = read(self);
        if value.is_none() {
            self.at = at;
        }
        value
    }
}

/// Reads all of `words` with `read`.
fn whole(words: &[&str], read: impl FnOnce(&mut Words<'_>) -> Option<SemanticValue>) -> Read {
    let mut cursor = Words {
        words,
        at: 0,
        wanted_more: false,
    };
    match read(&mut cursor) {
        Some(value) if cursor.at == words.len() => Read::Value {
            value,
            more: cursor.wanted_more,
        },
        _ if cursor.wanted_more => Read::Prefix,
        _ => Read::No,
    }
}

/// `yes`/`no` words.
pub(crate) fn boolean(words: &[&str]) -> Read {
    whole(words, |w| {
        if w.eat_in(&YES).is_some() {
            Some(SemanticValue::Bool(true))
        } else {
            w.eat_in(&NO).map(|_| SemanticValue::Bool(false))
        }
    })
}

/// A digit word: `zero`, `oh`, `one` … `nine`.
fn digit(w: &mut Words<'_>) -> Option<u8> {
    if w.eat("oh") {
        return Some(0);
    }
    w.eat_in(&DIGITS).and_then(|d| u8::try_from(d).ok())
}

/// `min..=max` digit words.
pub(crate) fn digits(words: &[&str], min: usize, max: Option<usize>) -> Read {
    let mut out = String::new();
    for word in words {
        match *word {
            "oh" => out.push('0'),
            word => match DIGITS.iter().position(|d| *d == word) {
                Some(d) => out.push(char::from(b'0' + d as u8)),
                None => return Read::No,
            },
        }
    }
    let len = out.len();
    if max.is_some_and(|m| len > m) {
        Read::No
    } else if len < min.max(1) {
        Read::Prefix
    } else {
        Read::Value {
            value: SemanticValue::String(out),
            more: max != Some(len),
        }
    }
}

/// 1–9.
fn one_to_nine(w: &mut Words<'_>) -> Option<u64> {
    w.attempt(|w| match w.eat_in(&DIGITS)? {
        0 => None,
        d => Some(d as u64),
    })
}

/// 1–99.
fn below_hundred(w: &mut Words<'_>) -> Option<u64> {
    if let Some(d) = one_to_nine(w) {
        return Some(d);
    }
    if let Some(t) = w.eat_in(&TEENS) {
        return Some(10 + t as u64);
    }
    let tens = w.eat_in(&TENS)? as u64 * 10;
    Some(tens + one_to_nine(w).unwrap_or(0))
}

/// 1–999: `d hundred [[and] below_hundred]` or `below_hundred`.
fn below_thousand(w: &mut Words<'_>) -> Option<u64> {
    if let Some(h) = w.attempt(|w| {
        let d = one_to_nine(w)?;
        w.eat("hundred").then_some(d * 100)
    }) {
        let rest = w.attempt(|w| {
            w.eat("and");
            below_hundred(w)
        });
        return Some(h + rest.unwrap_or(0));
    }
    below_hundred(w)
}

/// 1–999,999: `b thousand [[and] b]` or `b`.
fn below_million(w: &mut Words<'_>) -> Option<u64> {
    let high = below_thousand(w)?;
    if !w.eat("thousand") {
        return Some(high);
    }
    let rest = w.attempt(|w| {
        w.eat("and");
        below_thousand(w)
    });
    Some(high * 1000 + rest.unwrap_or(0))
}

/// 0–999,999,999.
fn cardinal(w: &mut Words<'_>) -> Option<u64> {
    if w.eat("zero") {
        return Some(0);
    }
    if let Some(m) = w.attempt(|w| {
        let m = below_thousand(w)?;
        w.eat("million").then_some(m * 1_000_000)
    }) {
        return Some(m + w.attempt(below_million).unwrap_or(0));
    }
    below_million(w)
}

/// `point` and one or more digit words, as the digits.
fn fraction(w: &mut Words<'_>) -> Option<String> {
    w.attempt(|w| {
        if !w.eat("point") {
            return None;
        }
        let mut out = String::new();
        while let Some(d) = w.attempt(digit) {
            out.push(char::from(b'0' + d));
        }
        (!out.is_empty()).then_some(out)
    })
}

/// `[minus|negative] (cardinal [point digits] | point digits)`.
pub(crate) fn number(words: &[&str]) -> Read {
    whole(words, |w| {
        let negative = w.eat("minus") || w.eat("negative");
        let whole = w.attempt(cardinal);
        let fraction = fraction(w);
        if whole.is_none() && fraction.is_none() {
            return None;
        }
        let text = format!(
            "{}{}.{}",
            if negative { "-" } else { "" },
            whole.unwrap_or(0),
            fraction.as_deref().unwrap_or("0")
        );
        text.parse::<f64>().ok().map(SemanticValue::Number)
    })
}

/// `cardinal unit [[and] below_hundred [cents]]` or `below_hundred cents`.
pub(crate) fn currency(words: &[&str]) -> Read {
    whole(words, |w| {
        let with_unit = w.attempt(|w| {
            let units = cardinal(w)?;
            let word = w.peek()?;
            let code = CURRENCIES
                .iter()
                .find(|(one, many, _)| *one == word || *many == word)
                .map(|(_, _, code)| *code)?;
            w.at += 1;
            let cents = w
                .attempt(|w| {
                    w.eat("and");
                    let cents = below_hundred(w)?;
                    w.eat_in(&CENTS);
                    Some(cents)
                })
                .unwrap_or(0);
            Some((code, units, cents))
        });
        let (code, units, cents) = match with_unit {
            Some(found) => found,
            None => {
                let cents = below_hundred(w)?;
                w.eat_in(&CENTS)?;
                ("", 0, cents)
            }
        };
        Some(SemanticValue::String(format!("{code}{units}.{cents:02}")))
    })
}

/// An ordinal day 1st–31st.
fn day(w: &mut Words<'_>) -> Option<u32> {
    w.attempt(|w| {
        if let Some(d) = w.eat_in(&ORDINALS) {
            return (d > 0).then_some(d as u32);
        }
        if let Some(t) = w.eat_in(&TENS_ORDINALS) {
            return matches!(t, 2 | 3).then_some(t as u32 * 10);
        }
        let tens = match w.eat_in(&TENS)? {
            t @ (2 | 3) => t as u32 * 10,
            _ => return None,
        };
        let units = w.eat_in(&ORDINALS)? as u32;
        (1..=9)
            .contains(&units)
            .then_some(tens + units)
            .filter(|d| *d <= 31)
    })
}

/// A year as said: `nineteen ninety nine`, `twenty twenty six`, `twenty oh six`,
/// `nineteen hundred`, `two thousand [and] six`.
fn year(w: &mut Words<'_>) -> Option<u32> {
    if let Some(y) = w.attempt(|w| {
        (w.eat("two") && w.eat("thousand")).then_some(())?;
        let rest = w
            .attempt(|w| {
                w.eat("and");
                below_hundred(w)
            })
            .unwrap_or(0);
        Some(2000 + rest as u32)
    }) {
        return Some(y);
    }
    w.attempt(|w| {
        let century = match w.eat_in(&TEENS) {
            Some(t) => 10 + t as u32,
            None => (w.eat("twenty")).then_some(20)?,
        };
        let rest = if w.eat("hundred") {
            0
        } else if w.eat("oh") {
            one_to_nine(w)? as u32
        } else if let Some(t) = w.eat_in(&TEENS) {
            10 + t as u32
        } else {
            let tens = w.eat_in(&TENS)? as u32 * 10;
            tens + one_to_nine(w).unwrap_or(0) as u32
        };
        Some(century * 100 + rest)
    })
}

fn days_in_month(month: u32, year: Option<u32>) -> u32 {
    match month {
        2 => match year {
            Some(y) if !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) => 28,
            _ => 29,
        },
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `month [the] day [year]`, `[the] day of month [year]`, `month year`.
pub(crate) fn date(words: &[&str]) -> Read {
    whole(words, |w| {
        let month_first = w.attempt(|w| {
            let month = w.eat_in(&MONTHS)? as u32 + 1;
            let day = w.attempt(|w| {
                w.eat("the");
                day(w)
            });
            Some((month, day))
        });
        let (month, day) = match month_first {
            Some(found) => found,
            None => {
                w.eat("the");
                let day = day(w)?;
                if !w.eat("of") {
                    return None;
                }
                (w.eat_in(&MONTHS)? as u32 + 1, Some(day))
            }
        };
        let year = w.attempt(year);
        if day.is_none() && year.is_none() {
            return None;
        }
        if day.is_some_and(|d| d > days_in_month(month, year)) {
            // No longer phrase makes it a date either.
            w.wanted_more = false;
            return None;
        }
        let year = year.map_or_else(|| "????".to_owned(), |y| format!("{y:04}"));
        let day = day.map_or_else(|| "??".to_owned(), |d| format!("{d:02}"));
        Some(SemanticValue::String(format!("{year}{month:02}{day}")))
    })
}

/// 1–12 as said.
fn hour12(w: &mut Words<'_>) -> Option<u32> {
    w.attempt(|w| {
        if let Some(d) = one_to_nine(w) {
            return Some(d as u32);
        }
        match w.eat_in(&TEENS)? {
            t @ 0..=2 => Some(10 + t as u32),
            _ => None,
        }
    })
}

/// Minutes after an hour: `oh five`, `ten` … `nineteen`, `twenty [d]` … `fifty [d]`.
fn minutes(w: &mut Words<'_>) -> Option<u32> {
    w.attempt(|w| {
        if w.eat("oh") {
            return one_to_nine(w).map(|d| d as u32);
        }
        if let Some(t) = w.eat_in(&TEENS) {
            return Some(10 + t as u32);
        }
        let tens = match w.eat_in(&TENS)? {
            t @ 2..=5 => t as u32 * 10,
            _ => return None,
        };
        Some(tens + one_to_nine(w).unwrap_or(0) as u32)
    })
}

/// `a m` / `p m` (and typed `am`, `pm`, `a.m.`).
fn meridiem(w: &mut Words<'_>) -> Option<char> {
    w.attempt(|w| {
        let (half, spelled) = match w.peek()? {
            "am" | "a.m." => ('a', true),
            "pm" | "p.m." => ('p', true),
            "a" => ('a', false),
            "p" => ('p', false),
            _ => return None,
        };
        w.at += 1;
        (spelled || w.eat("m")).then_some(half)
    })
}

/// `hour [minutes | o'clock] [a m | p m]`, `quarter past|to hour`, `half past hour`,
/// 24-hour `thirteen thirty` / `fifteen hundred`, `noon`, `midnight`.
pub(crate) fn time(words: &[&str]) -> Read {
    whole(words, |w| {
        if w.eat("noon") {
            return Some(SemanticValue::String("1200p".to_owned()));
        }
        if w.eat("midnight") {
            return Some(SemanticValue::String("1200a".to_owned()));
        }
        if let Some(value) = w.attempt(|w| {
            w.eat("twelve").then_some(())?;
            if w.eat("noon") {
                Some("1200p")
            } else {
                w.eat("midnight").then_some("1200a")
            }
        }) {
            return Some(SemanticValue::String(value.to_owned()));
        }
        // 24-hour: 13–23 with minutes or `hundred`.
        if let Some((hour, minute)) = w.attempt(|w| {
            let hour = match w.eat_in(&TEENS) {
                Some(t @ 3..=9) => 10 + t as u32,
                Some(_) => return None,
                None => {
                    w.eat("twenty").then_some(())?;
                    20 + w.attempt(|w| match one_to_nine(w)? {
                        d @ 1..=3 => Some(d as u32),
                        _ => None,
                    })?
                }
            };
            let minute = if w.eat("hundred") { 0 } else { minutes(w)? };
            Some((hour, minute))
        }) {
            return Some(SemanticValue::String(format!("{hour:02}{minute:02}h")));
        }
        let relative = w.attempt(|w| {
            let (offset, before) = if w.eat("half") {
                (30, false)
            } else {
                w.eat("quarter").then_some(())?;
                if w.eat("to") { (45, true) } else { (15, false) }
            };
            if !before && !w.eat("past") {
                return None;
            }
            let hour = hour12(w)?;
            Some(if before {
                (if hour == 1 { 12 } else { hour - 1 }, offset)
            } else {
                (hour, offset)
            })
        });
        let (hour, minute) = match relative {
            Some(found) => found,
            None => {
                let hour = hour12(w)?;
                let minute = if w.eat("o'clock") {
                    0
                } else {
                    w.attempt(minutes).unwrap_or(0)
                };
                (hour, minute)
            }
        };
        let half = w.attempt(meridiem).unwrap_or('?');
        Some(SemanticValue::String(format!("{hour:02}{minute:02}{half}")))
    })
}

/// Digits of a phone number: digit words, `double d`, `triple d`.
fn phone_digits(w: &mut Words<'_>, out: &mut String) -> bool {
    let start = out.len();
    loop {
        let times = if w.eat("double") {
            2
        } else if w.eat("triple") {
            3
        } else {
            match w.attempt(digit) {
                Some(d) => {
                    out.push(char::from(b'0' + d));
                    continue;
                }
                None => break,
            }
        };
        match digit(w) {
            Some(d) => (0..times).for_each(|_| out.push(char::from(b'0' + d))),
            None => return false,
        }
    }
    out.len() > start
}

/// Phone digits, optionally `extension` and more digits (`x` in the value).
pub(crate) fn phone(words: &[&str]) -> Read {
    whole(words, |w| {
        let mut out = String::new();
        if !phone_digits(w, &mut out) {
            return None;
        }
        if w.eat("extension") {
            out.push('x');
            if !phone_digits(w, &mut out) {
                return None;
            }
        }
        Some(SemanticValue::String(out))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<&str> {
        text.split_whitespace().collect()
    }

    fn value(read: Read) -> Option<SemanticValue> {
        match read {
            Read::Value { value, .. } => Some(value),
            _ => None,
        }
    }

    fn s(text: &str) -> Option<SemanticValue> {
        Some(SemanticValue::String(text.to_owned()))
    }

    fn n(x: f64) -> Option<SemanticValue> {
        Some(SemanticValue::Number(x))
    }

    #[test]
    fn booleans_and_digits() {
        assert_eq!(value(boolean(&["yeah"])), Some(SemanticValue::Bool(true)));
        assert_eq!(value(boolean(&["nope"])), Some(SemanticValue::Bool(false)));
        assert_eq!(boolean(&["maybe"]), Read::No);
        assert_eq!(boolean(&[]), Read::Prefix);
        assert_eq!(value(digits(&words("four oh two"), 1, None)), s("402"));
        assert_eq!(digits(&words("four"), 2, Some(3)), Read::Prefix);
        assert_eq!(digits(&words("one two three four"), 2, Some(3)), Read::No);
        assert_eq!(
            digits(&words("one two three"), 2, Some(3)),
            Read::Value {
                value: SemanticValue::String("123".into()),
                more: false
            }
        );
    }

    #[test]
    fn numbers() {
        let cases = [
            ("zero", 0.0),
            ("seven", 7.0),
            ("two hundred forty five", 245.0),
            ("one hundred and five", 105.0),
            ("nineteen", 19.0),
            ("ninety nine thousand nine hundred", 99_900.0),
            ("two thousand twenty six", 2026.0),
            ("one million two hundred thousand and one", 1_200_001.0),
            ("three hundred million", 300_000_000.0),
            ("minus twelve", -12.0),
            ("negative three point two five", -3.25),
            ("point five", 0.5),
            ("twelve point oh five", 12.05),
        ];
        for (text, expected) in cases {
            assert_eq!(value(number(&words(text))), n(expected), "{text}");
        }
        assert_eq!(
            number(&words("two hundred")),
            Read::Value {
                value: SemanticValue::Number(200.0),
                more: true,
            }
        );
        assert_eq!(number(&words("minus")), Read::Prefix);
        assert_eq!(number(&words("twelve point")), Read::Prefix);
        assert_eq!(number(&words("twenty nineteen")), Read::No);
        assert_eq!(number(&words("hundred")), Read::No);
        assert_eq!(number(&words("five five")), Read::No);
    }

    #[test]
    fn currencies() {
        assert_eq!(value(currency(&words("twelve dollars fifty"))), s("12.50"));
        assert_eq!(
            value(currency(&words("twelve dollars and fifty cents"))),
            s("12.50")
        );
        assert_eq!(value(currency(&words("five euros"))), s("EUR5.00"));
        assert_eq!(
            value(currency(&words("one thousand pounds ten pence"))),
            s("GBP1000.10")
        );
        assert_eq!(value(currency(&words("fifty cents"))), s("0.50"));
        assert_eq!(value(currency(&words("one yen"))), s("JPY1.00"));
        assert_eq!(currency(&words("twelve")), Read::Prefix);
        assert_eq!(currency(&words("twelve apples")), Read::No);
    }

    #[test]
    fn dates() {
        assert_eq!(value(date(&words("march third"))), s("????0303"));
        assert_eq!(
            value(date(&words("march third twenty twenty six"))),
            s("20260303")
        );
        assert_eq!(value(date(&words("the fifth of may"))), s("????0505"));
        assert_eq!(
            value(date(&words("fifth of may nineteen ninety nine"))),
            s("19990505")
        );
        assert_eq!(value(date(&words("march the thirty first"))), s("????0331"));
        assert_eq!(
            value(date(&words("december twenty fifth two thousand six"))),
            s("20061225")
        );
        assert_eq!(
            value(date(&words("june twentieth twenty oh one"))),
            s("20010620")
        );
        assert_eq!(value(date(&words("may nineteen hundred"))), s("190005??"));
        assert_eq!(
            value(date(&words("february twenty ninth twenty twenty four"))),
            s("20240229")
        );
        assert_eq!(
            date(&words("february twenty ninth twenty twenty three")),
            Read::No
        );
        assert_eq!(date(&words("april thirty first")), Read::No);
        assert_eq!(date(&words("march")), Read::Prefix);
        assert_eq!(date(&words("today")), Read::No);
    }

    #[test]
    fn times() {
        let cases = [
            ("three thirty p m", "0330p"),
            ("three thirty", "0330?"),
            ("three p m", "0300p"),
            ("eleven o'clock a m", "1100a"),
            ("seven oh five", "0705?"),
            ("twelve fifteen pm", "1215p"),
            ("fifteen hundred", "1500h"),
            ("thirteen forty five", "1345h"),
            ("twenty three fifty nine", "2359h"),
            ("noon", "1200p"),
            ("twelve midnight", "1200a"),
            ("midnight", "1200a"),
            ("quarter past three", "0315?"),
            ("quarter to one p m", "1245p"),
            ("half past nine a m", "0930a"),
        ];
        for (text, expected) in cases {
            assert_eq!(value(time(&words(text))), s(expected), "{text}");
        }
        assert_eq!(time(&words("three sixty")), Read::No);
        assert_eq!(time(&words("quarter")), Read::Prefix);
        assert_eq!(time(&words("twenty four hundred")), Read::No);
    }

    #[test]
    fn phones() {
        assert_eq!(
            value(phone(&words("five five five oh one two three"))),
            s("5550123")
        );
        assert_eq!(
            value(phone(&words(
                "eight double oh triple five extension four two"
            ))),
            s("800555x42")
        );
        assert_eq!(phone(&words("five extension")), Read::Prefix);
        assert_eq!(phone(&words("double")), Read::Prefix);
        assert_eq!(phone(&words("hello")), Read::No);
    }
}
