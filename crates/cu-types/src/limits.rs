//! Process limits from the `Memory-Limit` and `Compute-Limit` tags.

/// A `Memory-Limit` value that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid memory limit {0:?}: expected bytes or a size such as 512-mb, 1-gb, 16-gb")]
pub struct InvalidMemoryLimit(pub String);

/// A `Compute-Limit` value that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid compute limit {0:?}: expected a whole number of gas units")]
pub struct InvalidComputeLimit(pub String);

/// The reference loader's gas limit when a process has no `Compute-Limit`.
pub const DEFAULT_COMPUTE_LIMIT: u64 = 9_000_000_000_000_000;

/// The reference CU's default `PROCESS_WASM_COMPUTE_MAX_LIMIT`: the largest `Compute-Limit` it accepts.
pub const COMPUTE_MAX_LIMIT: u64 = 9_000_000_000_000;

/// The reference CU's default `PROCESS_WASM_MEMORY_MAX_LIMIT` (1 GiB): the largest `Memory-Limit` it
/// accepts.
pub const MEMORY_MAX_LIMIT: u64 = 1 << 30;

/// Limits that apply to one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// `Memory-Limit` in bytes: linear memory never grows past it (nor past the module's declared maximum
    /// or the format's heap maximum).
    pub memory_limit: Option<u64>,
    /// `Compute-Limit` in gas units per message.
    pub compute_limit: Option<u64>,
}

impl Limits {
    /// The gas limit of one message: `Compute-Limit`, or the reference's default.
    pub fn gas_limit(&self) -> u64 {
        self.compute_limit.unwrap_or(DEFAULT_COMPUTE_LIMIT)
    }
}

/// Parses a `Memory-Limit` value the way the reference CU does (`bytes.parse(value.replace('-', ''))`):
/// a number of bytes, or a number with a unit `b`, `kb`, `mb`, `gb`, `tb`, `pb` (powers of 1024, any case,
/// decimals allowed, result rounded down), e.g. `1-gb`, `512-mb`, `16-gb`.
pub fn parse_memory_limit(value: &str) -> Result<u64, InvalidMemoryLimit> {
    let invalid = || InvalidMemoryLimit(value.to_string());
    let text = value.replacen('-', "", 1).trim().to_ascii_lowercase();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: u64 = match unit.trim() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        "tb" => 1 << 40,
        "pb" => 1 << 50,
        _ => return Err(invalid()),
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(invalid());
    }
    let n: f64 = number.parse().map_err(|_| invalid())?;
    let bytes = (n * multiplier as f64).floor();
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(invalid());
    }
    Ok(bytes as u64)
}

/// Parses a `Compute-Limit` value (a decimal integer).
pub fn parse_compute_limit(value: &str) -> Result<u64, InvalidComputeLimit> {
    value
        .trim()
        .parse::<u64>()
        .map_err(|_| InvalidComputeLimit(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_parse_like_the_bytes_package() {
        assert_eq!(parse_memory_limit("1-gb"), Ok(1 << 30));
        assert_eq!(parse_memory_limit("16-gb"), Ok(16 << 30));
        assert_eq!(parse_memory_limit("512-mb"), Ok(512 << 20));
        assert_eq!(parse_memory_limit("15-kb"), Ok(15 << 10));
        assert_eq!(parse_memory_limit("1.5-GB"), Ok(3 << 29));
        assert_eq!(parse_memory_limit("1048576"), Ok(1 << 20));
        for bad in ["", "gb", "1-xb", "-", "1..5-gb", "one-gb"] {
            assert!(parse_memory_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn compute_limits_are_integers() {
        assert_eq!(parse_compute_limit("9000000000000"), Ok(9_000_000_000_000));
        assert!(parse_compute_limit("9e12").is_err());
        assert_eq!(Limits::default().gas_limit(), DEFAULT_COMPUTE_LIMIT);
    }
}
