//! Clocks, the time zone and `strftime`, faked deterministically as the reference glue fakes them.
//!
//! - `Date.now()` is a per-process counter starting at 10000 ms and advancing by one per read
//!   ([`GlueState::tick`](crate::state::GlueState::tick)); `emscripten_date_now` and, in formats 3/4/wasm64,
//!   `emscripten_get_now` read it. `_emscripten_date_now` returns 0 in formats 1/2, and their
//!   `emscripten_get_now` returns NaN (the glue calls a `process.hrtime` that was replaced by `Date.now`, so
//!   it still advances the counter).
//! - The time zone is UTC: offset 0, no daylight saving, zone names as Node prints them in a UTC container.

use cu_types::ModuleFormat;
use wasmtime::{Caller, Val};

use super::{Args, HostFn, HostTrap, Mem, call_int, set_result, set_result_f64};
use crate::state::HostState;

pub(super) fn lookup(name: &str) -> Option<HostFn> {
    Some(match name {
        // 0 in formats 1/2 (so `time()` is the epoch); the fake clock elsewhere.
        "_emscripten_date_now" | "emscripten_date_now" => date_now,
        // The fake clock (formats 3/4/wasm64) or NaN while advancing it (formats 1/2).
        "emscripten_get_now" => get_now,
        // Writes UTC offset 0, no DST and the zone names.
        "_tzset_js" => tzset,
        // Fill a `struct tm` for a time in UTC.
        "_localtime_js" | "_gmtime_js" => gmtime,
        // `struct tm` (UTC) to seconds since the epoch, normalising the fields like JavaScript's `Date`.
        "_mktime_js" | "_timegm_js" => mktime,
        // The glue's `strftime`, returning the length written or 0 when it does not fit.
        "strftime" | "strftime_l" => strftime,
        _ => return None,
    })
}

fn date_now(caller: &mut Caller<'_, HostState>, _: &[Val], results: &mut [Val]) -> wasmtime::Result<()> {
    let state = caller.data_mut();
    let now = if state.format.date_now_is_zero() {
        0.0
    } else {
        state.glue.tick()
    };
    set_result_f64(results, now);
    Ok(())
}

fn get_now(caller: &mut Caller<'_, HostState>, _: &[Val], results: &mut [Val]) -> wasmtime::Result<()> {
    let state = caller.data_mut();
    let now = state.glue.tick();
    let value = if state.format.date_now_is_zero() {
        f64::NAN
    } else {
        now
    };
    set_result_f64(results, value);
    Ok(())
}

fn zone_name(format: ModuleFormat) -> &'static str {
    format.utc_zone_name()
}

fn tzset(caller: &mut Caller<'_, HostState>, args: &[Val], _: &mut [Val]) -> wasmtime::Result<()> {
    let format = caller.data().format;
    if args.len() == 3 {
        // emscripten 1/2: `_tzset_js(timezone, daylight, tzname)`; runs once, `malloc`s both names.
        if caller.data().glue.tz_initialised {
            return Ok(());
        }
        caller.data_mut().glue.tz_initialised = true;
        let (timezone, daylight, tzname) = (args.u(0), args.u(1), args.u(2));
        {
            let mut mem = Mem::of(caller)?;
            mem.set_i32(timezone, 0)?;
            mem.set_i32(daylight, 0)?;
        }
        let name = zone_name(format);
        let winter = allocate_utf8(caller, name)?;
        let summer = allocate_utf8(caller, name)?;
        let mut mem = Mem::of(caller)?;
        // Offsets are equal, so the glue stores the summer name first.
        mem.set_i32(tzname, summer as i32)?;
        mem.set_i32(tzname + 4, winter as i32)?;
        return Ok(());
    }
    // Later glue: `_tzset_js(timezone, daylight, std_name, dst_name)` writes into 17-byte buffers.
    let (timezone, daylight, std_name, dst_name) = (args.u(0), args.u(1), args.u(2), args.u(3));
    let mut mem = Mem::of(caller)?;
    if format.is_wasm64() {
        mem.set_i64(timezone, 0)?;
    } else {
        mem.set_i32(timezone, 0)?;
    }
    mem.set_i32(daylight, 0)?;
    let mut name = zone_name(format).as_bytes().to_vec();
    name.push(0);
    mem.write(dst_name, &name)?;
    mem.write(std_name, &name)?;
    Ok(())
}

/// `allocateUTF8`: `malloc(len + 1)` in the module and copy the string there.
fn allocate_utf8(caller: &mut Caller<'_, HostState>, text: &str) -> wasmtime::Result<u64> {
    let malloc = caller
        .data()
        .exports
        .and_then(|e| e.malloc)
        .ok_or(HostTrap::MissingExport("malloc"))?;
    let ptr = call_int(&mut *caller, &malloc, &[text.len() as u64 + 1])?;
    if ptr != 0 {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        Mem::of(caller)?.write(ptr, &bytes)?;
    }
    Ok(ptr)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (month 1..=12).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number: `(year, month 1..=12, day)`.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// Broken-down UTC time, as the glue writes it into `struct tm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tm {
    /// Seconds 0..=59.
    pub sec: i32,
    /// Minutes 0..=59.
    pub min: i32,
    /// Hours 0..=23.
    pub hour: i32,
    /// Day of the month 1..=31.
    pub mday: i32,
    /// Month 0..=11.
    pub mon: i32,
    /// Years since 1900.
    pub year: i32,
    /// Day of the week, Sunday = 0.
    pub wday: i32,
    /// Day of the year 0..=365.
    pub yday: i32,
}

/// Breaks down `seconds` since the epoch in UTC.
pub fn tm_from_seconds(seconds: i64) -> Tm {
    let days = seconds.div_euclid(86_400);
    let rem = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    Tm {
        sec: (rem % 60) as i32,
        min: (rem / 60 % 60) as i32,
        hour: (rem / 3600) as i32,
        mday: d as i32,
        mon: (m - 1) as i32,
        year: (y - 1900) as i32,
        wday: (days + 4).rem_euclid(7) as i32,
        yday: (days - days_from_civil(y, 1, 1)) as i32,
    }
}

/// JavaScript's `new Date(y, mon, d, h, mi, s)` in UTC, in seconds (fields may overflow and are carried).
pub fn seconds_from_fields(year: i64, mon: i64, mday: i64, hour: i64, min: i64, sec: i64) -> i64 {
    // `new Date(y, ...)` maps years 0..=99 to 1900..=1999.
    let year = if (0..=99).contains(&year) {
        year + 1900
    } else {
        year
    };
    let y = year + mon.div_euclid(12);
    let m = mon.rem_euclid(12) + 1;
    let days = days_from_civil(y, m, 1) + mday - 1;
    days * 86_400 + hour * 3600 + min * 60 + sec
}

fn gmtime(caller: &mut Caller<'_, HostState>, args: &[Val], _: &mut [Val]) -> wasmtime::Result<()> {
    let format = caller.data().format;
    let mut mem = Mem::of(caller)?;
    let (seconds, tm_ptr) = match args.len() {
        // `(time_low, time_high, tmPtr)` (emscripten 3/4).
        3 => ((args.s(1) << 32) | (args.u(0) & 0xffff_ffff) as i64, args.u(2)),
        // `(timePtr, tmPtr)` with a 32-bit `time_t` (emscripten 1/2).
        _ if !format.is_wasm64() => (mem.i32(args.u(0))? as i64, args.u(1)),
        // `(time, tmPtr)` by value (wasm64).
        _ => (args.s(0), args.u(1)),
    };
    let tm = tm_from_seconds(seconds);
    write_tm(&mut mem, tm_ptr, &tm)?;
    // tm_isdst = 0 and tm_gmtoff = 0 (UTC): the offset is a `long`, 8 bytes at +40 in wasm64.
    mem.set_i32(tm_ptr + 32, 0)?;
    if format.is_wasm64() {
        mem.set_i64(tm_ptr + 40, 0)
    } else {
        mem.set_i32(tm_ptr + 36, 0)
    }
}

fn write_tm(mem: &mut Mem<'_>, p: u64, tm: &Tm) -> wasmtime::Result<()> {
    for (offset, v) in [
        (0, tm.sec),
        (4, tm.min),
        (8, tm.hour),
        (12, tm.mday),
        (16, tm.mon),
        (20, tm.year),
        (24, tm.wday),
        (28, tm.yday),
    ] {
        mem.set_i32(p + offset, v)?;
    }
    Ok(())
}

fn mktime(caller: &mut Caller<'_, HostState>, args: &[Val], results: &mut [Val]) -> wasmtime::Result<()> {
    let p = args.u(0);
    let mut mem = Mem::of(caller)?;
    let field = |o: u64| mem.i32(p + o).map(|v| v as i64);
    let secs = seconds_from_fields(
        field(20)? + 1900,
        field(16)?,
        field(12)?,
        field(8)?,
        field(4)?,
        field(0)?,
    );
    let tm = tm_from_seconds(secs);
    // No daylight saving in UTC: a negative tm_isdst becomes 0, a positive one is left as given.
    if mem.i32(p + 32)? < 0 {
        mem.set_i32(p + 32, 0)?;
    }
    write_tm(&mut mem, p, &tm)?;
    let format = caller.data().format;
    let narrow = results.first().is_some_and(|r| matches!(r, Val::I32(_)));
    if narrow && !matches!(format, ModuleFormat::Emscripten1 | ModuleFormat::Emscripten2) {
        // emscripten 3/4 return a 64-bit time as `(low, high)`: the high half through the module's
        // exported `setTempRet0` / `_emscripten_tempret_set` (a wasm call, metered like any other).
        let setter = ["_emscripten_tempret_set", "setTempRet0"]
            .into_iter()
            .find_map(|name| super::export_func(caller, name));
        if let Some(setter) = setter {
            setter.call(&mut *caller, &[Val::I32((secs >> 32) as i32)], &mut [])?;
        }
    }
    // Formats 1/2 return `(ms / 1000) | 0`; 3/4 the low half (`ret >>> 0`); wasm64 the whole value.
    set_result(results, if narrow { secs as i32 as i64 } else { secs });
    Ok(())
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// ISO 8601 week-based year of a date.
fn week_based_year(tm: &Tm) -> i64 {
    let year = tm.year as i64 + 1900;
    // Monday = 0 .. Sunday = 6
    let wday_mon = (tm.wday as i64 + 6) % 7;
    let thursday_yday = tm.yday as i64 - wday_mon + 3;
    let days_in_year = if is_leap(year) { 366 } else { 365 };
    if thursday_yday < 0 {
        year - 1
    } else if thursday_yday >= days_in_year {
        year + 1
    } else {
        year
    }
}

/// The glue's `strftime` expansion of `format` for a broken-down time.
pub fn format_tm(pattern: &str, tm: &Tm, gmtoff: i64, zone: &str) -> String {
    let mut pattern = pattern.to_string();
    const RULES_1: [(&str, &str); 29] = [
        ("%c", "%a %b %d %H:%M:%S %Y"),
        ("%D", "%m/%d/%y"),
        ("%F", "%Y-%m-%d"),
        ("%h", "%b"),
        ("%r", "%I:%M:%S %p"),
        ("%R", "%H:%M"),
        ("%T", "%H:%M:%S"),
        ("%x", "%m/%d/%y"),
        ("%X", "%H:%M:%S"),
        ("%Ec", "%c"),
        ("%EC", "%C"),
        ("%Ex", "%m/%d/%y"),
        ("%EX", "%H:%M:%S"),
        ("%Ey", "%y"),
        ("%EY", "%Y"),
        ("%Od", "%d"),
        ("%Oe", "%e"),
        ("%OH", "%H"),
        ("%OI", "%I"),
        ("%Om", "%m"),
        ("%OM", "%M"),
        ("%OS", "%S"),
        ("%Ou", "%u"),
        ("%OU", "%U"),
        ("%OV", "%V"),
        ("%Ow", "%w"),
        ("%OW", "%W"),
        ("%Oy", "%y"),
        ("%%", "\0\0"),
    ];
    for (from, to) in RULES_1 {
        pattern = pattern.replace(from, to);
    }
    let year = tm.year as i64 + 1900;
    let pad = |v: i64, n: usize| format!("{v:0n$}");
    let twelve = match tm.hour {
        0 => 12,
        h if h > 12 => h - 12,
        h => h,
    };
    let iso_week = {
        let wby = week_based_year(tm);
        let wday_mon = (tm.wday as i64 + 6) % 7;
        let jan4 = days_from_civil(wby, 1, 4);
        let week1_monday = jan4 - (jan4 + 3).rem_euclid(7);
        let today = days_from_civil(year, 1, 1) + tm.yday as i64;
        let _ = wday_mon;
        (today - week1_monday).div_euclid(7) + 1
    };
    let expand = |spec: &str| -> String {
        match spec {
            "%a" => WEEKDAYS[tm.wday.rem_euclid(7) as usize][..3].to_string(),
            "%A" => WEEKDAYS[tm.wday.rem_euclid(7) as usize].to_string(),
            "%b" => MONTHS[tm.mon.rem_euclid(12) as usize][..3].to_string(),
            "%B" => MONTHS[tm.mon.rem_euclid(12) as usize].to_string(),
            "%C" => pad(year / 100, 2),
            "%d" => pad(tm.mday as i64, 2),
            "%e" => format!("{:>2}", tm.mday),
            "%g" => week_based_year(tm).to_string().chars().skip(2).collect(),
            "%G" => week_based_year(tm).to_string(),
            "%H" => pad(tm.hour as i64, 2),
            "%I" => pad(twelve as i64, 2),
            "%j" => pad(tm.yday as i64 + 1, 3),
            "%m" => pad(tm.mon as i64 + 1, 2),
            "%M" => pad(tm.min as i64, 2),
            "%n" => "\n".into(),
            "%p" => if (0..12).contains(&tm.hour) { "AM" } else { "PM" }.into(),
            "%S" => pad(tm.sec as i64, 2),
            "%t" => "\t".into(),
            "%u" => (if tm.wday == 0 { 7 } else { tm.wday }).to_string(),
            "%U" => pad((tm.yday as i64 + 7 - tm.wday as i64) / 7, 2),
            "%V" => pad(iso_week, 2),
            "%w" => tm.wday.to_string(),
            "%W" => pad((tm.yday as i64 + 7 - (tm.wday as i64 + 6) % 7) / 7, 2),
            "%y" => year.to_string().chars().skip(2).collect(),
            "%Y" => year.to_string(),
            "%z" => {
                let off = gmtoff.abs() / 60;
                let v = off / 60 * 100 + off % 60;
                format!("{}{:04}", if gmtoff >= 0 { "+" } else { "-" }, v)
            }
            "%Z" => zone.to_string(),
            _ => spec.to_string(),
        }
    };
    const RULES_2: [&str; 27] = [
        "%a", "%A", "%b", "%B", "%C", "%d", "%e", "%g", "%G", "%H", "%I", "%j", "%m", "%M", "%n", "%p", "%S",
        "%t", "%u", "%U", "%V", "%w", "%W", "%y", "%Y", "%z", "%Z",
    ];
    for rule in RULES_2 {
        if pattern.contains(rule) {
            pattern = pattern.replace(rule, &expand(rule));
        }
    }
    pattern.replace("\0\0", "%")
}

fn strftime(caller: &mut Caller<'_, HostState>, args: &[Val], results: &mut [Val]) -> wasmtime::Result<()> {
    let (s, maxsize, fmt, tm_ptr) = (args.u(0), args.u(1), args.u(2), args.u(3));
    let wasm64 = caller.data().format.is_wasm64();
    let mut mem = Mem::of(caller)?;
    let f = |o: u64| mem.i32(tm_ptr + o);
    let tm = Tm {
        sec: f(0)?,
        min: f(4)?,
        hour: f(8)?,
        mday: f(12)?,
        mon: f(16)?,
        year: f(20)?,
        wday: f(24)?,
        yday: f(28)?,
    };
    let (gmtoff, zone_ptr) = if wasm64 {
        (mem.i64(tm_ptr + 40)?, mem.ptr(tm_ptr + 48)?)
    } else {
        (mem.i32(tm_ptr + 36)? as i64, mem.ptr(tm_ptr + 40)?)
    };
    let zone = if zone_ptr == 0 {
        String::new()
    } else {
        mem.c_string(zone_ptr)?
    };
    let pattern = mem.c_string(fmt)?;
    let mut bytes = format_tm(&pattern, &tm, gmtoff, &zone).into_bytes();
    bytes.push(0);
    if bytes.len() as u64 > maxsize {
        set_result(results, 0);
        return Ok(());
    }
    mem.write(s, &bytes)?;
    set_result(results, bytes.len() as i64 - 1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_down_time_matches_known_dates() {
        let tm = tm_from_seconds(1_700_000_000); // 2023-11-14 22:13:20 UTC, a Tuesday
        assert_eq!(
            tm,
            Tm {
                sec: 20,
                min: 13,
                hour: 22,
                mday: 14,
                mon: 10,
                year: 123,
                wday: 2,
                yday: 317
            }
        );
        assert_eq!(tm_from_seconds(0).wday, 4);
        assert_eq!(tm_from_seconds(-1).year, 69);
        assert_eq!(seconds_from_fields(2023, 10, 14, 22, 13, 20), 1_700_000_000);
        // Overflowing fields carry like JavaScript's Date.
        assert_eq!(
            seconds_from_fields(2023, 12, 1, 0, 0, 0),
            seconds_from_fields(2024, 0, 1, 0, 0, 0)
        );
        assert_eq!(
            seconds_from_fields(2024, 0, 0, 0, 0, 0),
            seconds_from_fields(2023, 11, 31, 0, 0, 0)
        );
    }

    #[test]
    fn strftime_expands_like_the_glue() {
        let tm = tm_from_seconds(1_700_000_000);
        assert_eq!(
            format_tm("%Y-%m-%d %H:%M:%S", &tm, 0, "UTC"),
            "2023-11-14 22:13:20"
        );
        assert_eq!(format_tm("%c", &tm, 0, "UTC"), "Tue Nov 14 22:13:20 2023");
        assert_eq!(
            format_tm("%j %U %W %V %G %u %w %e %I %p %%", &tm, 0, "UTC"),
            "318 46 46 46 2023 2 2 14 10 PM %"
        );
        assert_eq!(format_tm("%z %Z", &tm, 0, "UTC"), "+0000 UTC");
        // 2021-01-01 is a Friday in ISO week 53 of 2020.
        let jan1 = tm_from_seconds(seconds_from_fields(2021, 0, 1, 0, 0, 0));
        assert_eq!(format_tm("%G %V %g", &jan1, 0, ""), "2020 53 20");
    }
}
