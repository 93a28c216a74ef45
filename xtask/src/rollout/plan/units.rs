//! The units a plan is written in that no crate covers: percentages, canary weights and the time
//! scale. Durations (`72h`, `35ms`) go through `humantime` and memory sizes (`4GiB`) through
//! `bytesize`, so nothing here parses those by hand.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A percentage between 0 and 100, written with its sign (`0.1%`).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Percent(f64);

impl Percent {
    /// The percentage as a number (`0.1` for `0.1%`).
    pub fn value(self) -> f64 {
        self.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl FromStr for Percent {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let number = text.trim().strip_suffix('%').ok_or_else(|| {
            format!("`{text}` is not a percentage: write it with a `%` sign, e.g. `0.1%`")
        })?;
        let value: f64 = number
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a percentage: `{number}` is not a number"))?;
        if !(0.0..=100.0).contains(&value) {
            return Err(format!("percentage `{text}` is outside 0%..=100%"));
        }
        Ok(Percent(value))
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PercentVisitor;

        impl Visitor<'_> for PercentVisitor {
            type Value = Percent;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a percentage with its sign, e.g. `0.1%`")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Percent, E> {
                text.parse().map_err(E::custom)
            }

            // A bare number is refused rather than guessed at: `0.1` could mean 0.1% or 10%, and
            // reading an SLO of 0.1% as 10% would let a broken canary through.
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Percent, E> {
                Err(E::custom(format!(
                    "`{value}` is ambiguous: write a percentage with its sign, e.g. `{value}%`"
                )))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Percent, E> {
                self.visit_f64(value as f64)
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Percent, E> {
                self.visit_f64(value as f64)
            }
        }

        deserializer.deserialize_any(PercentVisitor)
    }
}

/// The share of traffic routed to the Candle canary, in whole percent (0..=100), as nginx's
/// `canary-weight` annotation takes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "u64")]
pub struct Weight(u8);

impl Weight {
    /// No traffic on the canary: where every rollout starts.
    pub const ZERO: Weight = Weight(0);

    /// The share as nginx's `canary-weight` annotation takes it.
    pub fn percent(self) -> u8 {
        self.0
    }
}

impl TryFrom<u64> for Weight {
    type Error = String;

    fn try_from(value: u64) -> Result<Self, Self::Error> {
        match u8::try_from(value) {
            Ok(weight) if weight <= 100 => Ok(Weight(weight)),
            _ => Err(format!("canary weight {value} is outside 0..=100")),
        }
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.percent())
    }
}

/// How fast plan time runs against the wall clock: `1.0` is real time, `0.0001` turns the
/// 72 h canary hold into 26 s so the whole plan runs locally in minutes.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Deserialize)]
#[serde(try_from = "f64")]
pub struct TimeScale(f64);

impl TimeScale {
    /// Real time.
    pub const REAL_TIME: TimeScale = TimeScale(1.0);

    /// The factor itself.
    pub fn factor(self) -> f64 {
        self.0
    }

    /// Whether durations are used as written.
    pub fn is_real_time(self) -> bool {
        self.0 == 1.0
    }

    /// A duration of the plan as the runner should wait it: scaled, rounded to the millisecond
    /// (nothing the runner waits on is finer), and never scaled down to nothing, since an empty
    /// SLO window or hold would pass vacuously.
    pub fn apply(self, duration: Duration) -> Duration {
        if duration.is_zero() {
            return duration;
        }
        let millis = (duration.as_secs_f64() * self.0 * 1000.0).round();
        // `as` saturates for floats, so an absurd scale cannot wrap around.
        Duration::from_millis((millis as u64).max(1))
    }

    /// A request count as a scaled run should expect it: the load generator keeps its rate, so a
    /// window scaled by the factor sees that many times the requests. At least one request.
    pub fn apply_count(self, count: u64) -> u64 {
        ((count as f64 * self.0).ceil() as u64).max(1)
    }
}

impl Default for TimeScale {
    fn default() -> Self {
        TimeScale::REAL_TIME
    }
}

impl TryFrom<f64> for TimeScale {
    type Error = String;

    fn try_from(value: f64) -> Result<Self, Self::Error> {
        if value.is_finite() && value > 0.0 {
            Ok(TimeScale(value))
        } else {
            Err(format!(
                "time scale {value} must be a finite number greater than zero"
            ))
        }
    }
}

impl FromStr for TimeScale {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let value: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("time scale `{text}` is not a number"))?;
        TimeScale::try_from(value)
    }
}

impl fmt::Display for TimeScale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_requires_its_sign() {
        assert_eq!("0.1%".parse::<Percent>().map(Percent::value), Ok(0.1));
        assert!("0.1".parse::<Percent>().is_err());
        assert!("101%".parse::<Percent>().is_err());
        assert!(serde_yaml_ng::from_str::<Percent>("0.1").is_err());
    }

    #[test]
    fn weight_is_a_whole_percent_up_to_100() {
        assert!(serde_yaml_ng::from_str::<Weight>("100").is_ok());
        assert!(serde_yaml_ng::from_str::<Weight>("101").is_err());
        assert!(serde_yaml_ng::from_str::<Weight>("-1").is_err());
    }

    #[test]
    fn time_scale_turns_72h_into_seconds() {
        let scale: TimeScale = "0.0001".parse().expect("valid scale");
        let scaled = scale.apply(Duration::from_secs(72 * 3600));
        assert_eq!(scaled, Duration::from_millis(25_920));
    }

    #[test]
    fn time_scale_never_shrinks_a_window_to_nothing() {
        let scale: TimeScale = "0.0000001".parse().expect("valid scale");
        assert_eq!(
            scale.apply(Duration::from_secs(1)),
            Duration::from_millis(1)
        );
        assert_eq!(scale.apply_count(10_000), 1);
    }

    #[test]
    fn time_scale_rejects_zero_negative_and_nan() {
        assert!("0".parse::<TimeScale>().is_err());
        assert!("-1".parse::<TimeScale>().is_err());
        assert!("NaN".parse::<TimeScale>().is_err());
    }
}
