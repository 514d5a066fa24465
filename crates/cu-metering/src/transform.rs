//! The streaming transform: one pass over the payloads, unchanged sections copied raw, changed
//! bytes replaced through [`Patch`]es, function bodies re-assembled segment by segment.
//!
//! Two flavours share the pass: [`Flavor::Host`] (the exact port: a `metering.usegas` call per
//! segment) and [`Flavor::Inline`] (same segments and constants, accumulated in a global; see
//! [`crate::meter_inline`]).

use std::ops::Range;

use wasm_encoder::Encode;
use wasmparser::{
    BinaryReader, Chunk, ConstExpr, ElementItems, Encoding, FunctionBody, IndirectNameMap, NameMap, Operator,
    Parser, Payload, TableInit, TypeRef, ValType, WasmFeatures,
};

use crate::cost::{self, METERING_OVERHEAD};
use crate::{
    Compat, INLINE_GAS_LIMIT_EXPORT, INLINE_GAS_USED_EXPORT, INLINE_OUT_OF_GAS_FIELD, MeterError,
    MeterOptions, MeterType, compat,
};

const TYPE: u8 = 1;
const IMPORT: u8 = 2;
const TABLE: u8 = 4;
const GLOBAL: u8 = 6;
const EXPORT: u8 = 7;
const START: u8 = 8;
const ELEMENT: u8 = 9;
const CODE: u8 = 10;
/// Pseudo section id for "end of module" in [`Transform::before_section`].
const END: u8 = 0xff;

const USEGAS_MODULE: &str = "metering";
const USEGAS_FIELD: &str = "usegas";

/// Which instrumentation to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `<type>.const cost; call metering.usegas` per segment (the reference).
    Host,
    /// Gas accumulated in an exported mutable i64 global, `metering.out_of_gas` called when it
    /// exceeds the exported limit global.
    Inline,
}

/// What replaces `wasm[start..end]`.
#[derive(Debug, Clone, Copy)]
enum Fix {
    /// The unsigned LEB of a function index.
    Index(u32),
    /// A `call usegas` of a pre-metered module: the inline gas sequence consuming the argument.
    InlineCall(MeterType),
}

#[derive(Debug, Clone, Copy)]
struct Patch {
    start: usize,
    end: usize,
    fix: Fix,
}

/// Inline flavour state.
#[derive(Debug, Default)]
struct InlineState {
    /// Per type index: `Some(t)` if the type is `(param t)` with no results, t ∈ {i32, i64}.
    usegas_shapes: Vec<Option<MeterType>>,
    imported_globals: u32,
    /// `metering.usegas` of a pre-metered module: its (unchanged) index and parameter type.
    premetered: Option<(u32, MeterType)>,
    global_done: bool,
    export_done: bool,
    /// Index of the gas-used global; the limit global is the next one.
    used_global: u32,
}

struct Transform<'a> {
    wasm: &'a [u8],
    opts: MeterOptions,
    flavor: Flavor,
    out: Vec<u8>,
    /// Number of imported functions = index of the added import.
    imported_funcs: u32,
    /// Type index of the added import.
    added_type: u32,
    type_done: bool,
    import_done: bool,
    inline: InlineState,
    patches: Vec<Patch>,
    body: Vec<u8>,
}

pub(crate) fn run(wasm: &[u8], opts: &MeterOptions, flavor: Flavor) -> Result<Vec<u8>, MeterError> {
    let mut t = Transform {
        wasm,
        opts: *opts,
        flavor,
        out: Vec::with_capacity(wasm.len() + wasm.len() / 4 + 64),
        imported_funcs: 0,
        added_type: 0,
        type_done: false,
        import_done: false,
        inline: InlineState::default(),
        patches: Vec::new(),
        body: Vec::new(),
    };
    let mut parser = Parser::new(0);
    parser.set_features(WasmFeatures::all());
    let mut offset = 0usize;
    loop {
        let (consumed, payload) = match parser.parse(&wasm[offset..], true)? {
            Chunk::Parsed { consumed, payload } => (consumed, payload),
            Chunk::NeedMoreData(_) => {
                return Err(MeterError::UnterminatedBody { offset });
            }
        };
        offset += consumed;
        match payload {
            Payload::Version { encoding, range, .. } => {
                if encoding != Encoding::Module {
                    return Err(MeterError::Component);
                }
                t.out.extend_from_slice(&wasm[range]);
            }
            Payload::End(_) => {
                if t.flavor == Flavor::Inline {
                    t.before_section(END)?;
                }
                break;
            }
            Payload::CodeSectionStart { range, .. } => {
                t.before_section(CODE)?;
                t.code_section(range.clone())?;
                parser.skip_section();
                offset = range.end;
            }
            Payload::CustomSection(reader) => {
                let range = reader.range();
                if t.strict() {
                    compat::check_section(0, &wasm[range.clone()], range.start)?;
                }
                if t.opts.renumber_names && reader.name() == "name" {
                    let content = t
                        .renumber_names(range.clone(), reader.data_offset())
                        .unwrap_or_else(|_| wasm[range].to_vec());
                    push_section(&mut t.out, 0, &content);
                } else {
                    push_section(&mut t.out, 0, &wasm[range]);
                }
            }
            other => {
                let Some((id, range)) = other.as_section() else {
                    continue;
                };
                t.before_section(id)?;
                if t.strict() {
                    compat::check_section(id, &wasm[range.clone()], range.start)?;
                }
                match other {
                    Payload::TypeSection(reader) => t.type_section(reader, range)?,
                    Payload::ImportSection(reader) => t.import_section(reader, range)?,
                    Payload::TableSection(reader) => {
                        t.patches.clear();
                        for table in reader {
                            if let TableInit::Expr(expr) = table?.init {
                                t.scan_const_expr(&expr)?;
                            }
                        }
                        t.push_patched(TABLE, range)?;
                    }
                    Payload::GlobalSection(reader) => t.global_section(reader, range)?,
                    Payload::ExportSection(_) => t.export_section(range)?,
                    Payload::StartSection { func, .. } => {
                        t.check_escape(func)?;
                        let mut content = Vec::new();
                        t.shift(func)?.encode(&mut content);
                        push_section(&mut t.out, START, &content);
                    }
                    Payload::ElementSection(reader) => {
                        t.patches.clear();
                        for element in reader {
                            match element?.items {
                                ElementItems::Functions(funcs) => {
                                    for item in funcs.into_iter_with_offsets() {
                                        let (pos, index) = item?;
                                        t.func_ref(pos, index)?;
                                    }
                                }
                                ElementItems::Expressions(_, exprs) => {
                                    for expr in exprs {
                                        t.scan_const_expr(&expr?)?;
                                    }
                                }
                            }
                        }
                        t.push_patched(ELEMENT, range)?;
                    }
                    _ => push_section(&mut t.out, id, &wasm[range]),
                }
            }
        }
    }
    Ok(t.out)
}

/// Whether the module imports `metering.usegas`.
pub(crate) fn imports_usegas(wasm: &[u8]) -> Result<bool, MeterError> {
    let mut parser = Parser::new(0);
    parser.set_features(WasmFeatures::all());
    for payload in parser.parse_all(wasm) {
        match payload? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import?;
                    if import.module == USEGAS_MODULE && import.name == USEGAS_FIELD {
                        return Ok(true);
                    }
                }
                return Ok(false);
            }
            Payload::FunctionSection(_)
            | Payload::TableSection(_)
            | Payload::MemorySection(_)
            | Payload::GlobalSection(_)
            | Payload::ExportSection(_)
            | Payload::CodeSectionStart { .. } => return Ok(false),
            _ => {}
        }
    }
    Ok(false)
}

fn push_section(out: &mut Vec<u8>, id: u8, content: &[u8]) {
    out.push(id);
    content.encode(out);
}

/// Length of the unsigned LEB at the start of `bytes`.
fn leb_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|b| b & 0x80 == 0)
        .map_or(bytes.len(), |p| p + 1)
}

impl Transform<'_> {
    fn strict(&self) -> bool {
        self.opts.compat == Compat::Reference
    }

    /// The function index `index` gets in the output module.
    fn shift(&self, index: u32) -> Result<u32, MeterError> {
        if index >= self.imported_funcs {
            index.checked_add(1).ok_or(MeterError::IndexOverflow)
        } else {
            Ok(index)
        }
    }

    /// Inline flavour on a pre-metered module: `usegas` may only be called directly.
    fn check_escape(&self, index: u32) -> Result<(), MeterError> {
        match self.inline.premetered {
            Some((usegas, _)) if usegas == index => Err(MeterError::UsegasEscapes),
            _ => Ok(()),
        }
    }

    /// Registers a patch for the function index LEB at `pos` if it must move.
    fn patch_index(&mut self, pos: usize, index: u32) -> Result<(), MeterError> {
        if index >= self.imported_funcs {
            let end = pos + leb_len(&self.wasm[pos..]);
            let value = self.shift(index)?;
            self.patches.push(Patch {
                start: pos,
                end,
                fix: Fix::Index(value),
            });
        }
        Ok(())
    }

    /// A function reference outside a direct call (export, element, `ref.func`, start).
    fn func_ref(&mut self, pos: usize, index: u32) -> Result<(), MeterError> {
        self.check_escape(index)?;
        self.patch_index(pos, index)
    }

    /// Registers patches for every `ref.func` in a constant expression.
    fn scan_const_expr(&mut self, expr: &ConstExpr<'_>) -> Result<(), MeterError> {
        let mut ops = expr.get_operators_reader();
        while !ops.eof() {
            let (op, pos) = ops.read_with_offset()?;
            if let Operator::RefFunc { function_index } = op {
                self.func_ref(pos + 1, function_index)?;
            }
        }
        Ok(())
    }

    /// The inline gas sequence. With `cost`, charges that constant; without, charges the
    /// `meter_type` value on top of the stack (a pre-metered `usegas` argument).
    fn inline_sequence(&self, cost: Option<i64>, meter_type: MeterType, out: &mut Vec<u8>) {
        let used = self.inline.used_global;
        let limit = used + 1;
        match cost {
            Some(c) => {
                // global.get used; i64.const c
                out.push(0x23);
                used.encode(out);
                out.push(0x42);
                c.encode(out);
            }
            None => {
                // (value) [i64.extend_i32_s]; global.get used
                if meter_type == MeterType::I32 {
                    out.push(0xac);
                }
                out.push(0x23);
                used.encode(out);
            }
        }
        // i64.add; global.set used; global.get used; global.get limit; i64.gt_u;
        // if; call out_of_gas; end
        out.push(0x7c);
        out.push(0x24);
        used.encode(out);
        out.push(0x23);
        used.encode(out);
        out.push(0x23);
        limit.encode(out);
        out.extend_from_slice(&[0x56, 0x04, 0x40, 0x10]);
        self.imported_funcs.encode(out);
        out.push(0x0b);
    }

    /// Copies `wasm[range]` to `out`, applying the given patches.
    fn copy_patched(&self, out: &mut Vec<u8>, range: Range<usize>, patches: &[Patch]) {
        let mut pos = range.start;
        for p in patches {
            out.extend_from_slice(&self.wasm[pos..p.start]);
            match p.fix {
                Fix::Index(value) => value.encode(out),
                Fix::InlineCall(ty) => self.inline_sequence(None, ty, out),
            }
            pos = p.end;
        }
        out.extend_from_slice(&self.wasm[pos..range.end]);
    }

    fn push_patched(&mut self, id: u8, range: Range<usize>) -> Result<(), MeterError> {
        self.push_patched_with(id, range, 0, &[])
    }

    /// Writes section `id` from `wasm[range]` with the pending patches applied, the leading
    /// count raised by `extra` and `tail` appended.
    fn push_patched_with(
        &mut self,
        id: u8,
        range: Range<usize>,
        extra: u32,
        tail: &[u8],
    ) -> Result<(), MeterError> {
        let patches = std::mem::take(&mut self.patches);
        if patches.is_empty() && extra == 0 && tail.is_empty() {
            push_section(&mut self.out, id, &self.wasm[range]);
            return Ok(());
        }
        let mut content = Vec::with_capacity(range.len() + patches.len() + tail.len() + 8);
        let mut r = BinaryReader::new(&self.wasm[range.clone()], range.start);
        let count = r.read_var_u32()?;
        count
            .checked_add(extra)
            .ok_or(MeterError::IndexOverflow)?
            .encode(&mut content);
        self.copy_patched(&mut content, r.original_position()..range.end, &patches);
        content.extend_from_slice(tail);
        push_section(&mut self.out, id, &content);
        self.patches = patches;
        self.patches.clear();
        Ok(())
    }

    /// The entry appended to the type section.
    fn added_type_entry(&self, out: &mut Vec<u8>) {
        match self.flavor {
            Flavor::Host => {
                let ty = match self.opts.meter_type {
                    MeterType::I32 => 0x7f,
                    MeterType::I64 => 0x7e,
                };
                out.extend_from_slice(&[0x60, 0x01, ty, 0x00]);
            }
            Flavor::Inline => out.extend_from_slice(&[0x60, 0x00, 0x00]),
        }
    }

    /// The entry appended to the import section.
    fn added_import_entry(&self, out: &mut Vec<u8>) {
        USEGAS_MODULE.encode(out);
        match self.flavor {
            Flavor::Host => USEGAS_FIELD.encode(out),
            Flavor::Inline => INLINE_OUT_OF_GAS_FIELD.encode(out),
        }
        out.push(0x00);
        self.added_type.encode(out);
    }

    /// The two globals of the inline flavour: gas used (0) and gas limit (i64::MAX).
    fn added_globals(out: &mut Vec<u8>) {
        out.extend_from_slice(&[0x7e, 0x01, 0x42, 0x00, 0x0b]);
        out.extend_from_slice(&[0x7e, 0x01, 0x42]);
        i64::MAX.encode(out);
        out.push(0x0b);
    }

    fn added_exports(&self, out: &mut Vec<u8>) {
        INLINE_GAS_USED_EXPORT.encode(out);
        out.push(0x03);
        self.inline.used_global.encode(out);
        INLINE_GAS_LIMIT_EXPORT.encode(out);
        out.push(0x03);
        (self.inline.used_global + 1).encode(out);
    }

    /// Creates the sections the package's `createSection` would insert before the first
    /// non-custom section with a higher id (type, import), and for the inline flavour the
    /// global and export sections carrying the gas globals.
    fn before_section(&mut self, id: u8) -> Result<(), MeterError> {
        if id == 0 {
            return Ok(());
        }
        if id != TYPE && !self.type_done {
            self.type_done = true;
            self.added_type = 0;
            let mut content = vec![0x01];
            self.added_type_entry(&mut content);
            push_section(&mut self.out, TYPE, &content);
        }
        if id != TYPE && id != IMPORT && !self.import_done {
            self.import_done = true;
            let mut content = vec![0x01];
            self.added_import_entry(&mut content);
            push_section(&mut self.out, IMPORT, &content);
        }
        if self.flavor == Flavor::Inline {
            let after_globals = matches!(id, EXPORT | START | ELEMENT | CODE | 11 | 12 | END);
            if after_globals && !self.inline.global_done {
                self.inline.global_done = true;
                self.inline.used_global = self.inline.imported_globals;
                let mut content = vec![0x02];
                Self::added_globals(&mut content);
                push_section(&mut self.out, GLOBAL, &content);
            }
            if after_globals && id != EXPORT && !self.inline.export_done {
                self.inline.export_done = true;
                let mut content = vec![0x02];
                self.added_exports(&mut content);
                push_section(&mut self.out, EXPORT, &content);
            }
        }
        Ok(())
    }

    fn type_section(
        &mut self,
        reader: wasmparser::TypeSectionReader<'_>,
        range: Range<usize>,
    ) -> Result<(), MeterError> {
        self.type_done = true;
        let mut types: u32 = 0;
        for group in reader {
            for ty in group?.types() {
                types = types.checked_add(1).ok_or(MeterError::IndexOverflow)?;
                if self.flavor == Flavor::Inline {
                    let shape = match &ty.composite_type.inner {
                        wasmparser::CompositeInnerType::Func(f) if f.results().is_empty() => {
                            match f.params() {
                                [ValType::I32] => Some(MeterType::I32),
                                [ValType::I64] => Some(MeterType::I64),
                                _ => None,
                            }
                        }
                        _ => None,
                    };
                    self.inline.usegas_shapes.push(shape);
                }
            }
        }
        self.added_type = types;
        let mut tail = Vec::new();
        self.added_type_entry(&mut tail);
        self.push_patched_with(TYPE, range, 1, &tail)
    }

    fn import_section(
        &mut self,
        reader: wasmparser::ImportSectionReader<'_>,
        range: Range<usize>,
    ) -> Result<(), MeterError> {
        self.import_done = true;
        let mut funcs: u32 = 0;
        for import in reader.into_imports() {
            let import = import?;
            let usegas = import.module == USEGAS_MODULE && import.name == USEGAS_FIELD;
            match self.flavor {
                Flavor::Host if usegas => return Err(MeterError::AlreadyMetered),
                Flavor::Inline
                    if import.module == USEGAS_MODULE && import.name == INLINE_OUT_OF_GAS_FIELD =>
                {
                    return Err(MeterError::AlreadyMetered);
                }
                Flavor::Inline if usegas => {
                    let shape = match import.ty {
                        TypeRef::Func(t) => self.inline.usegas_shapes.get(t as usize).copied().flatten(),
                        _ => None,
                    };
                    let ty = shape.ok_or(MeterError::UsegasEscapes)?;
                    if self.inline.premetered.is_some() {
                        return Err(MeterError::UsegasEscapes);
                    }
                    self.inline.premetered = Some((funcs, ty));
                }
                _ => {}
            }
            match import.ty {
                TypeRef::Func(_) | TypeRef::FuncExact(_) => {
                    funcs = funcs.checked_add(1).ok_or(MeterError::IndexOverflow)?;
                }
                TypeRef::Global(_) => self.inline.imported_globals += 1,
                _ => {}
            }
        }
        self.imported_funcs = funcs;
        let mut tail = Vec::new();
        self.added_import_entry(&mut tail);
        self.push_patched_with(IMPORT, range, 1, &tail)
    }

    fn global_section(
        &mut self,
        reader: wasmparser::GlobalSectionReader<'_>,
        range: Range<usize>,
    ) -> Result<(), MeterError> {
        self.patches.clear();
        let defined = reader.count();
        for global in reader {
            self.scan_const_expr(&global?.init_expr)?;
        }
        if self.flavor == Flavor::Inline {
            self.inline.global_done = true;
            self.inline.used_global = self
                .inline
                .imported_globals
                .checked_add(defined)
                .ok_or(MeterError::IndexOverflow)?;
            let mut tail = Vec::new();
            Self::added_globals(&mut tail);
            self.push_patched_with(GLOBAL, range, 2, &tail)
        } else {
            self.push_patched(GLOBAL, range)
        }
    }

    fn export_section(&mut self, range: Range<usize>) -> Result<(), MeterError> {
        self.patches.clear();
        let mut r = BinaryReader::new(&self.wasm[range.clone()], range.start);
        let count = r.read_var_u32()?;
        for _ in 0..count {
            let name = r.read_string()?;
            if self.flavor == Flavor::Inline
                && (name == INLINE_GAS_USED_EXPORT || name == INLINE_GAS_LIMIT_EXPORT)
            {
                return Err(MeterError::NameClash(name.to_string()));
            }
            let kind = r.read_u8()?;
            let pos = r.original_position();
            let index = r.read_var_u32()?;
            if kind == 0x00 {
                self.func_ref(pos, index)?;
            }
        }
        if self.flavor == Flavor::Inline {
            self.inline.export_done = true;
            let mut tail = Vec::new();
            self.added_exports(&mut tail);
            self.push_patched_with(EXPORT, range, 2, &tail)
        } else {
            self.push_patched(EXPORT, range)
        }
    }

    fn code_section(&mut self, range: Range<usize>) -> Result<(), MeterError> {
        let mut reader = BinaryReader::new(&self.wasm[range.clone()], range.start);
        let count = reader.read_var_u32()?;
        let mut content = Vec::with_capacity(range.len() + range.len() / 4);
        count.encode(&mut content);
        let mut body = std::mem::take(&mut self.body);
        for _ in 0..count {
            let func = reader.read::<FunctionBody<'_>>()?;
            self.meter_body(&func, &mut body)?;
            body.encode(&mut content);
        }
        self.body = body;
        push_section(&mut self.out, CODE, &content);
        Ok(())
    }

    /// Emits the metering statement for a segment of `cost` (before the overhead).
    fn statement(&self, cost: u64, out: &mut Vec<u8>) -> Result<(), MeterError> {
        let total = cost + METERING_OVERHEAD;
        match (self.flavor, self.opts.meter_type) {
            (Flavor::Host, MeterType::I32) => {
                let c = i32::try_from(total).map_err(|_| MeterError::CostOverflow { cost: total })?;
                out.push(0x41);
                c.encode(out);
                out.push(0x10);
                self.imported_funcs.encode(out);
            }
            (Flavor::Host, MeterType::I64) => {
                let c = i64::try_from(total).map_err(|_| MeterError::CostOverflow { cost: total })?;
                out.push(0x42);
                c.encode(out);
                out.push(0x10);
                self.imported_funcs.encode(out);
            }
            (Flavor::Inline, ty) => {
                if ty == MeterType::I32 {
                    // Same limit as the host flavour's i32 constant.
                    i32::try_from(total).map_err(|_| MeterError::CostOverflow { cost: total })?;
                }
                let c = i64::try_from(total).map_err(|_| MeterError::CostOverflow { cost: total })?;
                self.inline_sequence(Some(c), ty, out);
            }
        }
        Ok(())
    }

    /// The core of `meterCodeEntry`: segments ending at branching ops, each preceded by the
    /// metering statement when its cost is non-zero. For the inline flavour on a pre-metered
    /// module, only the existing `usegas` calls are replaced.
    fn meter_body(&mut self, body: &FunctionBody<'_>, out: &mut Vec<u8>) -> Result<(), MeterError> {
        let wasm = self.wasm;
        let range = body.range();
        let mut ops = body.get_operators_reader()?;
        let ops_start = ops.original_position();
        if self.strict() {
            let n = compat::check_locals(&wasm[range.clone()], range.start)?;
            if range.start + n != ops_start {
                return Err(MeterError::Unsupported {
                    offset: range.start,
                    what: "local declarations the reference parses differently".into(),
                });
            }
        }
        out.clear();
        out.reserve(range.len() + range.len() / 2);
        out.extend_from_slice(&wasm[range.start..ops_start]);
        self.patches.clear();
        let premetered = self.inline.premetered;
        let mut seg_start = ops_start;
        // Type cost and locals cost are both 0 with the default table (see crate docs).
        let mut cost: u64 = 0;
        while !ops.eof() {
            let (op, pos) = ops.read_with_offset()?;
            let end = ops.original_position();
            if self.strict() {
                let len = compat::op_len(&wasm[pos..range.end])
                    .map_err(|what| MeterError::Unsupported { offset: pos, what })?;
                if len != end - pos {
                    return Err(MeterError::Unsupported {
                        offset: pos,
                        what: format!(
                            "operator {:?} is {} bytes but the reference reads {len}",
                            op,
                            end - pos
                        ),
                    });
                }
            }
            match op {
                Operator::Call { function_index } => match premetered {
                    Some((usegas, ty)) if usegas == function_index => {
                        self.patches.push(Patch {
                            start: pos,
                            end,
                            fix: Fix::InlineCall(ty),
                        });
                    }
                    _ => self.patch_index(pos + 1, function_index)?,
                },
                Operator::ReturnCall { function_index } | Operator::RefFunc { function_index } => {
                    self.func_ref(pos + 1, function_index)?;
                }
                _ => {}
            }
            if premetered.is_some() {
                continue;
            }
            let info = cost::opcode_info(wasm[pos]);
            cost += u64::from(info.cost);
            if info.branching {
                if cost != 0 {
                    self.statement(cost, out)?;
                }
                self.copy_patched(out, seg_start..end, &self.patches);
                self.patches.clear();
                seg_start = end;
                cost = 0;
            }
        }
        if premetered.is_some() {
            self.copy_patched(out, seg_start..range.end, &self.patches);
            self.patches.clear();
            seg_start = range.end;
        }
        if seg_start != range.end {
            return Err(MeterError::UnterminatedBody { offset: range.start });
        }
        Ok(())
    }

    /// Rebuilds a `name` section with function indices shifted in the function, local and
    /// label name subsections.
    fn renumber_names(&mut self, range: Range<usize>, data_offset: usize) -> Result<Vec<u8>, MeterError> {
        let wasm = self.wasm;
        let mut content = Vec::with_capacity(range.len() + 64);
        content.extend_from_slice(&wasm[range.start..data_offset]);
        let mut r = BinaryReader::new(&wasm[data_offset..range.end], data_offset);
        while !r.eof() {
            let id = r.read_u8()?;
            let size = r.read_var_u32()? as usize;
            let start = r.original_position();
            r.read_bytes(size)?;
            let sub = start..start + size;
            self.patches.clear();
            match id {
                1 => {
                    let map = NameMap::new(BinaryReader::new(&wasm[sub.clone()], start))?;
                    for item in map.into_iter_with_offsets() {
                        let (pos, naming) = item?;
                        self.patch_index(pos, naming.index)?;
                    }
                }
                2 | 3 => {
                    let map = IndirectNameMap::new(BinaryReader::new(&wasm[sub.clone()], start))?;
                    for item in map.into_iter_with_offsets() {
                        let (pos, naming) = item?;
                        self.patch_index(pos, naming.index)?;
                    }
                }
                _ => {}
            }
            let mut new_sub = Vec::with_capacity(size + 16);
            self.copy_patched(&mut new_sub, sub, &self.patches);
            self.patches.clear();
            content.push(id);
            new_sub.encode(&mut content);
        }
        Ok(content)
    }
}
