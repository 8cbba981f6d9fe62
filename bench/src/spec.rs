//! Values of the bench options: a time span drawn per call (`2`, `0.5`, `1..5`) and the DTMF
//! a phone presses (`none`, `from-uri`, `123#`, `1@1.5,2@2`).

use std::str::FromStr;
use std::time::Duration;

use rand::Rng;

/// A duration drawn uniformly from `min..=max` seconds for each call; a single number is fixed.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Span {
    /// Shortest.
    pub min: Duration,
    /// Longest.
    pub max: Duration,
}

impl Span {
    /// A fixed duration.
    pub const fn fixed(duration: Duration) -> Self {
        Self {
            min: duration,
            max: duration,
        }
    }

    /// One draw.
    pub fn draw(&self, rng: &mut impl Rng) -> Duration {
        if self.max <= self.min {
            return self.min;
        }
        let span = (self.max - self.min).as_micros() as u64;
        self.min + Duration::from_micros(rng.random_range(0..=span))
    }
}

/// The longest span accepted: a day.
const MAX_SECONDS: f64 = 86_400.0;

fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(0.0..=MAX_SECONDS).contains(&value) {
        return Err(format!("`{text}` must be between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(value))
}

impl FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once("..") {
            Some((min, max)) => {
                let (min, max) = (seconds(min)?, seconds(max)?);
                if max < min {
                    return Err(format!(
                        "`{text}`: write the range as MIN..MAX with MIN <= MAX"
                    ));
                }
                Ok(Self { min, max })
            }
            None => seconds(text).map(Self::fixed),
        }
    }
}

/// Which keys a phone presses once it has answered.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum DtmfSpec {
    /// None.
    None,
    /// The digits after `press-` in the Request-URI's user part, then `#`.
    FromUri,
    /// These keys, at the delay and gap of [`DtmfTiming`].
    Keys(String),
    /// Each key at its own offset after the answer.
    At(Vec<(Duration, char)>),
}

/// When keys are pressed, for [`DtmfSpec::FromUri`] and [`DtmfSpec::Keys`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct DtmfTiming {
    /// From the answer to the first key.
    pub delay: Duration,
    /// From one key's start to the next one's.
    pub gap: Duration,
    /// How long each key is held.
    pub duration: Duration,
}

/// Keys a phone may press (RFC 4733 events 0–15).
pub fn is_key(key: char) -> bool {
    matches!(key.to_ascii_uppercase(), '0'..='9' | '*' | '#' | 'A'..='D')
}

/// Longest key sequence a call presses.
pub const MAX_KEYS: usize = 64;

impl FromStr for DtmfSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "none" | "" => return Ok(Self::None),
            "from-uri" => return Ok(Self::FromUri),
            _ => {}
        }
        if text.contains('@') {
            let mut keys = Vec::new();
            for item in text.split(',') {
                let (key, at) = item
                    .split_once('@')
                    .ok_or_else(|| format!("`{item}`: write each key as KEY@SECONDS"))?;
                let mut chars = key.chars();
                let (Some(key), None) = (chars.next(), chars.next()) else {
                    return Err(format!("`{item}`: one key before @"));
                };
                if !is_key(key) {
                    return Err(format!("`{key}` is not a DTMF key (0-9 * # A-D)"));
                }
                keys.push((seconds(at)?, key));
            }
            if keys.len() > MAX_KEYS {
                return Err(format!("at most {MAX_KEYS} keys"));
            }
            keys.sort_by_key(|(at, _)| *at);
            return Ok(Self::At(keys));
        }
        if text.len() > MAX_KEYS || !text.chars().all(is_key) {
            return Err(format!(
                "`{text}`: use none, from-uri, up to {MAX_KEYS} keys (0-9 * # A-D) or KEY@SECONDS,..."
            ));
        }
        Ok(Self::Keys(text.to_owned()))
    }
}

impl DtmfSpec {
    /// The keys a call to `user` presses, each with its offset after the answer.
    pub fn keys_for(&self, user: &str, timing: &DtmfTiming) -> Vec<(Duration, char)> {
        let spaced = |keys: &str| {
            keys.chars()
                .take(MAX_KEYS)
                .enumerate()
                .map(|(n, key)| (timing.delay + timing.gap * n as u32, key))
                .collect()
        };
        match self {
            Self::None => Vec::new(),
            Self::FromUri => match user.strip_prefix("press-") {
                Some(digits) if !digits.is_empty() && digits.chars().all(is_key) => {
                    spaced(&format!("{digits}#"))
                }
                _ => Vec::new(),
            },
            Self::Keys(keys) => spaced(keys),
            Self::At(keys) => keys.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn spans_parse_and_draw_inside_their_bounds() {
        let fixed: Span = "2.5".parse().unwrap();
        assert_eq!(fixed, Span::fixed(Duration::from_millis(2500)));
        let range: Span = "1..3".parse().unwrap();
        let mut rng = SmallRng::seed_from_u64(1);
        let draws: Vec<_> = (0..200).map(|_| range.draw(&mut rng)).collect();
        assert!(
            draws
                .iter()
                .all(|d| (Duration::from_secs(1)..=Duration::from_secs(3)).contains(d))
        );
        assert!(draws.iter().any(|d| *d < Duration::from_secs(2)));
        assert!(draws.iter().any(|d| *d > Duration::from_secs(2)));
        for bad in ["x", "-1", "3..1", "1..", "1e9"] {
            assert!(bad.parse::<Span>().is_err(), "{bad}");
        }
    }

    #[test]
    fn from_uri_presses_the_digits_then_hash_at_the_delay_and_gap() {
        let timing = DtmfTiming {
            delay: Duration::from_secs(1),
            gap: Duration::from_millis(300),
            duration: Duration::from_millis(100),
        };
        let keys = DtmfSpec::FromUri.keys_for("press-482", &timing);
        let expect: Vec<_> = [(1000, '4'), (1300, '8'), (1600, '2'), (1900, '#')]
            .into_iter()
            .map(|(ms, k)| (Duration::from_millis(ms), k))
            .collect();
        assert_eq!(keys, expect);
        assert!(DtmfSpec::FromUri.keys_for("alice", &timing).is_empty());
        assert!(DtmfSpec::FromUri.keys_for("press-", &timing).is_empty());
        assert!(DtmfSpec::FromUri.keys_for("press-12x", &timing).is_empty());
    }

    #[test]
    fn explicit_offsets_and_key_strings_parse() {
        let spec: DtmfSpec = "2@2,1@1.5".parse().unwrap();
        assert_eq!(
            spec,
            DtmfSpec::At(vec![
                (Duration::from_millis(1500), '1'),
                (Duration::from_secs(2), '2')
            ])
        );
        assert_eq!(
            "12#".parse::<DtmfSpec>().unwrap(),
            DtmfSpec::Keys("12#".into())
        );
        assert_eq!("none".parse::<DtmfSpec>().unwrap(), DtmfSpec::None);
        for bad in ["12x", "x@1", "11@1", "1@-2"] {
            assert!(bad.parse::<DtmfSpec>().is_err(), "{bad}");
        }
    }
}
