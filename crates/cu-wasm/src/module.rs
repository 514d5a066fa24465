//! Loading a module: load-time transforms, Cranelift compilation through the AOT cache, linking the
//! host imports once into an `InstancePre`.

use std::sync::Arc;

use cu_types::{MeterWidth, ModuleFormat};
use sha2::{Digest, Sha256};
use wasmtime::{ExternType, InstancePre, Linker, Module};

use crate::cache::{AotCache, CacheKey, Miss};
use crate::engine::{Engines, Metering};
use crate::error::WasmError;
use crate::host;
use crate::prepare;
use crate::state::HostState;

/// The export names the host uses, resolved for the module's format.
#[derive(Debug, Clone)]
pub struct ExportNames {
    /// Linear memory.
    pub memory: &'static str,
    /// The function table.
    pub table: &'static str,
    /// `handle(msg, env)`.
    pub handle: &'static str,
    /// `main(argc, argv)`.
    pub main: &'static str,
    /// `__wasm_call_ctors`.
    pub ctors: &'static str,
    /// `malloc`.
    pub malloc: &'static str,
    /// `__errno_location`.
    pub errno_location: &'static str,
    /// `setThrew`.
    pub set_threw: &'static str,
    /// `(stackSave, stackRestore, stackAlloc)` equivalents.
    pub stack: (&'static str, &'static str, &'static str),
}

impl ExportNames {
    /// The names of a format.
    pub fn of(format: ModuleFormat) -> Self {
        if format.is_minified() {
            ExportNames {
                memory: "E",
                ctors: "F",
                handle: "G",
                main: "H",
                table: "I",
                malloc: "J",
                errno_location: "K",
                set_threw: "L",
                stack: format.stack_exports(),
            }
        } else {
            ExportNames {
                memory: "memory",
                table: "__indirect_function_table",
                handle: "handle",
                main: "main",
                ctors: "__wasm_call_ctors",
                malloc: "malloc",
                errno_location: "__errno_location",
                set_threw: "setThrew",
                stack: format.stack_exports(),
            }
        }
    }
}

/// A module compiled and linked, ready to start processes from.
pub struct CompiledModule {
    /// The module's format.
    pub format: ModuleFormat,
    /// Gas (metered) or fuel.
    pub metering: Metering,
    /// SHA-256 of the module bytes as given.
    pub sha256: [u8; 32],
    /// Exports the host uses.
    pub names: ExportNames,
    /// Exported mutable globals saved in snapshots.
    pub globals: Vec<String>,
    /// The module's declared maximum memory in bytes, if any.
    pub declared_max_memory: Option<u64>,
    /// How the module got compiled.
    pub origin: Origin,
    pub(crate) module: Module,
    pub(crate) pre: InstancePre<HostState>,
}

/// Where the compiled code came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Loaded from the AOT cache.
    Cache,
    /// Compiled now (and stored in the cache when there is one). `rebuilt` says why a cached
    /// artefact was not used.
    Compiled {
        /// Set when an artefact existed but failed a check.
        rebuilt: Option<&'static str>,
    },
}

/// Compiles modules with the node's engines and AOT cache.
#[derive(Clone)]
pub struct Loader {
    engines: Engines,
    cache: Option<AotCache>,
}

impl Loader {
    /// A loader; `cache` is the AOT cache directory, or `None` to compile in memory only.
    pub fn new(cache: Option<AotCache>) -> Result<Self, WasmError> {
        Ok(Loader {
            engines: Engines::new()?,
            cache,
        })
    }

    /// A loader whose engines use another instance allocator.
    pub fn with_allocation(
        cache: Option<AotCache>,
        allocation: crate::engine::Allocation,
    ) -> Result<Self, WasmError> {
        Ok(Loader {
            engines: Engines::with_allocation(allocation)?,
            cache,
        })
    }

    /// The engines.
    pub fn engines(&self) -> &Engines {
        &self.engines
    }

    /// Transforms, compiles (or loads from the cache) and links `wasm` as a module of `format`.
    pub fn load(&self, wasm: &[u8], format: ModuleFormat) -> Result<Arc<CompiledModule>, WasmError> {
        self.load_inner(wasm, format, None)
    }

    /// Like [`Loader::load`], but on the engine given. `Metering::Gas` for a module that is not metered
    /// removes its compute bound: only for measuring what fuel costs, never for serving processes.
    pub fn load_on(
        &self,
        wasm: &[u8],
        format: ModuleFormat,
        metering: Metering,
    ) -> Result<Arc<CompiledModule>, WasmError> {
        self.load_inner(wasm, format, Some(metering))
    }

    fn load_inner(
        &self,
        wasm: &[u8],
        format: ModuleFormat,
        forced: Option<Metering>,
    ) -> Result<Arc<CompiledModule>, WasmError> {
        let sha256: [u8; 32] = Sha256::digest(wasm).into();
        let premetered = imports_usegas(wasm)?;
        let metering = if let Some(m) = forced {
            m
        } else if premetered || format.injected_metering().is_some() {
            Metering::Gas
        } else {
            Metering::Fuel
        };
        let engine = self.engines.get(metering);
        let transform = match format.injected_metering() {
            Some(MeterWidth::I32) => "meter32",
            Some(MeterWidth::I64) => "meter64",
            None => "plain",
        };
        let key = CacheKey {
            module_sha256: sha256,
            engine: self.engines.compatibility(metering),
            transform,
        };

        let transformed = || -> Result<Vec<u8>, WasmError> {
            let metered = match format.injected_metering() {
                Some(width) => {
                    let ty = match width {
                        MeterWidth::I32 => cu_metering::MeterType::I32,
                        MeterWidth::I64 => cu_metering::MeterType::I64,
                    };
                    cu_metering::meter(wasm, ty).map_err(|e| WasmError::Metering(e.to_string()))?
                }
                None => wasm.to_vec(),
            };
            // The exported globals are read back from the compiled module (cached or not) in `link`.
            prepare::export_mutable_globals(&metered).map(|(bytes, _)| bytes)
        };

        let mut rebuilt = None;
        let cached = match &self.cache {
            Some(cache) => match cache.load(&key) {
                // SAFETY: the payload passed every check of `AotCache::load`: it was written by this
                // loader for this exact module bytes, transform and engine compatibility hash, and its
                // BLAKE3 matches, so it is an unmodified wasmtime artefact of a compatible engine.
                Ok(payload) => match unsafe { Module::deserialize(engine, &payload) } {
                    Ok(m) => Some(m),
                    Err(_) => {
                        rebuilt = Some("wasmtime refused the artefact");
                        None
                    }
                },
                Err(Miss::Invalid(why)) => {
                    tracing::warn!(why, "rebuilding a cached module artefact");
                    rebuilt = Some(why);
                    None
                }
                Err(Miss::Absent) => None,
            },
            None => None,
        };
        let (module, origin) = match cached {
            Some(m) => (m, Origin::Cache),
            None => {
                let bytes = transformed()?;
                let module = Module::new(engine, &bytes).map_err(|e| WasmError::Compile(format!("{e:#}")))?;
                if let Some(cache) = &self.cache {
                    let payload = module.serialize().map_err(|e| WasmError::Cache(e.to_string()))?;
                    if let Err(e) = cache.store(&key, &payload) {
                        tracing::warn!(error = %e, "could not store the compiled module");
                    }
                }
                (module, Origin::Compiled { rebuilt })
            }
        };
        self.link(module, format, metering, sha256, origin)
    }

    fn link(
        &self,
        module: Module,
        format: ModuleFormat,
        metering: Metering,
        sha256: [u8; 32],
        origin: Origin,
    ) -> Result<Arc<CompiledModule>, WasmError> {
        let names = ExportNames::of(format);
        let mut linker = Linker::new(module.engine());
        host::link(&mut linker, &module, format.is_minified())?;
        for required in [names.memory, names.handle] {
            if module.get_export(required).is_none() {
                return Err(WasmError::MissingExport {
                    name: required,
                    format,
                });
            }
        }
        let stack = names.stack;
        for required in [stack.0, stack.1, stack.2] {
            if !matches!(module.get_export(required), Some(ExternType::Func(_))) {
                return Err(WasmError::MissingExport {
                    name: required,
                    format,
                });
            }
        }
        let declared_max_memory = match module.get_export(names.memory) {
            Some(ExternType::Memory(m)) => m.maximum().map(|pages| pages.saturating_mul(65536)),
            _ => {
                return Err(WasmError::MissingExport {
                    name: names.memory,
                    format,
                });
            }
        };
        let globals: Vec<String> = module
            .exports()
            .filter(
                |e| matches!(e.ty(), ExternType::Global(g) if g.mutability() == wasmtime::Mutability::Var),
            )
            .map(|e| e.name().to_string())
            .collect();
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| WasmError::Link(format!("{e:#}")))?;
        Ok(Arc::new(CompiledModule {
            format,
            metering,
            sha256,
            names,
            globals,
            declared_max_memory,
            origin,
            module,
            pre,
        }))
    }
}

/// Whether a module already imports `metering.usegas` (pre-metered at build time).
pub fn imports_usegas(wasm: &[u8]) -> Result<bool, WasmError> {
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let wasmparser::Payload::ImportSection(reader) =
            payload.map_err(|e| WasmError::Compile(e.to_string()))?
        {
            for import in reader.into_imports() {
                let import = import.map_err(|e| WasmError::Compile(e.to_string()))?;
                if import.module == "metering" && import.name == "usegas" {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

impl CompiledModule {
    /// The wasmtime module (for tools and benchmarks).
    pub fn wasmtime_module(&self) -> &Module {
        &self.module
    }
}
