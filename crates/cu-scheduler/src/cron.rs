//! Crons: `Cron-Interval` / `Cron-Tag-*` parsing and tick generation, as the reference CU
//! (`servers/cu/src/domain/lib/loadMessages.js`: `parseCrons`, `cronMessagesBetweenWith`).
//!
//! The reference walks one second at a time from the left message's timestamp `L` (ticks `L + 1000·k`,
//! `k = 0, 1, ...`, while `< R`, the next message's timestamp). At a tick it first moves to the next block
//! whose second has been reached (one block per tick) and emits that block's block-crons (`Timestamp` =
//! the block's timestamp), then the time-crons due at the tick's second (`(sec - origin_sec) % value == 0`,
//! not at the origin itself), sorted by interval. [`ticks`] computes the same list arithmetically: for
//! each cron it steps through the multiples of its interval inside the window, so the cost is
//! proportional to the number of ticks emitted, not to the seconds covered.
//!
//! Blocks are the node's local blocks ([`crate::chain::BLOCK_MS`] apart, so at most one block per tick).

use crate::chain::{BLOCK_MS, block_timestamp};
use crate::error::SchedError;

/// What a cron counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronKind {
    /// Every `n` blocks (`parseInt` of the value; `None` when it is NaN, 0 or `None` never fires).
    Blocks(Option<i64>),
    /// Every `n` seconds (`None` when `ms` could not parse the interval: such a cron never fires).
    Seconds(Option<u64>),
}

/// One cron of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    /// The raw `Cron-Interval` value, e.g. `10-minutes` (part of the cron's name).
    pub interval: String,
    /// What it counts.
    pub kind: CronKind,
    /// The cron message's tags (`Cron-Tag-<Name>: value` → `<Name>: value`).
    pub tags: Vec<(String, String)>,
}

/// One generated cron message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronTick {
    /// `Timestamp` of the cron message (ms).
    pub timestamp: u64,
    /// `Block-Height` of the cron message.
    pub block_height: u64,
    /// The reference's cron name `"<i>-<interval>"` (`i` indexes the cron within its kind, time crons
    /// sorted by interval).
    pub name: String,
    /// Index of the cron in the list given to [`ticks`] (for its tags).
    pub cron: usize,
}

/// JavaScript's `parseInt(s)` (radix 10, `0x` prefix = 16) as an integer; `None` for NaN.
fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, rest) = if rest.len() >= 2 && (rest.starts_with("0x") || rest.starts_with("0X")) {
        (16, &rest[2..])
    } else {
        (10, rest)
    };
    let digits: String = rest.chars().take_while(|c| c.is_digit(radix)).collect();
    if digits.is_empty() {
        return None;
    }
    let v = i64::from_str_radix(&digits, radix).unwrap_or(i64::MAX);
    Some(if neg { -v } else { v })
}

/// `ms` 2.1.3 `parse(str)` in milliseconds; `None` where `ms` returns `undefined`.
pub fn ms_parse(s: &str) -> Option<f64> {
    if s.len() > 100 {
        return None;
    }
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i = 1;
    }
    let start_digits = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_end = i;
    let mut end = int_end;
    if i < b.len() && b[i] == b'.' {
        let mut j = i + 1;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > i + 1 {
            end = j;
        }
    }
    // `(?:\d+)?\.?\d+` needs at least one digit at its end.
    if end == start_digits || (end == int_end && int_end == start_digits) {
        return None;
    }
    let number: f64 = s[..end].parse().ok()?;
    let rest = s[end..].trim_start_matches(' ').to_ascii_lowercase();
    let factor = match rest.as_str() {
        "years" | "year" | "yrs" | "yr" | "y" => 31_557_600_000.0,
        "weeks" | "week" | "w" => 604_800_000.0,
        "days" | "day" | "d" => 86_400_000.0,
        "hours" | "hour" | "hrs" | "hr" | "h" => 3_600_000.0,
        "minutes" | "minute" | "mins" | "min" | "m" => 60_000.0,
        "seconds" | "second" | "secs" | "sec" | "s" => 1000.0,
        "milliseconds" | "millisecond" | "msecs" | "msec" | "ms" | "" => 1.0,
        _ => return None,
    };
    Some(number * factor)
}

fn parse_interval(interval: &str) -> Result<CronKind, SchedError> {
    let mut parts = interval.split('-').map(str::trim);
    let value = parts.next().unwrap_or("");
    let unit = parts.next();
    match unit {
        Some("blocks") | Some("block") => Ok(CronKind::Blocks(parse_int(value))),
        _ => {
            // `[value, unit].join(' ')`: a missing unit joins as an empty string.
            let text = format!("{value} {}", unit.unwrap_or(""));
            match ms_parse(&text) {
                None => Ok(CronKind::Seconds(None)),
                Some(ms) => {
                    let secs = (ms / 1000.0).floor();
                    if secs <= 0.0 {
                        Err(SchedError::Cron(
                            "time-based cron cannot be less than 1 second".into(),
                        ))
                    } else {
                        Ok(CronKind::Seconds(Some(secs.min(u64::MAX as f64) as u64)))
                    }
                }
            }
        }
    }
}

/// The crons of a process from its tags, in tag order (`parseCrons`).
pub fn parse_crons<S: AsRef<str>>(tags: &[(S, S)]) -> Result<Vec<Cron>, SchedError> {
    let mut crons: Vec<Cron> = Vec::new();
    for (name, value) in tags {
        let (name, value) = (name.as_ref(), value.as_ref());
        if name == "Cron-Interval" {
            crons.push(Cron {
                interval: value.to_string(),
                kind: parse_interval(value)?,
                tags: Vec::new(),
            });
        } else if let Some(tag) = name.strip_prefix("Cron-Tag-").filter(|t| !t.is_empty()) {
            match crons.last_mut() {
                Some(c) => c.tags.push((tag.to_string(), value.to_string())),
                None => {
                    return Err(SchedError::Cron(format!(
                        "Unmatched Cron-Tag with no preceding Cron-Interval: {name}"
                    )));
                }
            }
        }
    }
    Ok(crons)
}

/// A point of the schedule: a block height and a timestamp (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// Block height.
    pub height: u64,
    /// Timestamp (ms).
    pub timestamp: u64,
}

fn ceil_div(a: u64, b: u64) -> u64 {
    a / b + u64::from(!a.is_multiple_of(b))
}

/// The cron ticks of the segment that starts at scheduled message `left` and ends before `right_ts`
/// (`None`: not known yet), restricted to ticks whose time `L + 1000·k` lies in `[from, to)`;
/// `origin` is the process's own point (its spawn). In the reference's order.
pub fn ticks(
    crons: &[Cron],
    origin: Point,
    left: Point,
    right_ts: Option<u64>,
    from: u64,
    to: u64,
) -> Vec<CronTick> {
    let l = left.timestamp;
    let sl = l / 1000;
    let so = origin.timestamp / 1000;
    let to = right_ts.map_or(to, |r| to.min(r));
    let from = from.max(l);
    if to <= from {
        return Vec::new();
    }
    let kmin = ceil_div(from - l, 1000);
    let kmax = ceil_div(to - l, 1000);
    if kmin >= kmax {
        return Vec::new();
    }
    let r = right_ts.unwrap_or(u64::MAX);
    // (k, phase, index-in-kind, tick)
    let mut out: Vec<(u64, u8, usize, CronTick)> = Vec::new();

    // Block crons: blocks b with L < ts(b) < R, reached at tick k_b = sec(ts(b)) - sec(L) in [kmin, kmax).
    let lo_ts = (l + 1).max((sl + kmin) * 1000);
    let hi_ts = ((sl + kmax) * 1000).min(r); // exclusive
    let (hlo, hhi) = (ceil_div(lo_ts, BLOCK_MS), ceil_div(hi_ts, BLOCK_MS));
    let blocks: Vec<(usize, &Cron, u64)> = crons
        .iter()
        .enumerate()
        .filter_map(|(idx, c)| match c.kind {
            CronKind::Blocks(Some(v)) if v != 0 => Some((idx, c, v.unsigned_abs())),
            CronKind::Blocks(_) => Some((idx, c, 0)),
            _ => None,
        })
        .collect();
    for (i, (idx, c, v)) in blocks.iter().enumerate() {
        if *v == 0 || hlo >= hhi {
            continue;
        }
        let oh = origin.height;
        // First h >= hlo with h ≡ oh (mod v).
        let rem = (oh % v + v - hlo % v) % v;
        let mut h = hlo + rem;
        while h < hhi {
            if h != oh {
                let ts = block_timestamp(h);
                let k = ts / 1000 - sl;
                out.push((
                    k,
                    0,
                    i,
                    CronTick {
                        timestamp: ts,
                        block_height: h,
                        name: format!("{i}-{}", c.interval),
                        cron: *idx,
                    },
                ));
            }
            h += v;
        }
    }

    // Time crons, sorted by interval (stable; unparsable ones, which never fire, last).
    let mut times: Vec<(usize, &Cron, Option<u64>)> = crons
        .iter()
        .enumerate()
        .filter_map(|(idx, c)| match c.kind {
            CronKind::Seconds(v) => Some((idx, c, v)),
            CronKind::Blocks(_) => None,
        })
        .collect();
    times.sort_by_key(|(_, _, v)| v.unwrap_or(u64::MAX));
    // The block the walk is at when it reaches tick k (the left message's height before the first block).
    let height_at = |k: u64| -> u64 {
        let end = (sl + k + 1) * 1000; // blocks whose second is <= sec(tick)
        let mut h = (end - 1) / BLOCK_MS;
        if block_timestamp(h) >= r {
            h = h.saturating_sub(1);
        }
        if block_timestamp(h) > l && block_timestamp(h) < r {
            h
        } else {
            left.height
        }
    };
    for (i, (idx, c, v)) in times.iter().enumerate() {
        let Some(v) = *v else { continue };
        if v == 0 {
            continue;
        }
        // sec = sl + k; need (sec - so) % v == 0, sec != so.
        let target = so % v;
        let first = (sl + kmin) % v;
        let mut k = kmin + (target + v - first) % v;
        while k < kmax {
            let sec = sl + k;
            if sec != so {
                out.push((
                    k,
                    1,
                    i,
                    CronTick {
                        timestamp: l + 1000 * k,
                        block_height: height_at(k),
                        name: format!("{i}-{}", c.interval),
                        cron: *idx,
                    },
                ));
            }
            k = match k.checked_add(v) {
                Some(n) => n,
                None => break,
            };
        }
    }
    out.sort_by_key(|(k, phase, i, _)| (*k, *phase, *i));
    out.into_iter().map(|(_, _, _, t)| t).collect()
}
