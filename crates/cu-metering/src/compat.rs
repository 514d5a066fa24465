//! Emulation of what `@permaweb/wasm-json-toolkit` 0.2.9 (`wasm2json` → `json2wasm`) can parse
//! and write back unchanged. Used by [`crate::Compat::Reference`] to reject exactly the modules
//! the reference loader cannot meter (it throws, or silently writes a different module).
//!
//! The toolkit is an MVP-era parser: it ignores section sizes (except for custom sections),
//! reads value types as one byte looked up in a fixed table (unknown bytes are written back as
//! `0x00`), reads element/data segment flags as an MVP table/memory index, reads init
//! expressions as exactly one operator followed by one skipped byte, writes strings with their
//! UTF-16 length, and converts several LEBs to JS numbers (bn.js throws above 53 bits). Each
//! check below mirrors one of those behaviours.

use crate::MeterError;

/// `LANGUAGE_TYPES` of the toolkit: bytes that survive a parse/write round trip.
fn language_type(byte: u8) -> bool {
    matches!(byte, 0x7f | 0x7e | 0x7d | 0x7c | 0x70 | 0x60 | 0x40)
}

/// Value types (params, results, locals, globals) the toolkit round-trips.
fn value_type(byte: u8) -> bool {
    matches!(byte, 0x7f | 0x7e | 0x7d | 0x7c | 0x70)
}

/// Largest integer bn.js `toNumber()` accepts (53 bits).
const MAX_SAFE: u64 = (1 << 53) - 1;

/// A byte cursor that reads like the toolkit (`buffer-pipe` + `leb128` 0.0.4).
pub(crate) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    /// Absolute offset of `data[0]` in the module, for error messages.
    base: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(data: &'a [u8], base: usize) -> Self {
        Cursor { data, pos: 0, base }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn err(&self, what: impl Into<String>) -> MeterError {
        MeterError::Unsupported {
            offset: self.offset(),
            what: what.into(),
        }
    }

    pub(crate) fn byte(&mut self) -> Result<u8, MeterError> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or_else(|| self.err("the reference parser runs past the end of the section"))?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], MeterError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.err("the reference parser runs past the end of the section")),
        }
    }

    /// An unsigned LEB of any length, as `leb.unsigned.readBn`; returns the value when it fits
    /// in 64 bits, `u64::MAX` otherwise (only ever compared against [`MAX_SAFE`]).
    pub(crate) fn leb(&mut self) -> Result<u64, MeterError> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        let mut big = false;
        loop {
            let b = self.byte()?;
            let low = u64::from(b & 0x7f);
            if shift < 64 {
                let part = low << shift;
                if (part >> shift) != low {
                    big = true;
                }
                value |= part;
            } else if low != 0 {
                big = true;
            }
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Ok(if big { u64::MAX } else { value })
    }

    /// `leb.unsigned.readBn(stream).toNumber()`: throws in bn.js above 53 bits.
    pub(crate) fn leb_number(&mut self, what: &str) -> Result<u64, MeterError> {
        let at = self.offset();
        let v = self.leb()?;
        if v > MAX_SAFE {
            return Err(MeterError::Unsupported {
                offset: at,
                what: format!("{what} {v} exceeds 2^53 (bn.js toNumber throws)"),
            });
        }
        Ok(v)
    }

    fn usize_number(&mut self, what: &str) -> Result<usize, MeterError> {
        let v = self.leb_number(what)?;
        usize::try_from(v).map_err(|_| self.err(format!("{what} too large")))
    }

    fn value_type(&mut self, what: &str) -> Result<u8, MeterError> {
        let at = self.offset();
        let b = self.byte()?;
        if !value_type(b) {
            return Err(MeterError::Unsupported {
                offset: at,
                what: format!("{what} type {b:#04x} is not an MVP value type"),
            });
        }
        Ok(b)
    }

    /// A string as the toolkit reads it and writes it back: byte length prefix on read, UTF-16
    /// length on write, so only ASCII survives.
    fn ascii_string(&mut self, what: &str) -> Result<(), MeterError> {
        let at = self.offset();
        let n = self.usize_number(what)?;
        let s = self.bytes(n)?;
        if !s.is_ascii() {
            return Err(MeterError::Unsupported {
                offset: at,
                what: format!("{what} is not ASCII (the reference rewrites it with a wrong length)"),
            });
        }
        Ok(())
    }

    /// `typeParsers.memory` (resizable limits).
    fn limits(&mut self) -> Result<(), MeterError> {
        let flags = self.leb_number("limits flags")?;
        self.leb_number("limits initial")?;
        if flags % 2 == 1 {
            self.leb_number("limits maximum")?;
        }
        Ok(())
    }

    /// `typeParsers.table`.
    fn table_type(&mut self) -> Result<(), MeterError> {
        let at = self.offset();
        let b = self.byte()?;
        if b != 0x70 {
            return Err(MeterError::Unsupported {
                offset: at,
                what: format!("table element type {b:#04x} (only funcref/anyfunc is supported)"),
            });
        }
        self.limits()
    }

    /// `typeParsers.initExpr`: one operator, then one byte that must be `end`.
    fn init_expr(&mut self) -> Result<(), MeterError> {
        let at = self.offset();
        let len = op_len(&self.data[self.pos..]).map_err(|what| MeterError::Unsupported {
            offset: at,
            what: format!("init expression: {what}"),
        })?;
        self.bytes(len)?;
        let end_at = self.offset();
        if self.byte()? != 0x0b {
            return Err(MeterError::Unsupported {
                offset: end_at,
                what: "init expression longer than one operator".into(),
            });
        }
        Ok(())
    }
}

/// Number of bytes the toolkit's `parseOp` consumes for the operator at the start of `code`,
/// or why it cannot parse it.
pub(crate) fn op_len(code: &[u8]) -> Result<usize, String> {
    let mut c = Cursor::new(code, 0);
    let op = c.byte().map_err(|e| e.to_string())?;
    if !crate::cost::opcode_info(op).known {
        return Err(format!("opcode {op:#04x} is unknown to the reference toolkit"));
    }
    let r: Result<(), MeterError> = (|| {
        match op {
            // block_type: one byte looked up in LANGUAGE_TYPES.
            0x02..=0x04 => {
                let b = c.byte()?;
                if !language_type(b) {
                    return Err(c.err(format!("block type {b:#04x}")));
                }
            }
            // varuint32 (`leb.unsigned.read`, kept as a decimal string: any size).
            0x0c | 0x0d | 0x10 | 0x20..=0x24 => {
                c.leb()?;
            }
            0x0e => {
                let n = c.leb_number("br_table length")?;
                for _ in 0..n {
                    c.leb_number("br_table target")?;
                }
                c.leb_number("br_table default")?;
            }
            // call_indirect: type index, then ONE reserved byte.
            0x11 => {
                c.leb_number("call_indirect type")?;
                c.byte()?;
            }
            // memory_immediate: flags and offset, both via toNumber().
            0x28..=0x3e => {
                c.leb_number("memarg flags")?;
                c.leb_number("memarg offset")?;
            }
            // current_memory / grow_memory: one reserved byte.
            0x3f | 0x40 => {
                c.byte()?;
            }
            // i32.const / i64.const: signed LEB of any length.
            0x41 | 0x42 => {
                c.leb()?;
            }
            0x43 => {
                c.bytes(4)?;
            }
            0x44 => {
                c.bytes(8)?;
            }
            _ => {}
        }
        Ok(())
    })();
    r.map_err(|e| e.to_string())?;
    Ok(c.pos())
}

/// Checks that the toolkit parses a non-code section the same way wasm does and writes it back
/// with the same meaning. `data` is the section content, `base` its absolute offset.
pub(crate) fn check_section(id: u8, data: &[u8], base: usize) -> Result<(), MeterError> {
    let mut c = Cursor::new(data, base);
    match id {
        0 => {
            c.ascii_string("custom section name")?;
            return Ok(());
        }
        1 => {
            let n = c.leb_number("type count")?;
            for _ in 0..n {
                let at = c.offset();
                let form = c.byte()?;
                if form != 0x60 {
                    return Err(MeterError::Unsupported {
                        offset: at,
                        what: format!("type form {form:#04x} (only func types are supported)"),
                    });
                }
                let params = c.leb_number("param count")?;
                for _ in 0..params {
                    c.value_type("param")?;
                }
                let at = c.offset();
                let results = c.leb_number("result count")?;
                if results > 1 {
                    return Err(MeterError::Unsupported {
                        offset: at,
                        what: format!("{results} results (the reference reads at most one)"),
                    });
                }
                if results == 1 {
                    c.value_type("result")?;
                }
            }
        }
        2 => {
            let n = c.leb_number("import count")?;
            for _ in 0..n {
                c.ascii_string("import module")?;
                c.ascii_string("import field")?;
                let at = c.offset();
                match c.byte()? {
                    0 => {
                        c.leb_number("import type index")?;
                    }
                    1 => c.table_type()?,
                    2 => c.limits()?,
                    3 => {
                        c.value_type("global")?;
                        c.byte()?;
                    }
                    k => {
                        return Err(MeterError::Unsupported {
                            offset: at,
                            what: format!("import kind {k}"),
                        });
                    }
                }
            }
        }
        3 => {
            let n = c.leb_number("function count")?;
            for _ in 0..n {
                c.leb_number("function type index")?;
            }
        }
        4 => {
            let n = c.leb_number("table count")?;
            for _ in 0..n {
                c.table_type()?;
            }
        }
        5 => {
            let n = c.leb_number("memory count")?;
            for _ in 0..n {
                c.limits()?;
            }
        }
        6 => {
            let n = c.leb_number("global count")?;
            for _ in 0..n {
                c.value_type("global")?;
                c.byte()?;
                c.init_expr()?;
            }
        }
        7 => {
            let n = c.leb_number("export count")?;
            for _ in 0..n {
                // Export names are written with their byte length: any UTF-8 survives.
                let len = c.usize_number("export name length")?;
                c.bytes(len)?;
                let at = c.offset();
                let kind = c.byte()?;
                if kind > 3 {
                    return Err(MeterError::Unsupported {
                        offset: at,
                        what: format!("export kind {kind}"),
                    });
                }
                c.leb_number("export index")?;
            }
        }
        8 => {
            c.leb_number("start index")?;
        }
        9 => {
            let n = c.leb_number("element segment count")?;
            for _ in 0..n {
                let at = c.offset();
                let flags = c.leb_number("element segment table index")?;
                if flags != 0 {
                    return Err(MeterError::Unsupported {
                        offset: at,
                        what: format!("element segment flags {flags} (only MVP segments)"),
                    });
                }
                c.init_expr()?;
                let count = c.leb_number("element count")?;
                for _ in 0..count {
                    c.leb_number("element function index")?;
                }
            }
        }
        11 => {
            let n = c.leb_number("data segment count")?;
            for _ in 0..n {
                let at = c.offset();
                let flags = c.leb_number("data segment memory index")?;
                if flags != 0 {
                    return Err(MeterError::Unsupported {
                        offset: at,
                        what: format!("data segment flags {flags} (only MVP active segments)"),
                    });
                }
                c.init_expr()?;
                let size = c.usize_number("data segment size")?;
                c.bytes(size)?;
            }
        }
        12 => {
            c.leb_number("data count")?;
        }
        other => {
            return Err(MeterError::Unsupported {
                offset: base,
                what: format!("section id {other} is unknown to the reference toolkit"),
            });
        }
    }
    if c.pos() != data.len() {
        return Err(c.err(format!(
            "the reference parser ends section {id} after {} of {} bytes",
            c.pos(),
            data.len()
        )));
    }
    Ok(())
}

/// Checks a function's local declarations (`count`, one type byte each).
pub(crate) fn check_locals(data: &[u8], base: usize) -> Result<usize, MeterError> {
    let mut c = Cursor::new(data, base);
    let n = c.leb_number("local declaration count")?;
    for _ in 0..n {
        c.leb_number("local count")?;
        c.value_type("local")?;
    }
    Ok(c.pos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_lengths() {
        assert_eq!(op_len(&[0x41, 0x80, 0x80, 0x04]), Ok(4));
        assert_eq!(op_len(&[0x28, 0x02, 0x10]), Ok(3));
        assert_eq!(op_len(&[0x11, 0x03, 0x00]), Ok(3));
        assert_eq!(op_len(&[0x0e, 0x02, 0x00, 0x01, 0x02]), Ok(5));
        assert_eq!(op_len(&[0x02, 0x40]), Ok(2));
        assert!(op_len(&[0x02, 0x05]).is_err()); // type-index block type
        assert!(op_len(&[0xfd, 0x0c]).is_err());
        assert!(op_len(&[0xfc, 0x0a, 0x00, 0x00]).is_err());
    }

    #[test]
    fn big_leb_numbers_are_rejected() {
        // memarg offset 2^60
        let mut code = vec![0x28, 0x00];
        code.extend([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
        assert!(op_len(&code).is_err());
    }
}
