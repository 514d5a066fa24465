//! The streaming transform: one pass over the payloads, unchanged sections copied raw, changed
//! bytes replaced through [`Patch`]es, function bodies re-assembled segment by segment.

use std::ops::Range;

use wasm_encoder::Encode;
use wasmparser::{
    BinaryReader, Chunk, ConstExpr, ElementItems, Encoding, FunctionBody, IndirectNameMap, NameMap, Operator,
    Parser, Payload, TableInit, WasmFeatures,
};

use crate::cost::{self, METERING_OVERHEAD};
use crate::{Compat, MeterError, MeterOptions, MeterType, compat};

const TYPE: u8 = 1;
const IMPORT: u8 = 2;
const TABLE: u8 = 4;
const GLOBAL: u8 = 6;
const EXPORT: u8 = 7;
const START: u8 = 8;
const ELEMENT: u8 = 9;
const CODE: u8 = 10;

const USEGAS_MODULE: &str = "metering";
const USEGAS_FIELD: &str = "usegas";

/// Replace `wasm[start..end]` (an unsigned LEB) by the LEB of `value`.
#[derive(Debug, Clone, Copy)]
struct Patch {
    start: usize,
    end: usize,
    value: u32,
}

struct Transform<'a> {
    wasm: &'a [u8],
    opts: MeterOptions,
    out: Vec<u8>,
    /// Number of imported functions = index of `metering.usegas`.
    imported_funcs: u32,
    /// Type index of `(param <meter type>)`.
    usegas_type: u32,
    type_done: bool,
    import_done: bool,
    patches: Vec<Patch>,
    body: Vec<u8>,
}

pub(crate) fn run(wasm: &[u8], opts: &MeterOptions) -> Result<Vec<u8>, MeterError> {
    let mut t = Transform {
        wasm,
        opts: *opts,
        out: Vec::with_capacity(wasm.len() + wasm.len() / 4 + 64),
        imported_funcs: 0,
        usegas_type: 0,
        type_done: false,
        import_done: false,
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
            Payload::End(_) => break,
            Payload::CodeSectionStart { range, .. } => {
                t.before_section(CODE)?;
                if t.strict() {
                    // Only the count; bodies are checked op by op.
                    let mut r = BinaryReader::new(&wasm[range.clone()], range.start);
                    r.read_var_u32()?;
                }
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
                        t.push_patched(TABLE, range);
                    }
                    Payload::GlobalSection(reader) => {
                        t.patches.clear();
                        for global in reader {
                            t.scan_const_expr(&global?.init_expr)?;
                        }
                        t.push_patched(GLOBAL, range);
                    }
                    Payload::ExportSection(_) => t.export_section(range)?,
                    Payload::StartSection { func, .. } => {
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
                                        t.patch_index(pos, index)?;
                                    }
                                }
                                ElementItems::Expressions(_, exprs) => {
                                    for expr in exprs {
                                        t.scan_const_expr(&expr?)?;
                                    }
                                }
                            }
                        }
                        t.push_patched(ELEMENT, range);
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

/// The payload of the added type: `func (param <meter type>) (result)`.
fn usegas_type_entry(meter_type: MeterType, out: &mut Vec<u8>) {
    let ty = match meter_type {
        MeterType::I32 => 0x7f,
        MeterType::I64 => 0x7e,
    };
    out.extend_from_slice(&[0x60, 0x01, ty, 0x00]);
}

impl Transform<'_> {
    fn strict(&self) -> bool {
        self.opts.compat == Compat::Reference
    }

    /// The function index `index` gets in the metered module.
    fn shift(&self, index: u32) -> Result<u32, MeterError> {
        if index >= self.imported_funcs {
            index.checked_add(1).ok_or(MeterError::IndexOverflow)
        } else {
            Ok(index)
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
                value,
            });
        }
        Ok(())
    }

    /// Registers patches for every `ref.func` in a constant expression.
    fn scan_const_expr(&mut self, expr: &ConstExpr<'_>) -> Result<(), MeterError> {
        let mut ops = expr.get_operators_reader();
        while !ops.eof() {
            let (op, pos) = ops.read_with_offset()?;
            if let Operator::RefFunc { function_index } = op {
                self.patch_index(pos + 1, function_index)?;
            }
        }
        Ok(())
    }

    /// Copies `wasm[range]` to `out`, applying (and consuming) the pending patches.
    fn copy_patched(wasm: &[u8], out: &mut Vec<u8>, range: Range<usize>, patches: &[Patch]) {
        let mut pos = range.start;
        for p in patches {
            out.extend_from_slice(&wasm[pos..p.start]);
            p.value.encode(out);
            pos = p.end;
        }
        out.extend_from_slice(&wasm[pos..range.end]);
    }

    fn push_patched(&mut self, id: u8, range: Range<usize>) {
        if self.patches.is_empty() {
            push_section(&mut self.out, id, &self.wasm[range]);
        } else {
            let mut content = Vec::with_capacity(range.len() + self.patches.len());
            Self::copy_patched(self.wasm, &mut content, range, &self.patches);
            self.patches.clear();
            push_section(&mut self.out, id, &content);
        }
    }

    /// Creates the type and import sections the package's `createSection` would insert before
    /// the first non-custom section with a higher id.
    fn before_section(&mut self, id: u8) -> Result<(), MeterError> {
        if id == 0 {
            return Ok(());
        }
        if id != TYPE && !self.type_done {
            self.type_done = true;
            self.usegas_type = 0;
            let mut content = vec![0x01];
            usegas_type_entry(self.opts.meter_type, &mut content);
            push_section(&mut self.out, TYPE, &content);
        }
        if id != TYPE && id != IMPORT && !self.import_done {
            self.import_done = true;
            let mut content = vec![0x01];
            self.usegas_import_entry(&mut content);
            push_section(&mut self.out, IMPORT, &content);
        }
        Ok(())
    }

    fn usegas_import_entry(&self, out: &mut Vec<u8>) {
        USEGAS_MODULE.encode(out);
        USEGAS_FIELD.encode(out);
        out.push(0x00);
        self.usegas_type.encode(out);
    }

    /// Start of the entries of a vector section: after its count.
    fn entries_start(&self, range: &Range<usize>) -> Result<(u32, usize), MeterError> {
        let mut r = BinaryReader::new(&self.wasm[range.clone()], range.start);
        let count = r.read_var_u32()?;
        Ok((count, r.original_position()))
    }

    fn type_section(
        &mut self,
        reader: wasmparser::TypeSectionReader<'_>,
        range: Range<usize>,
    ) -> Result<(), MeterError> {
        self.type_done = true;
        let mut types: u32 = 0;
        for group in reader {
            let n = u32::try_from(group?.types().len()).map_err(|_| MeterError::IndexOverflow)?;
            types = types.checked_add(n).ok_or(MeterError::IndexOverflow)?;
        }
        self.usegas_type = types;
        let (count, start) = self.entries_start(&range)?;
        let mut content = Vec::with_capacity(range.len() + 8);
        count
            .checked_add(1)
            .ok_or(MeterError::IndexOverflow)?
            .encode(&mut content);
        content.extend_from_slice(&self.wasm[start..range.end]);
        usegas_type_entry(self.opts.meter_type, &mut content);
        push_section(&mut self.out, TYPE, &content);
        Ok(())
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
            if import.module == USEGAS_MODULE && import.name == USEGAS_FIELD {
                return Err(MeterError::AlreadyMetered);
            }
            if matches!(import.ty, wasmparser::TypeRef::Func(_)) {
                funcs = funcs.checked_add(1).ok_or(MeterError::IndexOverflow)?;
            }
        }
        self.imported_funcs = funcs;
        let (count, start) = self.entries_start(&range)?;
        let mut content = Vec::with_capacity(range.len() + 24);
        count
            .checked_add(1)
            .ok_or(MeterError::IndexOverflow)?
            .encode(&mut content);
        content.extend_from_slice(&self.wasm[start..range.end]);
        self.usegas_import_entry(&mut content);
        push_section(&mut self.out, IMPORT, &content);
        Ok(())
    }

    fn export_section(&mut self, range: Range<usize>) -> Result<(), MeterError> {
        self.patches.clear();
        let mut r = BinaryReader::new(&self.wasm[range.clone()], range.start);
        let count = r.read_var_u32()?;
        for _ in 0..count {
            r.skip_string()?;
            let kind = r.read_u8()?;
            let pos = r.original_position();
            let index = r.read_var_u32()?;
            if kind == 0x00 {
                self.patch_index(pos, index)?;
            }
        }
        self.push_patched(EXPORT, range);
        Ok(())
    }

    fn code_section(&mut self, range: Range<usize>) -> Result<(), MeterError> {
        let mut reader = BinaryReader::new(&self.wasm[range.clone()], range.start);
        let count = reader.read_var_u32()?;
        let mut content = Vec::with_capacity(range.len() + range.len() / 4);
        count.encode(&mut content);
        for _ in 0..count {
            let body = reader.read::<FunctionBody<'_>>()?;
            self.meter_body(&body)?;
            self.body.encode(&mut content);
        }
        push_section(&mut self.out, CODE, &content);
        Ok(())
    }

    /// The core of `meterCodeEntry`: segments ending at branching ops, each preceded by
    /// `<type>.const cost; call usegas` when its cost is non-zero. Result in `self.body`.
    fn meter_body(&mut self, body: &FunctionBody<'_>) -> Result<(), MeterError> {
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
        self.body.clear();
        self.body.reserve(range.len() + range.len() / 2);
        self.body.extend_from_slice(&wasm[range.start..ops_start]);
        self.patches.clear();
        let usegas = self.imported_funcs;
        let mut seg_start = ops_start;
        // Type cost and locals cost are both 0 with the default table (see crate docs).
        let mut cost: u64 = 0;
        while !ops.eof() {
            let (op, pos) = ops.read_with_offset()?;
            let end = ops.original_position();
            let info = cost::opcode_info(wasm[pos]);
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
                Operator::Call { function_index }
                | Operator::ReturnCall { function_index }
                | Operator::RefFunc { function_index } => {
                    self.patch_index(pos + 1, function_index)?;
                }
                _ => {}
            }
            cost += u64::from(info.cost);
            if info.branching {
                if cost != 0 {
                    let total = cost + METERING_OVERHEAD;
                    match self.opts.meter_type {
                        MeterType::I32 => {
                            let c =
                                i32::try_from(total).map_err(|_| MeterError::CostOverflow { cost: total })?;
                            self.body.push(0x41);
                            c.encode(&mut self.body);
                        }
                        MeterType::I64 => {
                            let c =
                                i64::try_from(total).map_err(|_| MeterError::CostOverflow { cost: total })?;
                            self.body.push(0x42);
                            c.encode(&mut self.body);
                        }
                    }
                    self.body.push(0x10);
                    usegas.encode(&mut self.body);
                }
                Self::copy_patched(wasm, &mut self.body, seg_start..end, &self.patches);
                self.patches.clear();
                seg_start = end;
                cost = 0;
            }
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
            Self::copy_patched(wasm, &mut new_sub, sub, &self.patches);
            self.patches.clear();
            content.push(id);
            new_sub.encode(&mut content);
        }
        Ok(content)
    }
}
