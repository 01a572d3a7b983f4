//! What a proxy does to traffic ([`NetFault`]), and its textual form (`delay=200ms~50ms`, …).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail};

/// Stall of a lost chunk when the spec does not name one: about a first TCP retransmission.
const DEFAULT_LOSS_STALL: Duration = Duration::from_millis(200);

/// What the proxy does to traffic right now.
#[derive(Debug, Clone, PartialEq)]
pub enum NetFault {
    /// Forward untouched.
    None,
    /// Every forwarded chunk, in each direction, is delivered `latency` (plus a uniformly random
    /// `0..=jitter`) after it was read. Order within a connection is preserved and chunks are
    /// pipelined, so throughput is bounded by buffering, not by the latency per chunk.
    Delay {
        /// Fixed delay of every chunk.
        latency: Duration,
        /// Upper bound of the extra random delay of each chunk.
        jitter: Duration,
    },
    /// TCP-like packet loss: each chunk is, with probability `probability`, held back for `stall`
    /// (as a retransmission timeout would) before delivery. Order is preserved, so a stalled chunk
    /// also holds back the ones behind it. The decisions for the n-th connection's each direction
    /// are reproducible from `seed`.
    Loss {
        /// Chance in `0.0..=1.0` that a chunk is stalled.
        probability: f64,
        /// How long a stalled chunk is held back.
        stall: Duration,
        /// Seed of the decision sequence.
        seed: u64,
    },
    /// A partition: packets vanish. Existing connections stop reading from both sockets, so
    /// kernel buffers fill and senders block; nothing is closed. New connections are accepted but
    /// not connected upstream until the partition heals. When the fault changes, everything held
    /// is delivered with no byte lost, like TCP retransmission after a healed partition.
    Partition,
    /// Every existing connection is closed at once (with a TCP RST), and new connections are
    /// accepted and closed immediately, until the fault changes.
    Reset,
}

const SPEC_FORMS: &str = "none, delay=<latency>[~<jitter>], \
                          loss=<percent>%[/<stall>][,seed=<n>], partition or reset";

impl FromStr for NetFault {
    type Err = anyhow::Error;

    /// Parses `none`, `delay=200ms`, `delay=200ms~50ms`, `loss=5%`, `loss=5%/300ms`,
    /// `loss=5%/300ms,seed=7`, `partition` or `reset`. Durations are humantime (`1s 500ms`).
    fn from_str(spec: &str) -> anyhow::Result<Self> {
        let trimmed = spec.trim();
        let (name, value) = match trimmed.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (trimmed, None),
        };
        match (name, value) {
            ("none", None) => Ok(Self::None),
            ("partition", None) => Ok(Self::Partition),
            ("reset", None) => Ok(Self::Reset),
            ("none" | "partition" | "reset", Some(value)) => {
                bail!("network fault `{spec}`: `{name}` takes no value, but got `{value}`")
            }
            ("delay" | "loss", None) => {
                bail!(
                    "network fault `{spec}`: `{name}` needs a value, as in `{name}=...` ({SPEC_FORMS})"
                )
            }
            ("delay", Some(value)) => {
                let (latency, jitter) = match value.split_once('~') {
                    Some((latency, jitter)) => (latency, Some(jitter)),
                    None => (value, None),
                };
                let latency = parse_duration(spec, "latency", latency)?;
                let jitter = match jitter {
                    Some(jitter) => parse_duration(spec, "jitter", jitter)?,
                    None => Duration::ZERO,
                };
                Ok(Self::Delay { latency, jitter })
            }
            ("loss", Some(value)) => {
                let (value, seed) = match value.split_once(',') {
                    Some((value, option)) => {
                        let seed = option.trim().strip_prefix("seed=").ok_or_else(|| {
                            anyhow!("network fault `{spec}`: unknown loss option `{option}`, expected `seed=<n>`")
                        })?;
                        let seed = seed.trim().parse::<u64>().map_err(|err| {
                            anyhow!("network fault `{spec}`: bad loss seed `{seed}`: {err}")
                        })?;
                        (value, seed)
                    }
                    None => (value, 0),
                };
                let (probability, stall) = match value.split_once('/') {
                    Some((probability, stall)) => {
                        (probability, parse_duration(spec, "loss stall", stall)?)
                    }
                    None => (value, DEFAULT_LOSS_STALL),
                };
                let probability = parse_probability(spec, probability.trim())?;
                Ok(Self::Loss { probability, stall, seed })
            }
            _ => bail!("unknown network fault `{name}` in `{spec}`; expected {SPEC_FORMS}"),
        }
    }
}

fn parse_duration(spec: &str, what: &str, text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    humantime::parse_duration(text)
        .map_err(|err| anyhow!("network fault `{spec}`: bad {what} `{text}`: {err}"))
}

/// `5%` or a plain fraction such as `0.05`; must lie within 0..=1.
fn parse_probability(spec: &str, text: &str) -> anyhow::Result<f64> {
    let bad = |why: &str| anyhow!("network fault `{spec}`: bad loss probability `{text}`: {why}");
    let probability = match text.strip_suffix('%') {
        Some(percent) => {
            percent.trim().parse::<f64>().map_err(|err| bad(&err.to_string()))? / 100.0
        }
        None => text.parse::<f64>().map_err(|err| bad(&err.to_string()))?,
    };
    if !(0.0..=1.0).contains(&probability) {
        return Err(bad("must be within 0%..=100%"));
    }
    Ok(probability)
}

/// The shortest decimal percentage that parses back (as [`parse_probability`] does) to exactly
/// `probability`: `0.05` is `5`, not the `5.000000000000001` that `0.05 * 100.0` prints as.
fn percent_text(probability: f64) -> Option<String> {
    let percent = probability * 100.0;
    (0..=17).map(|decimals| format!("{percent:.decimals$}")).find(|text| {
        text.parse::<f64>().is_ok_and(|parsed| (parsed / 100.0).to_bits() == probability.to_bits())
    })
}

impl fmt::Display for NetFault {
    /// The form [`FromStr`] parses back to an equal value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Partition => f.write_str("partition"),
            Self::Reset => f.write_str("reset"),
            Self::Delay { latency, jitter } => {
                write!(f, "delay={}", humantime::format_duration(*latency))?;
                if !jitter.is_zero() {
                    write!(f, "~{}", humantime::format_duration(*jitter))?;
                }
                Ok(())
            }
            Self::Loss { probability, stall, seed } => {
                match percent_text(*probability) {
                    Some(percent) => write!(f, "loss={percent}%")?,
                    None => write!(f, "loss={probability}")?,
                }
                if *stall != DEFAULT_LOSS_STALL {
                    write!(f, "/{}", humantime::format_duration(*stall))?;
                }
                if *seed != 0 {
                    write!(f, ",seed={seed}")?;
                }
                Ok(())
            }
        }
    }
}
