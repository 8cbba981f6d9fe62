//! Daily hours on days of the week (`"mon-fri 09:00-20:00"`), read in a time zone.
//!
//! A [`Schedule`] is a union of [`Hours`]; an empty schedule means "at any time". Hours whose
//! end is before their start run past midnight (`"21:00-08:00"`), and belong to the day they
//! start on. Local times are read with the time zone database (jiff), so DST changes are
//! handled: a start that falls in a spring-forward gap begins when the clocks resume.

use std::fmt;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime as Zoned};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Minutes in a day.
const DAY: u16 = 24 * 60;

/// A bad hours specification, with what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{spec:?} {problem}; write e.g. \"09:00-20:00\" or \"mon-fri 09:00-17:30\"")]
pub struct HoursError {
    spec: String,
    problem: &'static str,
}

/// One span of hours on some days of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    /// Bit `i` set: the span starts on weekday `i` (0 = Monday).
    days: u8,
    /// Minutes after midnight, inclusive.
    start: u16,
    /// Minutes after midnight, exclusive; `<= start` runs past midnight; 1440 = midnight.
    end: u16,
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Hours {
    /// Parses `"[DAYS ]HH:MM-HH:MM"`; DAYS is a comma list of `mon`..`sun` or ranges
    /// (`mon-fri`, `sat,sun`), every day when absent.
    pub fn parse(spec: &str) -> Result<Self, HoursError> {
        let err = |problem| HoursError {
            spec: spec.chars().take(64).collect(),
            problem,
        };
        let spec_trim = spec.trim();
        let (days_text, span) = match spec_trim.rsplit_once(' ') {
            Some((days, span)) => (Some(days.trim()), span),
            None => (None, spec_trim),
        };
        let days = match days_text {
            None => 0x7f,
            Some(text) => parse_days(text).ok_or_else(|| err("has days that are not mon..sun"))?,
        };
        let (start, end) = span
            .split_once('-')
            .ok_or_else(|| err("is not a span of hours"))?;
        let start = parse_clock(start).ok_or_else(|| err("has a start that is not HH:MM"))?;
        let end = parse_clock(end).ok_or_else(|| err("has an end that is not HH:MM"))?;
        if start >= DAY {
            return Err(err("starts at 24:00"));
        }
        if start == end {
            return Err(err("is empty (start and end are the same)"));
        }
        Ok(Self { days, start, end })
    }

    fn wraps(self) -> bool {
        self.end <= self.start
    }

    fn on(self, day: Weekday) -> bool {
        self.days & (1 << day.to_monday_zero_offset()) != 0
    }

    /// Whether local time `at` is inside these hours.
    pub fn contains(self, at: &Zoned) -> bool {
        let minute =
            u16::try_from(at.hour()).unwrap_or(0) * 60 + u16::try_from(at.minute()).unwrap_or(0);
        let day = at.weekday();
        if self.wraps() {
            (self.on(day) && minute >= self.start) || (self.on(day.previous()) && minute < self.end)
        } else {
            self.on(day) && minute >= self.start && minute < self.end
        }
    }

    /// The instants these hours start on local `date` (none if not a day of theirs).
    fn start_on(self, date: Date, zone: &TimeZone) -> Option<Timestamp> {
        self.on(date.weekday())
            .then(|| local(date, self.start, zone))
            .flatten()
    }

    /// The instant these hours, started on local `date`, end.
    fn end_after(self, date: Date, zone: &TimeZone) -> Option<Timestamp> {
        if !self.on(date.weekday()) {
            return None;
        }
        let end_date = if self.wraps() || self.end == DAY {
            date.tomorrow().ok()?
        } else {
            date
        };
        local(end_date, self.end % DAY, zone)
    }
}

/// `minute` after local midnight of `date` (a time in a DST gap moves forward).
fn local(date: Date, minute: u16, zone: &TimeZone) -> Option<Timestamp> {
    let hour = i8::try_from(minute / 60).ok()?;
    let min = i8::try_from(minute % 60).ok()?;
    date.at(hour, min, 0, 0)
        .to_zoned_datetime(zone.clone())
        .ok()
        .map(|z| z.timestamp())
}

fn parse_days(text: &str) -> Option<u8> {
    let index = |name: &str| {
        WEEKDAYS
            .iter()
            .position(|d| d.eq_ignore_ascii_case(name.trim()))
    };
    let mut days = 0u8;
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (index(a)?, index(b)?);
                let mut i = a;
                loop {
                    days |= 1 << i;
                    if i == b {
                        break;
                    }
                    i = (i + 1) % 7;
                }
            }
            None => days |= 1 << index(part)?,
        }
    }
    (days != 0).then_some(days)
}

fn parse_clock(text: &str) -> Option<u16> {
    let (h, m) = text.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(DAY),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.days != 0x7f {
            let names: Vec<&str> = (0..7)
                .filter(|i| self.days & (1 << i) != 0)
                .map(|i| WEEKDAYS[i])
                .collect();
            write!(f, "{} ", names.join(","))?;
        }
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// A union of [`Hours`]; empty = at any time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule(Vec<Hours>);

/// Most spans in one schedule.
pub const MAX_SPANS: usize = 32;

impl Schedule {
    /// Parses each span; see [`Hours::parse`].
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<Self, HoursError> {
        if specs.len() > MAX_SPANS {
            return Err(HoursError {
                spec: format!("{} spans", specs.len()),
                problem: "are too many (at most 32)",
            });
        }
        specs
            .iter()
            .map(|s| Hours::parse(s.as_ref()))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// True for "at any time".
    pub fn is_always(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `at` (local time) is inside; an empty schedule contains every time.
    pub fn contains(&self, at: &Zoned) -> bool {
        self.is_always() || self.0.iter().any(|h| h.contains(at))
    }

    /// Instants at which some span starts, over local dates `from..from+days`.
    pub fn starts(&self, zone: &TimeZone, from: Date, days: i16) -> Vec<Timestamp> {
        self.boundaries(from, days, |h, d| h.start_on(d, zone))
    }

    /// Instants at which some span ends, over spans started on `from..from+days`.
    pub fn ends(&self, zone: &TimeZone, from: Date, days: i16) -> Vec<Timestamp> {
        self.boundaries(from, days, |h, d| h.end_after(d, zone))
    }

    fn boundaries(
        &self,
        from: Date,
        days: i16,
        at: impl Fn(Hours, Date) -> Option<Timestamp>,
    ) -> Vec<Timestamp> {
        let mut out = Vec::new();
        let mut date = from;
        for _ in 0..days {
            out.extend(self.0.iter().filter_map(|&h| at(h, date)));
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        out
    }

    /// The spans as written back.
    pub fn specs(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.specs().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let specs = Vec::<String>::deserialize(deserializer)?;
        Self::parse(&specs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(zone: &str, text: &str) -> Zoned {
        let tz = TimeZone::get(zone).expect("zone");
        text.parse::<jiff::civil::DateTime>()
            .expect("datetime")
            .to_zoned_datetime(tz)
            .expect("zoned")
    }

    #[test]
    fn spans_parse_and_print_back() {
        for (spec, printed) in [
            ("09:00-20:00", "09:00-20:00"),
            ("mon-fri 09:00-17:30", "mon,tue,wed,thu,fri 09:00-17:30"),
            ("sat,sun 10:00-24:00", "sat,sun 10:00-24:00"),
            ("fri-mon 21:00-08:00", "mon,fri,sat,sun 21:00-08:00"),
        ] {
            assert_eq!(Hours::parse(spec).expect(spec).to_string(), printed);
        }
        for bad in [
            "",
            "9-17",
            "09:00",
            "25:00-26:00",
            "09:00-09:00",
            "xyz 09:00-10:00",
            "24:00-01:00",
            "09:60-10:00",
            "mon- 09:00-10:00",
        ] {
            assert!(Hours::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn hours_contain_their_local_times_only() {
        let office = Hours::parse("mon-fri 09:00-17:00").expect("hours");
        // 2026-12-04 is a Friday.
        assert!(office.contains(&at("Europe/Paris", "2026-12-04T09:00")));
        assert!(office.contains(&at("Europe/Paris", "2026-12-04T16:59")));
        assert!(!office.contains(&at("Europe/Paris", "2026-12-04T17:00")));
        assert!(
            !office.contains(&at("Europe/Paris", "2026-12-05T10:00")),
            "Saturday"
        );
        let night = Hours::parse("fri 21:00-08:00").expect("hours");
        assert!(night.contains(&at("UTC", "2026-12-04T23:00")));
        assert!(
            night.contains(&at("UTC", "2026-12-05T07:59")),
            "Saturday morning is Friday's night"
        );
        assert!(
            !night.contains(&at("UTC", "2026-12-05T21:30")),
            "Saturday night is not"
        );
        assert!(
            !night.contains(&at("UTC", "2026-12-04T07:00")),
            "Friday morning is Thursday's"
        );
    }

    #[test]
    fn a_start_in_the_spring_forward_gap_begins_when_clocks_resume() {
        // Europe/Paris skips 02:00-03:00 on 2026-03-29.
        let tz = TimeZone::get("Europe/Paris").expect("zone");
        let early = Schedule::parse(&["02:30-04:00"]).expect("schedule");
        let date: Date = "2026-03-29".parse().expect("date");
        let starts = early.starts(&tz, date, 1);
        assert_eq!(starts.len(), 1);
        assert_eq!(starts[0].to_string(), "2026-03-29T01:30:00Z", "03:30 CEST");
    }
}
