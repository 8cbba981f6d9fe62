//! JSGF forms of the voice builtins: the phrases [`crate::srgs::voice`] reads, no more.
//!
//! Parts shared between types (digits, cardinals, months …) are rules made once per
//! translation (`<b_cardinal>`, `<b_month>` …).

use super::super::builtin::Builtin;
use super::super::spoken::{DIGITS, ORDINALS, TEENS, TENS, TENS_ORDINALS};
use super::super::voice::{CENTS, CURRENCIES, MONTHS, NO, YES};
use super::{Expr, Translator, alt, opt, plus, seq};

/// The root expansion of `builtin`'s voice form.
pub(super) fn form(t: &mut Translator<'_>, builtin: &Builtin) -> Expr {
    match builtin {
        Builtin::Boolean { .. } => t.named("boolean", |_| {
            let mut words: Vec<&str> = YES.to_vec();
            words.extend(NO);
            Expr::words(&words)
        }),
        Builtin::Digits { min, max } => {
            let name = format!(
                "digits_{min}_{}",
                max.map_or_else(|| "n".to_owned(), |m| m.to_string())
            );
            let (min, max) = (*min, *max);
            t.named(&name, |t| {
                let digit = digit(t);
                let min = u32::try_from(min.max(1)).unwrap_or(u32::MAX);
                let max = max.map(|m| u32::try_from(m).unwrap_or(u32::MAX));
                t.repeat(digit, min, max)
            })
        }
        Builtin::Number => t.named("number", |t| {
            let sign = opt(Expr::words(&["minus", "negative"]));
            let cardinal = cardinal(t);
            let fraction = fraction(t);
            seq(vec![
                sign,
                alt(vec![seq(vec![cardinal, opt(fraction.clone())]), fraction]),
            ])
        }),
        Builtin::Currency => t.named("currency", |t| {
            let units: Vec<&str> = CURRENCIES.iter().flat_map(|(a, b, _)| [*a, *b]).collect();
            let mut units = units;
            units.dedup();
            let unit = Expr::words(&units);
            let cents = Expr::words(&CENTS);
            let cardinal = cardinal(t);
            let small = below_hundred(t);
            alt(vec![
                seq(vec![
                    cardinal,
                    unit,
                    opt(seq(vec![
                        opt(Expr::word("and")),
                        small.clone(),
                        opt(cents.clone()),
                    ])),
                ]),
                seq(vec![small, cents]),
            ])
        }),
        Builtin::Date => t.named("date", |t| {
            let month = t.named("month", |_| Expr::words(&MONTHS));
            let day = day(t);
            let year = year(t);
            let the = opt(Expr::word("the"));
            alt(vec![
                seq(vec![
                    month.clone(),
                    alt(vec![
                        seq(vec![the.clone(), day.clone(), opt(year.clone())]),
                        year.clone(),
                    ]),
                ]),
                seq(vec![the, day, Expr::word("of"), month, opt(year)]),
            ])
        }),
        Builtin::Time => t.named("time", |t| {
            let one_to_nine = one_to_nine(t);
            let hour = t.named("hour", |_| {
                alt(vec![
                    one_to_nine.clone(),
                    Expr::words(&["ten", "eleven", "twelve"]),
                ])
            });
            let minutes = t.named("minutes", |_| {
                alt(vec![
                    seq(vec![Expr::word("oh"), one_to_nine.clone()]),
                    Expr::words(&TEENS),
                    seq(vec![
                        Expr::words(&["twenty", "thirty", "forty", "fifty"]),
                        opt(one_to_nine.clone()),
                    ]),
                ])
            });
            let hour24 = alt(vec![
                Expr::words(TEENS.get(3..).unwrap_or_default()),
                seq(vec![
                    Expr::word("twenty"),
                    Expr::words(&["one", "two", "three"]),
                ]),
            ]);
            let meridiem = seq(vec![Expr::words(&["a", "p"]), Expr::word("m")]);
            let relative = seq(vec![
                alt(vec![
                    Expr::phrase("half past"),
                    seq(vec![Expr::word("quarter"), Expr::words(&["past", "to"])]),
                ]),
                hour.clone(),
            ]);
            let clock = seq(vec![
                hour,
                opt(alt(vec![Expr::word("o'clock"), minutes.clone()])),
            ]);
            alt(vec![
                seq(vec![
                    opt(Expr::word("twelve")),
                    Expr::words(&["noon", "midnight"]),
                ]),
                seq(vec![hour24, alt(vec![Expr::word("hundred"), minutes])]),
                seq(vec![alt(vec![relative, clock]), opt(meridiem)]),
            ])
        }),
        Builtin::Phone => t.named("phone", |t| {
            let digit = digit(t);
            let digits = t.named("phone_digits", |_| {
                plus(alt(vec![
                    digit.clone(),
                    seq(vec![Expr::words(&["double", "triple"]), digit.clone()]),
                ]))
            });
            seq(vec![
                digits.clone(),
                opt(seq(vec![Expr::word("extension"), digits])),
            ])
        }),
    }
}

fn one_to_nine(t: &mut Translator<'_>) -> Expr {
    t.named("one_to_nine", |_| {
        Expr::words(DIGITS.get(1..).unwrap_or_default())
    })
}

/// `zero`, `oh`, `one` … `nine`.
fn digit(t: &mut Translator<'_>) -> Expr {
    let one_to_nine = one_to_nine(t);
    t.named("digit", |_| {
        alt(vec![Expr::words(&["zero", "oh"]), one_to_nine])
    })
}

/// 1–99.
fn below_hundred(t: &mut Translator<'_>) -> Expr {
    let one_to_nine = one_to_nine(t);
    t.named("below_hundred", |_| {
        alt(vec![
            one_to_nine.clone(),
            Expr::words(&TEENS),
            seq(vec![Expr::words(&TENS), opt(one_to_nine)]),
        ])
    })
}

/// 1–999.
fn below_thousand(t: &mut Translator<'_>) -> Expr {
    let one_to_nine = one_to_nine(t);
    let below_hundred = below_hundred(t);
    t.named("below_thousand", |_| {
        alt(vec![
            seq(vec![
                one_to_nine,
                Expr::word("hundred"),
                opt(seq(vec![opt(Expr::word("and")), below_hundred.clone()])),
            ]),
            below_hundred,
        ])
    })
}

/// 1–999,999.
fn below_million(t: &mut Translator<'_>) -> Expr {
    let below_thousand = below_thousand(t);
    t.named("below_million", |_| {
        seq(vec![
            below_thousand.clone(),
            opt(seq(vec![
                Expr::word("thousand"),
                opt(seq(vec![opt(Expr::word("and")), below_thousand])),
            ])),
        ])
    })
}

/// 0–999,999,999.
fn cardinal(t: &mut Translator<'_>) -> Expr {
    let below_thousand = below_thousand(t);
    let below_million = below_million(t);
    t.named("cardinal", |_| {
        alt(vec![
            Expr::word("zero"),
            seq(vec![
                below_thousand,
                Expr::word("million"),
                opt(below_million.clone()),
            ]),
            below_million,
        ])
    })
}

/// `point` and digits.
fn fraction(t: &mut Translator<'_>) -> Expr {
    let digit = digit(t);
    t.named("fraction", |_| seq(vec![Expr::word("point"), plus(digit)]))
}

/// An ordinal day, first … thirty first.
fn day(t: &mut Translator<'_>) -> Expr {
    t.named("day", |_| {
        let first_to_ninth = Expr::words(ORDINALS.get(1..10).unwrap_or_default());
        alt(vec![
            Expr::words(ORDINALS.get(1..).unwrap_or_default()),
            Expr::words(&[TENS_ORDINALS[2], TENS_ORDINALS[3]]),
            seq(vec![Expr::word("twenty"), first_to_ninth]),
            Expr::phrase("thirty first"),
        ])
    })
}

/// A year: `nineteen ninety nine`, `twenty oh six`, `nineteen hundred`, `two thousand six`.
fn year(t: &mut Translator<'_>) -> Expr {
    let one_to_nine = one_to_nine(t);
    let below_hundred = below_hundred(t);
    t.named("year", |_| {
        let century = alt(vec![Expr::words(&TEENS), Expr::word("twenty")]);
        alt(vec![
            seq(vec![
                Expr::phrase("two thousand"),
                opt(seq(vec![opt(Expr::word("and")), below_hundred])),
            ]),
            seq(vec![
                century,
                alt(vec![
                    Expr::word("hundred"),
                    seq(vec![Expr::word("oh"), one_to_nine.clone()]),
                    Expr::words(&TEENS),
                    seq(vec![Expr::words(&TENS), opt(one_to_nine)]),
                ]),
            ]),
        ])
    })
}
