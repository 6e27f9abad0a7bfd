//! Link impairment settings (delay, jitter, loss, duplicate, reorder, rate,
//! seed) as the file and `weft impair` write them, and their checks. The
//! switch datapath applies them; this kernel has no netem.

use serde::{Deserialize, Serialize};

/// Which frames of a switch port are impaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Frames the switch sends out of the port and frames it receives.
    #[default]
    Both,
    /// Frames the switch sends out of the port (towards the other end).
    Out,
    /// Frames the switch receives on the port.
    In,
}

impl Direction {
    pub fn parse(s: &str) -> Result<Direction, String> {
        match s {
            "both" => Ok(Direction::Both),
            "out" => Ok(Direction::Out),
            "in" => Ok(Direction::In),
            _ => Err(format!("direction `{s}` is not known: write \"both\" (the default), \"out\" (frames the switch sends out of the port) or \"in\" (frames it receives there)")),
        }
    }

    pub fn has_out(self) -> bool {
        self != Direction::In
    }

    pub fn has_in(self) -> bool {
        self != Direction::Out
    }
}

/// Impairment of one switch port. Probabilities are in parts per million
/// so that the model stays exact (`Eq`) and "0.5%" round-trips.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Impairment {
    pub delay_us: u64,
    /// Uniform in ±jitter around the delay; frames may then overtake each
    /// other, as with netem.
    pub jitter_us: u64,
    pub loss_ppm: u32,
    pub duplicate_ppm: u32,
    /// Share of frames sent at once instead of after the delay.
    pub reorder_ppm: u32,
    /// Bits per second; `None` is unlimited.
    pub rate_bps: Option<u64>,
    /// Seed of the random choices; `None` derives one from the lab, switch
    /// and port names, so a run replays the same way by default too.
    pub seed: Option<u64>,
    pub direction: Direction,
}

/// Longest delay accepted: far longer than any real path, short enough
/// that a typo ("20s" for "20ms") does not hold frames for hours.
pub const MAX_DELAY_US: u64 = 60_000_000;
pub const MIN_RATE_BPS: u64 = 8_000;
pub const MAX_RATE_BPS: u64 = 1_000_000_000_000;

/// `20ms`, `1.5s`, `500us`, `0`.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1e6)
    } else if t == "0" {
        ("0", 1.0)
    } else {
        return Err(format!(
            "`{s}` is not a duration: write a number with us, ms or s, like \"20ms\""
        ));
    };
    let v: f64 = num.trim().parse().map_err(|_| {
        format!("`{s}` is not a duration: write a number with us, ms or s, like \"20ms\"")
    })?;
    let us = v * mult;
    if !(0.0..=MAX_DELAY_US as f64).contains(&us) {
        return Err(format!("`{s}` is out of range: write 0 to 60s"));
    }
    Ok(us.round() as u64)
}

/// `1%`, `0.5%`, `100%` to parts per million.
pub fn parse_percent(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let n = t
        .strip_suffix('%')
        .ok_or_else(|| format!("`{s}` is not a percentage: write it like \"1%\" or \"0.5%\""))?;
    let v: f64 = n
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a percentage: write it like \"1%\" or \"0.5%\""))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("`{s}` is out of range: write 0% to 100%"));
    }
    Ok((v * 10_000.0).round() as u32)
}

/// `10mbit`, `1gbit`, `512kbit`, `64000bit` (tc's units; tc's `bps` means
/// bytes per second, a classic mistake, so it is not taken).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let help = || {
        format!(
            "`{s}` is not a rate: write bits per second with bit, kbit, mbit or gbit, like \"10mbit\""
        )
    };
    let (num, mult) = if let Some(n) = t.strip_suffix("gbit") {
        (n, 1e9)
    } else if let Some(n) = t.strip_suffix("mbit") {
        (n, 1e6)
    } else if let Some(n) = t.strip_suffix("kbit") {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix("bit") {
        (n, 1.0)
    } else {
        return Err(help());
    };
    let v: f64 = num.trim().parse().map_err(|_| help())?;
    let bps = v * mult;
    if !(MIN_RATE_BPS as f64..=MAX_RATE_BPS as f64).contains(&bps) {
        return Err(format!("`{s}` is out of range: write 8kbit to 1000gbit"));
    }
    Ok(bps.round() as u64)
}

impl Impairment {
    /// Checks that hold between the values; each error names the key.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.jitter_us > self.delay_us {
            return Err((
                "jitter",
                "jitter is larger than delay: a frame cannot leave before it came; write a jitter of at most the delay".into(),
            ));
        }
        if self.reorder_ppm > 0 && self.delay_us == 0 {
            return Err((
                "reorder",
                "reorder sends some frames at once, ahead of the delayed ones, so it needs a delay: add delay = \"10ms\" or so".into(),
            ));
        }
        Ok(())
    }

    /// `delay 20ms jitter 5ms loss 1% ...`, like `tc qdisc show`.
    pub fn summary(&self) -> String {
        let mut w = Vec::new();
        let ms = |us: u64| {
            if us.is_multiple_of(1000) {
                format!("{}ms", us / 1000)
            } else {
                format!("{}us", us)
            }
        };
        let pct = |p: u32| format!("{}%", f64::from(p) / 10_000.0);
        if self.delay_us > 0 {
            w.push(format!("delay {}", ms(self.delay_us)));
        }
        if self.jitter_us > 0 {
            w.push(format!("jitter {}", ms(self.jitter_us)));
        }
        if self.loss_ppm > 0 {
            w.push(format!("loss {}", pct(self.loss_ppm)));
        }
        if self.duplicate_ppm > 0 {
            w.push(format!("duplicate {}", pct(self.duplicate_ppm)));
        }
        if self.reorder_ppm > 0 {
            w.push(format!("reorder {}", pct(self.reorder_ppm)));
        }
        if let Some(r) = self.rate_bps {
            // The largest of tc's units that writes the rate exactly.
            let (n, unit) = [
                (1_000_000_000, "gbit"),
                (1_000_000, "mbit"),
                (1_000, "kbit"),
            ]
            .into_iter()
            .find(|(d, _)| r % d == 0)
            .map_or((r, "bit"), |(d, u)| (r / d, u));
            w.push(format!("rate {n}{unit}"));
        }
        if let Some(s) = self.seed {
            w.push(format!("seed {s}"));
        }
        if self.direction != Direction::Both {
            w.push(format!("direction {:?}", self.direction).to_lowercase());
        }
        if w.is_empty() {
            "none".into()
        } else {
            w.join(" ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_like_tc_writes_them() {
        assert_eq!(parse_duration("20ms"), Ok(20_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000));
        assert_eq!(parse_duration("250us"), Ok(250));
        assert_eq!(parse_duration("0"), Ok(0));
        assert!(parse_duration("20").is_err());
        assert!(parse_duration("-1ms").is_err());
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("61s").is_err());
        assert_eq!(parse_percent("1%"), Ok(10_000));
        assert_eq!(parse_percent("0.5%"), Ok(5_000));
        assert_eq!(parse_percent("100%"), Ok(1_000_000));
        assert!(parse_percent("101%").is_err());
        assert!(parse_percent("0.5").is_err());
        assert_eq!(parse_rate("10mbit"), Ok(10_000_000));
        assert_eq!(parse_rate("1Gbit"), Ok(1_000_000_000));
        assert_eq!(parse_rate("512kbit"), Ok(512_000));
        assert!(parse_rate("10mbps").is_err());
        assert!(parse_rate("100bit").is_err());
    }

    #[test]
    fn checks_between_values() {
        let mut i = Impairment {
            delay_us: 1000,
            jitter_us: 2000,
            ..Default::default()
        };
        assert_eq!(i.check().unwrap_err().0, "jitter");
        i.jitter_us = 500;
        assert!(i.check().is_ok());
        i.delay_us = 500;
        i.reorder_ppm = 1;
        assert!(i.check().is_ok());
        let j = Impairment {
            reorder_ppm: 10,
            ..Default::default()
        };
        assert_eq!(j.check().unwrap_err().0, "reorder");
        assert_eq!(
            Impairment {
                delay_us: 20_000,
                loss_ppm: 5_000,
                rate_bps: Some(10_000_000),
                seed: Some(7),
                ..Default::default()
            }
            .summary(),
            "delay 20ms loss 0.5% rate 10mbit seed 7"
        );
        let rate = |r| Impairment {
            rate_bps: Some(r),
            ..Default::default()
        };
        assert_eq!(rate(64_500).summary(), "rate 64500bit");
        assert_eq!(rate(512_000).summary(), "rate 512kbit");
        assert_eq!(rate(2_000_000_000).summary(), "rate 2gbit");
    }
}
