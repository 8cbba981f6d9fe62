//! How a written voice token is said: the words a speech recogniser hears and returns.
//!
//! A recogniser's vocabulary is a pronouncing dictionary of plain lower-case words (CMU
//! dictionary style), so a grammar token such as `3`, `1st`, `U.S.A.`, `x-ray` or `5%` has to
//! be spelled as spoken words before a recogniser can listen for it: `three`, `first`,
//! `u s a`, `x ray`, `five percent`. The rule graph keeps both spellings of such a token
//! ([`super::model::Node::Token`]): the written one (what the logical parse structure and
//! the default SISR value show) and the spoken one, and a voice input matches either. So the
//! words a recogniser returns for a JSGF made from the grammar are matched by the grammar
//! itself, and typed input (`say:3`) still matches as written.
//!
//! Accented Latin letters lose their accents (`André` → `andre`), as an English dictionary
//! spells them. Numbers: a digit string up to 999,999,999 without a leading zero is a cardinal
//! (`245` → `two hundred forty five`, commas allowed as thousands separators); any other
//! digit string (`007`, a phone number) is said digit by digit with `zero`. `3.5` is
//! `three point five`; `21st` is `twenty first`.

/// Names of the digits 0–9.
pub(crate) const DIGITS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// 10–19.
pub(crate) const TEENS: [&str; 10] = [
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];

/// 20, 30 … 90 (index 2–9; 0 and 1 unused).
pub(crate) const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// Ordinals 1st–19th (index 1–19).
pub(crate) const ORDINALS: [&str; 20] = [
    "zeroth",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
];

/// Ordinal tens 20th … 90th (index 2–9).
pub(crate) const TENS_ORDINALS: [&str; 10] = [
    "",
    "",
    "twentieth",
    "thirtieth",
    "fortieth",
    "fiftieth",
    "sixtieth",
    "seventieth",
    "eightieth",
    "ninetieth",
];

/// Largest number spelled as a cardinal.
pub(crate) const MAX_CARDINAL: u64 = 999_999_999;

/// The words of cardinal `n` (`n <= MAX_CARDINAL`; larger numbers come out digit by digit).
pub(crate) fn cardinal(n: u64) -> Vec<&'static str> {
    if n > MAX_CARDINAL {
        return n
            .to_string()
            .bytes()
            .map(|b| DIGITS[usize::from(b - b'0')])
            .collect();
    }
    if n == 0 {
        return vec!["zero"];
    }
    let mut out = Vec::new();
    let millions = n / 1_000_000;
    let thousands = n / 1000 % 1000;
    let rest = n % 1000;
    if millions > 0 {
        below_thousand(millions, &mut out);
        out.push("million");
    }
    if thousands > 0 {
        below_thousand(thousands, &mut out);
        out.push("thousand");
    }
    if rest > 0 {
        below_thousand(rest, &mut out);
    }
    out
}

fn below_thousand(n: u64, out: &mut Vec<&'static str>) {
    let hundreds = (n / 100) as usize;
    let rest = (n % 100) as usize;
    if hundreds > 0 {
        out.push(DIGITS[hundreds]);
        out.push("hundred");
    }
    match rest {
        0 => {}
        1..=9 => out.push(DIGITS[rest]),
        10..=19 => out.push(TEENS[rest - 10]),
        _ => {
            out.push(TENS[rest / 10]);
            if !rest.is_multiple_of(10) {
                out.push(DIGITS[rest % 10]);
            }
        }
    }
}

/// The words of ordinal `n` (1st, 22nd, 100th …), `n <= MAX_CARDINAL`.
pub(crate) fn ordinal(n: u64) -> Vec<&'static str> {
    let mut words = cardinal(n);
    let Some(last) = words.pop() else {
        return words;
    };
    let replaced = if let Some(i) = DIGITS.iter().position(|d| *d == last) {
        ORDINALS[i]
    } else if let Some(i) = TEENS.iter().position(|d| *d == last) {
        ORDINALS[i + 10]
    } else if let Some(i) = TENS.iter().position(|d| !d.is_empty() && *d == last) {
        TENS_ORDINALS[i]
    } else {
        match last {
            "hundred" => "hundredth",
            "thousand" => "thousandth",
            "million" => "millionth",
            other => other,
        }
    };
    words.push(replaced);
    words
}

/// A Latin letter without its accent (`é` → `e`), for an English pronouncing dictionary.
fn unaccented(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
        'ç' => 'c',
        'è' | 'é' | 'ê' | 'ë' => 'e',
        'ì' | 'í' | 'î' | 'ï' => 'i',
        'ñ' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => 'o',
        'ù' | 'ú' | 'û' | 'ü' => 'u',
        'ý' | 'ÿ' => 'y',
        c => c,
    }
}

/// The spoken words of one written word (already lower-cased, no whitespace).
pub(crate) fn spoken_word(word: &str, out: &mut Vec<String>) {
    if word.chars().any(|c| unaccented(c) != c) {
        let plain: String = word.chars().map(unaccented).collect();
        return spoken_word(&plain, out);
    }
    let mut word = word.trim_matches(|c: char| !c.is_alphanumeric() && c != '%' && c != '$');
    let dollars = word.starts_with('$');
    word = word.trim_start_matches('$');
    let percent = word.ends_with('%');
    word = word.trim_end_matches(|c: char| !c.is_alphanumeric());
    if word.is_empty() {
        return;
    }
    spoken_core(word, out);
    if percent {
        out.push("percent".to_owned());
    }
    if dollars {
        out.push("dollars".to_owned());
    }
}

fn spoken_core(word: &str, out: &mut Vec<String>) {
    let push = |out: &mut Vec<String>, words: Vec<&str>| {
        out.extend(words.into_iter().map(str::to_owned));
    };
    // A number with thousands separators (1,000) or a plain digit string.
    let plain: String = word.chars().filter(|&c| c != ',').collect();
    let grouped = word.contains(',')
        && word.split(',').enumerate().all(|(i, g)| {
            g.bytes().all(|b| b.is_ascii_digit())
                && (g.len() == 3 || i == 0 && (1..=3).contains(&g.len()))
        });
    if !plain.is_empty()
        && plain.bytes().all(|b| b.is_ascii_digit())
        && (grouped || !word.contains(','))
    {
        number(&plain, out);
        return;
    }
    // A decimal: 3.5.
    if let Some((whole, fraction)) = word.split_once('.')
        && !whole.is_empty()
        && !fraction.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
    {
        number(whole, out);
        out.push("point".to_owned());
        for b in fraction.bytes() {
            out.push(DIGITS[usize::from(b - b'0')].to_owned());
        }
        return;
    }
    // An ordinal: 1st, 22nd, 3rd, 4th.
    for suffix in ["st", "nd", "rd", "th"] {
        if let Some(digits) = word.strip_suffix(suffix)
            && !digits.is_empty()
            && digits.len() <= 9
            && digits.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = digits.parse::<u64>()
        {
            push(out, ordinal(n));
            return;
        }
    }
    // Internal punctuation other than an apostrophe separates words (x-ray, and/or, u.s.a).
    if word.chars().any(|c| !c.is_alphanumeric() && c != '\'') {
        for part in word.split(|c: char| !c.is_alphanumeric() && c != '\'') {
            spoken_word(part, out);
        }
        return;
    }
    // Letters and digits run together (mp3, b12): each run on its own.
    let mut runs: Vec<String> = Vec::new();
    let mut last_digit = None;
    for c in word.chars() {
        let digit = c.is_ascii_digit();
        match runs.last_mut() {
            Some(run) if last_digit == Some(digit) => run.push(c),
            _ => runs.push(c.to_string()),
        }
        last_digit = Some(digit);
    }
    if runs.len() > 1 {
        for run in runs {
            spoken_core(&run, out);
        }
        return;
    }
    out.push(word.to_owned());
}

/// A digit string: a cardinal, or digit by digit (leading zero, or too long).
fn number(digits: &str, out: &mut Vec<String>) {
    let cardinal_ok = (digits.len() == 1 || !digits.starts_with('0')) && digits.len() <= 9;
    match digits.parse::<u64>() {
        Ok(n) if cardinal_ok => out.extend(cardinal(n).into_iter().map(str::to_owned)),
        _ => out.extend(
            digits
                .bytes()
                .map(|b| DIGITS[usize::from(b - b'0')].to_owned()),
        ),
    }
}

/// The spoken words of a token's written words, or `None` when they are spoken as written.
pub(crate) fn spoken_words(words: &[String]) -> Option<Vec<String>> {
    let mut out = Vec::with_capacity(words.len());
    for word in words {
        spoken_word(word, &mut out);
    }
    (out != words).then_some(out)
}

/// How a recogniser given [`super::Grammar::to_jsgf`]'s output spells `text`: the
/// lower-cased words a grammar token written as `text` is listened for as (`Gate 3` →
/// `gate three`).
pub fn spoken_form(text: &str) -> Vec<String> {
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    spoken_words(&words).unwrap_or(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(text: &str) -> String {
        spoken_form(text).join(" ")
    }

    #[test]
    fn cardinals_and_ordinals() {
        assert_eq!(cardinal(0).join(" "), "zero");
        assert_eq!(cardinal(245).join(" "), "two hundred forty five");
        assert_eq!(cardinal(1_000).join(" "), "one thousand");
        assert_eq!(cardinal(2026).join(" "), "two thousand twenty six");
        assert_eq!(
            cardinal(999_999_999).join(" "),
            "nine hundred ninety nine million nine hundred ninety nine thousand nine hundred ninety nine"
        );
        assert_eq!(cardinal(1_000_000_000).len(), 10);
        assert_eq!(ordinal(1).join(" "), "first");
        assert_eq!(ordinal(12).join(" "), "twelfth");
        assert_eq!(ordinal(30).join(" "), "thirtieth");
        assert_eq!(ordinal(31).join(" "), "thirty first");
        assert_eq!(ordinal(100).join(" "), "one hundredth");
    }

    #[test]
    fn written_tokens_become_dictionary_words() {
        assert_eq!(said("3"), "three");
        assert_eq!(said("1,250"), "one thousand two hundred fifty");
        assert_eq!(said("007"), "zero zero seven");
        assert_eq!(
            said("5551234567"),
            "five five five one two three four five six seven"
        );
        assert_eq!(said("3.5"), "three point five");
        assert_eq!(said("21st"), "twenty first");
        assert_eq!(said("U.S.A."), "u s a");
        assert_eq!(said("p.m."), "p m");
        assert_eq!(said("x-ray"), "x ray");
        assert_eq!(said("o'clock"), "o'clock");
        assert_eq!(said("Hello, world!"), "hello world");
        assert_eq!(said("50%"), "fifty percent");
        assert_eq!(said("$5"), "five dollars");
        assert_eq!(said("mp3"), "mp three");
        assert_eq!(said("?"), "");
        assert_eq!(said("André Zürich"), "andre zurich");
        assert_eq!(spoken_words(&["chicago".to_owned()]), None);
    }
}
