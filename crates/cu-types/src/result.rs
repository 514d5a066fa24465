//! The result of evaluating one message, built from the module's `{ok, response}` reply exactly as the
//! reference CU builds it (`mergeOutput` in `servers/cu/src/effects/worker/evaluate.js`).

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Number, Value};

/// The Output text that old modules print when an allocation failed; the reference treats it as "keep the
/// previous memory" without reporting an Error.
pub const BUFFER_ALLOCATION_FAILURE: &str = "not enough memory for buffer allocation";

/// One evaluated message: what the CU stores and serves.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EvalOutput {
    /// `Output`: a string or an object (numbers are turned into strings as JavaScript's `String(n)` does).
    pub output: Value,
    /// `Messages`: the outbox messages, `[]` when absent.
    pub messages: Vec<Value>,
    /// `Spawns`: processes to spawn, `[]` when absent.
    pub spawns: Vec<Value>,
    /// `Assignments`: `{Processes, Message}` entries, `[]` when absent.
    pub assignments: Vec<Value>,
    /// Gas consumed by this message (0 for modules that are not metered).
    pub gas_used: u64,
    /// `Error`: set when the message failed; the process state is then the state before the message.
    pub error: Option<Value>,
}

impl EvalOutput {
    /// A failed message: no output, no outbox, the given error.
    pub fn failed(error: impl Into<Value>, gas_used: u64) -> Self {
        EvalOutput {
            output: Value::String(String::new()),
            gas_used,
            error: Some(error.into()),
            ..Default::default()
        }
    }

    /// Builds the result from the parsed `response` of an `{ok: true, response}` reply.
    pub fn from_response(response: &Value, gas_used: u64) -> Self {
        let field = |name: &str| response.get(name).filter(|v| !v.is_null());
        let list = |name: &str| match field(name) {
            Some(Value::Array(items)) => items.clone(),
            // The reference passes a non-array value through unchanged; we keep a list shape and wrap it.
            Some(other) => vec![other.clone()],
            None => Vec::new(),
        };
        let output = match field("Output") {
            None => Value::String(String::new()),
            Some(Value::Number(n)) => Value::String(js_number_to_string(n.as_f64().unwrap_or(f64::NAN))),
            Some(other) => other.clone(),
        };
        EvalOutput {
            output,
            messages: list("Messages"),
            spawns: list("Spawns"),
            assignments: list("Assignments"),
            gas_used,
            error: field("Error").cloned(),
        }
    }

    /// Whether the process must be rolled back to its state before this message: an Error, or an Output
    /// that ends with [`BUFFER_ALLOCATION_FAILURE`] (for aos 1, the `data.output` field of the Output object).
    pub fn keeps_previous_state(&self) -> bool {
        if self.error.is_some() {
            return true;
        }
        let text = match &self.output {
            Value::String(s) => Some(s.as_str()),
            Value::Object(o) => o
                .get("data")
                .and_then(|d| d.get("output"))
                .and_then(Value::as_str),
            _ => None,
        };
        text.is_some_and(|t| t.ends_with(BUFFER_ALLOCATION_FAILURE))
    }
}

impl Serialize for EvalOutput {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("Output", &self.output)?;
        map.serialize_entry("Messages", &self.messages)?;
        map.serialize_entry("Spawns", &self.spawns)?;
        map.serialize_entry("Assignments", &self.assignments)?;
        map.serialize_entry("GasUsed", &self.gas_used)?;
        if let Some(error) = &self.error {
            map.serialize_entry("Error", error)?;
        }
        map.end()
    }
}

/// Parses text as JavaScript's `JSON.parse` would see it: every number becomes a double, so integers past
/// 2^53 lose precision exactly as they do in the reference.
pub fn parse_json_like_js(text: &str) -> Result<Value, serde_json::Error> {
    let mut value: Value = serde_json::from_str(text)?;
    normalize_numbers(&mut value);
    Ok(value)
}

/// Rewrites every number in `value` to the double JavaScript would hold, written the shortest way.
pub fn normalize_numbers(value: &mut Value) {
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                *n = js_number(f);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_numbers),
        Value::Object(map) => map.values_mut().for_each(normalize_numbers),
        _ => {}
    }
}

fn js_number(f: f64) -> Number {
    if f.fract() == 0.0 && f.abs() < 9.2e18 {
        // Integral doubles print without a fraction in JSON.stringify; |f| < 2^63 so the cast is exact.
        Number::from(f as i64)
    } else {
        Number::from_f64(f).unwrap_or_else(|| Number::from(0))
    }
}

/// JavaScript's `Number.prototype.toString()` for a double (ECMAScript `Number::toString`, radix 10).
pub fn js_number_to_string(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f == 0.0 {
        return "0".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let sign = if f < 0.0 { "-" } else { "" };
    // Rust's `{:e}` prints the shortest digits that round-trip, as ECMAScript requires: "d.ddde±x".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i64;
    let n = exp.parse::<i64>().unwrap_or(0) + 1; // position of the decimal point
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let e_sign = if e >= 0 { "+" } else { "-" };
        if k == 1 {
            format!("{digits}e{e_sign}{}", e.abs())
        } else {
            format!("{}.{}e{e_sign}{}", &digits[..1], &digits[1..], e.abs())
        }
    };
    format!("{sign}{body}")
}

/// `JSON.stringify(value)` for plain JSON data: key order kept, numbers as JavaScript prints them.
pub fn to_js_json(value: &Value) -> String {
    let mut v = value.clone();
    normalize_numbers(&mut v);
    // Serializing a `Value` cannot fail (all keys are strings).
    serde_json::to_string(&v).unwrap_or_default()
}

/// Builds a JSON object from key/value pairs, keeping their order.
pub fn object<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Map<_, _>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_print_like_javascript() {
        let cases = [
            (42.0, "42"),
            (-7.0, "-7"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (1e21, "1e+21"),
            (1.25e21, "1.25e+21"),
            (123456789012345680000.0, "123456789012345680000"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (0.000001, "0.000001"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (-0.0, "0"),
        ];
        for (value, text) in cases {
            assert_eq!(js_number_to_string(value), text, "{value:e}");
        }
    }

    #[test]
    fn response_fields_default_like_the_reference() {
        let out = EvalOutput::from_response(&json!({"Output": 12, "Messages": null}), 5);
        assert_eq!(out.output, json!("12"));
        assert!(out.messages.is_empty() && out.spawns.is_empty() && out.assignments.is_empty());
        assert_eq!(out.error, None);
        let text = serde_json::to_string(&out).unwrap();
        assert_eq!(
            text,
            r#"{"Output":"12","Messages":[],"Spawns":[],"Assignments":[],"GasUsed":5}"#
        );
    }

    #[test]
    fn error_field_or_allocation_failure_keep_the_previous_state() {
        let out = EvalOutput::from_response(&json!({"Output": "x", "Error": "handler failed"}), 0);
        assert!(out.keeps_previous_state());
        let text = serde_json::to_string(&out).unwrap();
        assert!(
            text.ends_with(r#""GasUsed":0,"Error":"handler failed"}"#),
            "{text}"
        );
        let oom = EvalOutput::from_response(
            &json!({"Output": "boom: not enough memory for buffer allocation"}),
            0,
        );
        assert!(oom.keeps_previous_state() && oom.error.is_none());
        let aos1 = EvalOutput::from_response(
            &json!({"Output": {"data": {"output": "not enough memory for buffer allocation"}}}),
            0,
        );
        assert!(aos1.keeps_previous_state());
        assert!(!EvalOutput::from_response(&json!({"Output": "fine"}), 0).keeps_previous_state());
    }

    #[test]
    fn parsing_loses_precision_like_json_parse() {
        let v = parse_json_like_js(r#"{"a": 9007199254740993, "b": 2.0, "c": [1e400]}"#);
        // 1e400 is not representable: serde_json rejects it, JSON.parse gives Infinity. Both are errors for us.
        assert!(v.is_err());
        let v = parse_json_like_js(r#"{"a": 9007199254740993, "b": 2.0}"#).unwrap();
        assert_eq!(v["a"].as_f64(), Some(9007199254740992.0));
        assert_eq!(serde_json::to_string(&v["b"]).unwrap(), "2");
    }
}
