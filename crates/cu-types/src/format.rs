//! AO module formats (`Module-Format` tag values) and the ABI facts that differ between them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Width of the `metering.usegas` argument injected into `-metering` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MeterWidth {
    /// `usegas(i32)`, used by wasm32 modules.
    I32,
    /// `usegas(i64)`, used by wasm64 modules.
    I64,
}

/// How the reference `ccall` sizes the stack buffer of each string argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StringSizeRule {
    /// `(str.length << 2) + 1`: four bytes per UTF-16 code unit plus the NUL (emscripten 1 and 2).
    Utf16UnitsTimesFour,
    /// `lengthBytesUTF8(str) + 1`: the exact UTF-8 length plus the NUL (emscripten 3, 4 and wasm64).
    Utf8Exact,
}

/// How `main` is called at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MainCall {
    /// `main(0, NULL)`.
    NoArguments,
    /// `main(1, [thisProgram, NULL])`, the arguments allocated on the wasm stack.
    ProgramName,
    /// `main` is not called.
    NotCalled,
}

/// One of the seven module formats an AO node must run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModuleFormat {
    /// `wasm32-unknown-emscripten`: the oldest format, minified import module `a` and minified exports.
    #[serde(rename = "wasm32-unknown-emscripten")]
    Emscripten1,
    /// `wasm32-unknown-emscripten2`: aos 1.x and the sqlite build (getTempRet0 era).
    #[serde(rename = "wasm32-unknown-emscripten2")]
    Emscripten2,
    /// `wasm32-unknown-emscripten3`: newer 3.1.x glue (emscripten_memcpy_js era).
    #[serde(rename = "wasm32-unknown-emscripten3")]
    Emscripten3,
    /// `wasm32-unknown-emscripten4`: emsdk 3.1.59 with Asyncify and WeaveDrive.
    #[serde(rename = "wasm32-unknown-emscripten4")]
    Emscripten4,
    /// `wasm32-unknown-emscripten-metering`: like emscripten4, metered at load time (i32 counter).
    #[serde(rename = "wasm32-unknown-emscripten-metering")]
    Emscripten4Metering,
    /// `wasm64-unknown-emscripten-draft_2024_02_15`: memory64, the aos 2.x default.
    #[serde(rename = "wasm64-unknown-emscripten-draft_2024_02_15")]
    Wasm64,
    /// `wasm64-unknown-emscripten-draft_2024_10_16-metering`: memory64, metered at load time (i64 counter).
    #[serde(rename = "wasm64-unknown-emscripten-draft_2024_10_16-metering")]
    Wasm64Metering,
}

/// A `Module-Format` value that is not one of the seven known formats.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown module format {0:?}; known formats: {known}", known = ModuleFormat::ALL.map(|f| f.as_str()).join(", "))]
pub struct UnknownFormat(pub String);

impl ModuleFormat {
    /// Every format, oldest first.
    pub const ALL: [ModuleFormat; 7] = [
        ModuleFormat::Emscripten1,
        ModuleFormat::Emscripten2,
        ModuleFormat::Emscripten3,
        ModuleFormat::Emscripten4,
        ModuleFormat::Emscripten4Metering,
        ModuleFormat::Wasm64,
        ModuleFormat::Wasm64Metering,
    ];

    /// The `Module-Format` tag value.
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleFormat::Emscripten1 => "wasm32-unknown-emscripten",
            ModuleFormat::Emscripten2 => "wasm32-unknown-emscripten2",
            ModuleFormat::Emscripten3 => "wasm32-unknown-emscripten3",
            ModuleFormat::Emscripten4 => "wasm32-unknown-emscripten4",
            ModuleFormat::Emscripten4Metering => "wasm32-unknown-emscripten-metering",
            ModuleFormat::Wasm64 => "wasm64-unknown-emscripten-draft_2024_02_15",
            ModuleFormat::Wasm64Metering => "wasm64-unknown-emscripten-draft_2024_10_16-metering",
        }
    }

    /// True for the memory64 formats, whose pointers and sizes are `i64`.
    pub fn is_wasm64(self) -> bool {
        matches!(self, ModuleFormat::Wasm64 | ModuleFormat::Wasm64Metering)
    }

    /// Bytes per pointer in linear memory (4 or 8).
    pub fn pointer_size(self) -> u64 {
        if self.is_wasm64() { 8 } else { 4 }
    }

    /// Whether the loader instruments the binary with `metering.usegas` at load time, and with which width.
    pub fn injected_metering(self) -> Option<MeterWidth> {
        match self {
            ModuleFormat::Emscripten4Metering => Some(MeterWidth::I32),
            ModuleFormat::Wasm64Metering => Some(MeterWidth::I64),
            _ => None,
        }
    }

    /// The glue's `getHeapMax()`: the most linear memory `emscripten_resize_heap` will grow to.
    pub fn heap_max(self) -> u64 {
        match self {
            ModuleFormat::Emscripten1 | ModuleFormat::Emscripten2 => 524_288_000,
            ModuleFormat::Emscripten3 | ModuleFormat::Emscripten4 | ModuleFormat::Emscripten4Metering => {
                4_294_901_760
            }
            ModuleFormat::Wasm64 | ModuleFormat::Wasm64Metering => 17_179_869_184,
        }
    }

    /// How string arguments of `handle` are sized on the wasm stack.
    pub fn string_size_rule(self) -> StringSizeRule {
        match self {
            ModuleFormat::Emscripten1 | ModuleFormat::Emscripten2 => StringSizeRule::Utf16UnitsTimesFour,
            _ => StringSizeRule::Utf8Exact,
        }
    }

    /// The oldest format imports everything from module `a` under minified names and exports minified names.
    pub fn is_minified(self) -> bool {
        self == ModuleFormat::Emscripten1
    }

    /// How the glue calls `main` at start-up: `main(0, NULL)` in formats 1 and 3, `main(1, [thisProgram])`
    /// in format 2, and not at all in formats 4/wasm64 (their glue has no `callMain`; aos then creates its
    /// Lua state on the first `handle`).
    pub fn main_call(self) -> MainCall {
        match self {
            ModuleFormat::Emscripten1 | ModuleFormat::Emscripten3 => MainCall::NoArguments,
            ModuleFormat::Emscripten2 => MainCall::ProgramName,
            _ => MainCall::NotCalled,
        }
    }

    /// The environment strings (`USER=web_user`, ...) exist in formats 1-3; the emscripten4 and wasm64
    /// glue return an empty environment.
    pub fn has_environment(self) -> bool {
        matches!(
            self,
            ModuleFormat::Emscripten1 | ModuleFormat::Emscripten2 | ModuleFormat::Emscripten3
        )
    }

    /// Reads of the fake clock made by the glue's file-system start-up before the first message (the
    /// reference's MEMFS stamps each node it creates): 3 in format 3, 4 in formats 4/wasm64 (which also
    /// create `/data`), invisible in formats 1/2 whose `date_now` is 0.
    pub fn clock_ticks_at_start(self) -> u32 {
        match self {
            ModuleFormat::Emscripten1 | ModuleFormat::Emscripten2 => 0,
            ModuleFormat::Emscripten3 => 3,
            _ => 4,
        }
    }

    /// The time-zone name the glue writes in a UTC container: the long name in formats 1/2, the same
    /// truncated to six bytes in format 3, the short name in 4/wasm64.
    pub fn utc_zone_name(self) -> &'static str {
        match self {
            ModuleFormat::Emscripten1 | ModuleFormat::Emscripten2 => "Coordinated Universal Time",
            ModuleFormat::Emscripten3 => "Coordi",
            _ => "UTC",
        }
    }

    /// `_emscripten_date_now` returns 0 in formats 1 and 2 (so `time()` is 0); later formats read the fake clock.
    pub fn date_now_is_zero(self) -> bool {
        matches!(self, ModuleFormat::Emscripten1 | ModuleFormat::Emscripten2)
    }

    /// The glue keeps a JavaScript MEMFS for the syscalls (every format but the minified one).
    pub fn has_filesystem(self) -> bool {
        self != ModuleFormat::Emscripten1
    }

    /// The loader creates `/data` in the file system after start-up (formats built with the WeaveDrive-era glue).
    pub fn creates_data_dir(self) -> bool {
        matches!(
            self,
            ModuleFormat::Emscripten4
                | ModuleFormat::Emscripten4Metering
                | ModuleFormat::Wasm64
                | ModuleFormat::Wasm64Metering
        )
    }

    /// Stack helpers exported by the module: `(save, restore, alloc)`.
    pub fn stack_exports(self) -> (&'static str, &'static str, &'static str) {
        match self {
            ModuleFormat::Emscripten1 => ("M", "N", "O"),
            ModuleFormat::Emscripten2 | ModuleFormat::Emscripten3 => {
                ("stackSave", "stackRestore", "stackAlloc")
            }
            _ => (
                "emscripten_stack_get_current",
                "_emscripten_stack_restore",
                "_emscripten_stack_alloc",
            ),
        }
    }
}

impl fmt::Display for ModuleFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ModuleFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModuleFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_round_trips_through_its_tag_value() {
        for f in ModuleFormat::ALL {
            assert_eq!(f.as_str().parse::<ModuleFormat>(), Ok(f));
            let json = serde_json::to_string(&f).unwrap();
            assert_eq!(json, format!("\"{}\"", f.as_str()));
        }
    }

    #[test]
    fn unknown_format_lists_the_known_ones() {
        let err = "wasm32-unknown-wasi".parse::<ModuleFormat>().unwrap_err();
        let text = err.to_string();
        assert!(text.contains("wasm32-unknown-wasi"));
        assert!(text.contains("wasm64-unknown-emscripten-draft_2024_02_15"));
    }

    #[test]
    fn abi_facts_follow_the_reference_glue() {
        assert_eq!(ModuleFormat::Emscripten2.heap_max(), 524_288_000);
        assert_eq!(ModuleFormat::Emscripten4.heap_max(), 4_294_901_760);
        assert_eq!(ModuleFormat::Wasm64.heap_max(), 17_179_869_184);
        assert_eq!(
            ModuleFormat::Wasm64Metering.injected_metering(),
            Some(MeterWidth::I64)
        );
        assert_eq!(
            ModuleFormat::Emscripten4Metering.injected_metering(),
            Some(MeterWidth::I32)
        );
        assert_eq!(ModuleFormat::Emscripten3.injected_metering(), None);
        assert_eq!(ModuleFormat::Emscripten1.main_call(), MainCall::NoArguments);
        assert_eq!(ModuleFormat::Wasm64.main_call(), MainCall::NotCalled);
        assert_eq!(
            ModuleFormat::Emscripten2.string_size_rule(),
            StringSizeRule::Utf16UnitsTimesFour
        );
        assert_eq!(
            ModuleFormat::Emscripten3.string_size_rule(),
            StringSizeRule::Utf8Exact
        );
    }
}
