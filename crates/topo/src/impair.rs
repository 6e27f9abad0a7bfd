//! Link impairment settings (delay, jitter, loss, duplicate, reorder, rate,
//! seed) as the file and `weft impair` write them, and their checks. The
//! switch datapath and the tunnel processes apply them, through
//! [`core_config`]; this kernel has no netem.

use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use weft_switch::impair::{GilbertElliott, ImpairConfig};

use crate::Error;

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
    pub fn parse(s: &str) -> Result<Direction, Error> {
        match s {
            "both" => Ok(Direction::Both),
            "out" => Ok(Direction::Out),
            "in" => Ok(Direction::In),
            _ => Err(Error::Unknown {
                what: "direction",
                value: s.into(),
                choices: "\"both\" (the default), \"out\" (frames the switch sends out of the port) or \"in\" (frames it receives there)".into(),
            }),
        }
    }

    /// The name the file, `weft impair` and JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Both => "both",
            Direction::Out => "out",
            Direction::In => "in",
        }
    }

    pub fn has_out(self) -> bool {
        self != Direction::In
    }

    pub fn has_in(self) -> bool {
        self != Direction::Out
    }
}

/// Burst loss (Gilbert-Elliott, netem's `loss gemodel p r 1-h 1-k`):
/// `burst = { enter = "1%", exit = "25%", loss = "100%", good_loss = "0%" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Burst {
    /// Chance, before each frame, that a good link turns bad.
    pub enter_ppm: u32,
    /// Chance, before each frame, that a bad link turns good (mean burst
    /// length 1/exit frames).
    pub exit_ppm: u32,
    /// Loss while bad.
    pub loss_ppm: u32,
    /// Loss while good.
    pub good_loss_ppm: u32,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<Burst>,
    /// Share of frames with one bit flipped (past the Ethernet header).
    #[serde(default)]
    pub corrupt_ppm: u32,
    pub duplicate_ppm: u32,
    /// Share of frames sent at once instead of after the delay.
    pub reorder_ppm: u32,
    /// Bits per second; `None` is unlimited.
    pub rate_bps: Option<u64>,
    /// With a rate: frames waiting for the link at most; `None` bounds the
    /// wait to 500 ms instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<u32>,
    /// Seed of the random choices; `None` derives one from the lab, switch
    /// and port names, so a run replays the same way by default too.
    pub seed: Option<u64>,
    pub direction: Direction,
    /// Other settings for the `in` direction (asymmetric links): these
    /// settings then apply to `out` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<Box<Impairment>>,
}

/// The impairment core's settings for `i` (one direction), with its PRNG
/// seeded by `seed`: the one mapping for every place that impairs (the
/// datapath's wires and switch ports, the tunnel ends). The core's own
/// bounds (queue limits, the longest backlog) stay its defaults.
pub fn core_config(i: &Impairment, seed: u64) -> ImpairConfig {
    ImpairConfig {
        delay: Duration::from_micros(i.delay_us),
        jitter: Duration::from_micros(i.jitter_us),
        loss_ppm: i.loss_ppm,
        burst: i.burst.map(|b| GilbertElliott {
            enter_ppm: b.enter_ppm,
            exit_ppm: b.exit_ppm,
            bad_loss_ppm: b.loss_ppm,
            good_loss_ppm: b.good_loss_ppm,
        }),
        corrupt_ppm: i.corrupt_ppm,
        duplicate_ppm: i.duplicate_ppm,
        reorder_ppm: i.reorder_ppm,
        rate_bps: i.rate_bps.unwrap_or(0),
        queue: i.queue.unwrap_or(0) as usize,
        seed,
        ..ImpairConfig::default()
    }
}

/// The named presets, each with the figures it stands for; see
/// docs/conditions.md for where they come from.
pub const PRESETS: [(&str, &str); 4] = [
    ("wifi", "delay 3ms, jitter 2ms, loss 0.2%, rate 50mbit, queue 100"),
    (
        "lossy-wifi",
        "delay 8ms, jitter 6ms, loss 1% plus bursts (enter 1%, exit 30%, loss 50%), rate 10mbit, queue 50",
    ),
    ("lte", "delay 35ms, jitter 10ms, loss 0.5%, rate 20mbit, queue 200"),
    ("satellite", "delay 300ms, jitter 5ms, loss 0.5%, rate 15mbit, queue 500"),
];

/// The settings of a preset; keys given beside it override its values.
pub fn preset(name: &str) -> Result<Impairment, Error> {
    let i = |delay_ms: u64, jitter_ms: u64, loss_ppm: u32, rate_mbit: u64, queue: u32| Impairment {
        delay_us: delay_ms * 1000,
        jitter_us: jitter_ms * 1000,
        loss_ppm,
        rate_bps: Some(rate_mbit * 1_000_000),
        queue: Some(queue),
        ..Default::default()
    };
    Ok(match name {
        "wifi" => i(3, 2, 2_000, 50, 100),
        "lossy-wifi" => Impairment {
            burst: Some(Burst {
                enter_ppm: 10_000,
                exit_ppm: 300_000,
                loss_ppm: 500_000,
                good_loss_ppm: 0,
            }),
            ..i(8, 6, 10_000, 10, 50)
        },
        "lte" => i(35, 10, 5_000, 20, 200),
        "satellite" => i(300, 5, 5_000, 15, 500),
        _ => {
            return Err(Error::Unknown {
                what: "preset",
                value: name.into(),
                choices: format!(
                    "one of {}",
                    PRESETS
                        .iter()
                        .map(|(n, _)| format!("\"{n}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
        }
    })
}

/// Longest delay accepted: far longer than any real path, short enough
/// that a typo ("20s" for "20ms") does not hold frames for hours.
pub const MAX_DELAY_US: u64 = 60_000_000;
pub const MIN_RATE_BPS: u64 = 8_000;
pub const MAX_RATE_BPS: u64 = 1_000_000_000_000;

/// `20ms`, `1.5s`, `500us`, `0`.
pub fn parse_duration(s: &str) -> Result<u64, Error> {
    let t = s.trim();
    let bad = || Error::Malformed {
        what: "a duration",
        value: s.into(),
        help: "write a number with us, ms or s, like \"20ms\"".into(),
    };
    let (num, mult) = if let Some(n) = t.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1e6)
    } else if t == "0" {
        ("0", 1.0)
    } else {
        return Err(bad());
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    let us = v * mult;
    if !(0.0..=MAX_DELAY_US as f64).contains(&us) {
        return Err(Error::OutOfRange {
            value: s.into(),
            range: "0 to 60s",
        });
    }
    Ok(us.round() as u64)
}

/// `1%`, `0.5%`, `100%` to parts per million.
pub fn parse_percent(s: &str) -> Result<u32, Error> {
    let t = s.trim();
    let bad = || Error::Malformed {
        what: "a percentage",
        value: s.into(),
        help: "write it like \"1%\" or \"0.5%\"".into(),
    };
    let n = t.strip_suffix('%').ok_or_else(bad)?;
    let v: f64 = n.trim().parse().map_err(|_| bad())?;
    if !(0.0..=100.0).contains(&v) {
        return Err(Error::OutOfRange {
            value: s.into(),
            range: "0% to 100%",
        });
    }
    Ok((v * 10_000.0).round() as u32)
}

/// `10mbit`, `1gbit`, `512kbit`, `64000bit` (tc's units; tc's `bps` means
/// bytes per second, a classic mistake, so it is not taken).
pub fn parse_rate(s: &str) -> Result<u64, Error> {
    let t = s.trim().to_ascii_lowercase();
    let help = || Error::Malformed {
        what: "a rate",
        value: s.into(),
        help: "write bits per second with bit, kbit, mbit or gbit, like \"10mbit\"".into(),
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
        return Err(Error::OutOfRange {
            value: s.into(),
            range: "8kbit to 1000gbit",
        });
    }
    Ok(bps.round() as u64)
}

/// How the settings were written, so a check's advice names what the
/// user would type: a key of the file or a flag of `weft impair`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spelling {
    /// `delay = "10ms"` in a lab file.
    File,
    /// `--delay 10ms` on the command line.
    Flags,
}

impl Spelling {
    /// A setting's name as written: `delay` or `--delay`.
    fn key(self, key: &str) -> String {
        match self {
            Spelling::File => key.to_string(),
            Spelling::Flags => format!("--{key}"),
        }
    }

    /// A setting with a value as written: `delay = "10ms"` or `--delay 10ms`.
    fn set(self, key: &str, value: &str) -> String {
        match self {
            Spelling::File => format!("{key} = \"{value}\""),
            Spelling::Flags => format!("--{key} {value}"),
        }
    }

    /// The burst's exit chance, a key of its own in the file's `burst`
    /// table and the second value of `--burst`.
    fn burst_exit(self, value: &str) -> String {
        match self {
            Spelling::File => Spelling::File.set("exit", value),
            Spelling::Flags => format!("--burst ENTER,{value}"),
        }
    }
}

impl Impairment {
    /// Checks that hold between the values, with advice in the file's
    /// spelling; each error names the key.
    pub fn check(&self) -> Result<(), Error> {
        self.check_as(Spelling::File)
    }

    /// [`Impairment::check`] with the advice spelled as the settings were
    /// written.
    pub fn check_as(&self, spelling: Spelling) -> Result<(), Error> {
        let conflict = |key, why: String| Err(Error::Impair { key, why });
        let k = |key: &str| spelling.key(key);
        let set = |key: &str, v: &str| spelling.set(key, v);
        if self.jitter_us > self.delay_us {
            return conflict("jitter", format!("{} is larger than {}: a frame cannot leave before it came; write a {} of at most the delay", k("jitter"), k("delay"), k("jitter")));
        }
        if let Some(q) = self.queue {
            if self.rate_bps.is_none() {
                return conflict(
                    "queue",
                    format!(
                        "{} is the buffer in front of a rate limit: add {} or so",
                        k("queue"),
                        set("rate", "10mbit")
                    ),
                );
            }
            if !(1..=100_000).contains(&q) {
                return conflict(
                    "queue",
                    format!(
                        "{} {q} is out of range: write 1 to 100000 frames",
                        k("queue")
                    ),
                );
            }
        }
        if let Some(b) = &self.burst {
            if b.exit_ppm == 0 {
                return conflict("burst", format!("{} exit is 0%: the link would stay bad for ever once it turned bad; write {} or so", k("burst"), spelling.burst_exit("25%")));
            }
        }
        if let Some(i) = &self.inbound {
            if self.direction != Direction::Both {
                return conflict("direction", format!("{} with separate in settings: the top-level settings are then the out direction's; remove {}", k("direction"), k("direction")));
            }
            i.check_as(spelling)?;
        }
        if self.reorder_ppm > 0 && self.delay_us == 0 {
            return conflict("reorder", format!("{} sends some frames at once, ahead of the delayed ones, so it needs a delay: add {} or so", k("reorder"), set("delay", "10ms")));
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
        if let Some(b) = &self.burst {
            w.push(format!(
                "burst enter {} exit {} loss {}{}",
                pct(b.enter_ppm),
                pct(b.exit_ppm),
                pct(b.loss_ppm),
                if b.good_loss_ppm > 0 {
                    format!(" good-loss {}", pct(b.good_loss_ppm))
                } else {
                    String::new()
                }
            ));
        }
        if self.corrupt_ppm > 0 {
            w.push(format!("corrupt {}", pct(self.corrupt_ppm)));
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
        if let Some(q) = self.queue {
            w.push(format!("queue {q}"));
        }
        if let Some(s) = self.seed {
            w.push(format!("seed {s}"));
        }
        if self.direction != Direction::Both {
            w.push(format!("direction {}", self.direction.as_str()));
        }
        if let Some(i) = &self.inbound {
            return format!(
                "out: {}; in: {}",
                if w.is_empty() {
                    "none".into()
                } else {
                    w.join(" ")
                },
                i.summary()
            );
        }
        if w.is_empty() {
            "none".into()
        } else {
            w.join(" ")
        }
    }
}

/// `impair = { preset = "lte", delay = "20ms", jitter = "5ms", loss = "1%",
/// burst = { ... }, corrupt = "0.1%", duplicate = "0.5%", reorder = "1%",
/// rate = "10mbit", queue = 100, seed = 7, direction = "both",
/// in = { ... } }` as written.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawImpair {
    preset: Option<Spanned<String>>,
    delay: Option<Spanned<String>>,
    jitter: Option<Spanned<String>>,
    loss: Option<Spanned<String>>,
    burst: Option<Spanned<RawBurst>>,
    corrupt: Option<Spanned<String>>,
    duplicate: Option<Spanned<String>>,
    reorder: Option<Spanned<String>>,
    rate: Option<Spanned<String>>,
    queue: Option<Spanned<u32>>,
    seed: Option<Spanned<u64>>,
    direction: Option<Spanned<String>>,
    #[serde(rename = "in")]
    inbound: Option<Spanned<Box<RawImpair>>>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBurst {
    enter: Spanned<String>,
    exit: Spanned<String>,
    loss: Option<Spanned<String>>,
    good_loss: Option<Spanned<String>>,
}

/// Check and convert a written `impair`; each problem goes to `err` with
/// its position, prefixed by `who`.
pub(crate) fn from_raw(
    who: &str,
    raw: &Spanned<RawImpair>,
    err: &mut dyn FnMut(Option<Range<usize>>, String),
) -> Option<Impairment> {
    let r = raw.get_ref();
    let mut ok = true;
    let mut out = match &r.preset {
        Some(p) => match preset(p.get_ref()) {
            Ok(i) => i,
            Err(why) => {
                err(Some(p.span()), format!("{who}: impair {why}"));
                return None;
            }
        },
        None => Impairment::default(),
    };
    let mut field =
        |key: &str, v: &Option<Spanned<String>>, parse: fn(&str) -> Result<u64, Error>| {
            let v = v.as_ref()?;
            match parse(v.get_ref()) {
                Ok(x) => Some(x),
                Err(why) => {
                    err(Some(v.span()), format!("{who}: impair {key}: {why}"));
                    ok = false;
                    None
                }
            }
        };
    let pct = |s: &str| parse_percent(s).map(u64::from);
    let set = |slot: &mut u64, v: Option<u64>| {
        if let Some(v) = v {
            *slot = v
        }
    };
    set(&mut out.delay_us, field("delay", &r.delay, parse_duration));
    set(
        &mut out.jitter_us,
        field("jitter", &r.jitter, parse_duration),
    );
    let set32 = |slot: &mut u32, v: Option<u64>| {
        if let Some(v) = v {
            *slot = v as u32
        }
    };
    set32(&mut out.loss_ppm, field("loss", &r.loss, pct));
    set32(&mut out.corrupt_ppm, field("corrupt", &r.corrupt, pct));
    set32(
        &mut out.duplicate_ppm,
        field("duplicate", &r.duplicate, pct),
    );
    set32(&mut out.reorder_ppm, field("reorder", &r.reorder, pct));
    if let Some(b) = &r.burst {
        let b = b.get_ref();
        out.burst = Some(Burst {
            enter_ppm: field("burst enter", &Some(b.enter.clone()), pct).unwrap_or(0) as u32,
            exit_ppm: field("burst exit", &Some(b.exit.clone()), pct).unwrap_or(0) as u32,
            loss_ppm: field("burst loss", &b.loss, pct).unwrap_or(PPM_ALL) as u32,
            good_loss_ppm: field("burst good_loss", &b.good_loss, pct).unwrap_or(0) as u32,
        });
    }
    if let Some(v) = field("rate", &r.rate, parse_rate) {
        out.rate_bps = Some(v);
    }
    if let Some(q) = &r.queue {
        out.queue = Some(*q.get_ref());
    }
    if let Some(s) = &r.seed {
        out.seed = Some(*s.get_ref());
    }
    if let Some(d) = &r.direction {
        match Direction::parse(d.get_ref()) {
            Ok(d) => out.direction = d,
            Err(why) => {
                err(Some(d.span()), format!("{who}: impair {why}"));
                ok = false;
            }
        }
    }
    if let Some(i) = &r.inbound {
        let inner = Spanned::new(i.span(), (**i.get_ref()).clone());
        match from_raw(&format!("{who} (in)"), &inner, err) {
            Some(mut x) => {
                if x.seed.is_none() {
                    x.seed = out.seed;
                }
                out.inbound = Some(Box::new(x));
            }
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    if let Err(e) = out.check() {
        let span = match e.setting().unwrap_or_default() {
            "jitter" => r.jitter.as_ref().map(|s| s.span()),
            "reorder" => r.reorder.as_ref().map(|s| s.span()),
            "queue" => r.queue.as_ref().map(|s| s.span()),
            "burst" => r.burst.as_ref().map(|s| s.span()),
            "direction" => r.direction.as_ref().map(|s| s.span()),
            _ => None,
        };
        err(span.or(Some(raw.span())), format!("{who}: {e}"));
        return None;
    }
    Some(out)
}

const PPM_ALL: u64 = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_become_the_cores_config_field_by_field() {
        let i = Impairment {
            delay_us: 20_000,
            jitter_us: 3_000,
            loss_ppm: 1_000,
            burst: Some(Burst {
                enter_ppm: 10_000,
                exit_ppm: 300_000,
                loss_ppm: 500_000,
                good_loss_ppm: 7,
            }),
            corrupt_ppm: 2,
            duplicate_ppm: 3,
            reorder_ppm: 4,
            rate_bps: Some(10_000_000),
            queue: Some(50),
            seed: Some(9),
            ..Default::default()
        };
        let c = core_config(&i, 42);
        assert_eq!(c.delay, Duration::from_millis(20));
        assert_eq!(c.jitter, Duration::from_millis(3));
        assert_eq!(c.loss_ppm, 1_000);
        assert_eq!(
            c.burst,
            Some(GilbertElliott {
                enter_ppm: 10_000,
                exit_ppm: 300_000,
                bad_loss_ppm: 500_000,
                good_loss_ppm: 7,
            })
        );
        assert_eq!((c.corrupt_ppm, c.duplicate_ppm, c.reorder_ppm), (2, 3, 4));
        assert_eq!((c.rate_bps, c.queue), (10_000_000, 50));
        assert_eq!(
            c.seed, 42,
            "the caller's seed (a direction's stream), not the file's"
        );
        let d = ImpairConfig::default();
        assert_eq!(
            (c.limit, c.limit_bytes, c.max_backlog),
            (d.limit, d.limit_bytes, d.max_backlog)
        );
        // Unlimited and unbounded are the core's zeros.
        let c = core_config(&Impairment::default(), 0);
        assert_eq!((c.rate_bps, c.queue, c.burst), (0, 0, None));
    }

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
    fn refusals_are_typed_and_carry_the_value() {
        assert_eq!(
            parse_duration("61s"),
            Err(Error::OutOfRange {
                value: "61s".into(),
                range: "0 to 60s"
            })
        );
        let e = parse_rate("10mbps").unwrap_err();
        assert!(
            matches!(&e, Error::Malformed { what: "a rate", value, .. } if value == "10mbps"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "`10mbps` is not a rate: write bits per second with bit, kbit, mbit or gbit, like \"10mbit\""
        );
        assert!(matches!(
            Direction::parse("up"),
            Err(Error::Unknown {
                what: "direction",
                ..
            })
        ));
        assert_eq!(Direction::Out.as_str(), "out");
        let names = [Direction::Both, Direction::Out, Direction::In].map(Direction::as_str);
        assert_eq!(names, ["both", "out", "in"]);
        for d in [Direction::Both, Direction::Out, Direction::In] {
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
    }

    #[test]
    fn presets_hold_their_documented_figures_and_check() {
        for (name, figures) in PRESETS {
            let p = preset(name).unwrap();
            assert!(p.check().is_ok(), "{name}");
            assert!(
                figures.starts_with(&format!("delay {}ms", p.delay_us / 1000)),
                "{name}: {figures}"
            );
            let mbit = p.rate_bps.unwrap() / 1_000_000;
            assert!(figures.contains(&format!("rate {mbit}mbit")), "{name}");
            assert!(
                figures.ends_with(&format!("queue {}", p.queue.unwrap())),
                "{name}"
            );
        }
        assert_eq!(
            preset("lossy-wifi").unwrap().summary(),
            "delay 8ms jitter 6ms loss 1% burst enter 1% exit 30% loss 50% rate 10mbit queue 50"
        );
        assert!(preset("5g")
            .unwrap_err()
            .to_string()
            .contains("\"satellite\""));
    }

    #[test]
    fn asymmetric_and_queue_checks() {
        let up = Impairment {
            rate_bps: Some(1_000_000),
            queue: Some(20),
            inbound: Some(Box::new(Impairment {
                rate_bps: Some(10_000_000),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert!(up.check().is_ok());
        assert_eq!(up.summary(), "out: rate 1mbit queue 20; in: rate 10mbit");
        let q = Impairment {
            queue: Some(5),
            ..Default::default()
        };
        assert_eq!(q.check().unwrap_err().setting(), Some("queue"));
        let d = Impairment {
            direction: Direction::In,
            ..up.clone()
        };
        assert_eq!(d.check().unwrap_err().setting(), Some("direction"));
        let b = Impairment {
            burst: Some(Burst {
                enter_ppm: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(b.check().unwrap_err().setting(), Some("burst"));
    }

    #[test]
    fn checks_between_values() {
        let mut i = Impairment {
            delay_us: 1000,
            jitter_us: 2000,
            ..Default::default()
        };
        assert_eq!(i.check().unwrap_err().setting(), Some("jitter"));
        i.jitter_us = 500;
        assert!(i.check().is_ok());
        i.delay_us = 500;
        i.reorder_ppm = 1;
        assert!(i.check().is_ok());
        let j = Impairment {
            reorder_ppm: 10,
            ..Default::default()
        };
        assert_eq!(j.check().unwrap_err().setting(), Some("reorder"));
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
