//! Compiled modules shared by every shard, and the per-process evaluator settings read from tags.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cu_store::{ProcessRecord, Store, Tag};
use cu_types::{Limits, ModuleFormat, parse_compute_limit, parse_memory_limit};
use cu_wasm::{CompiledModule, Loader};

use crate::error::EngineError;

/// A compiled module and its tags.
type Loaded = (Arc<CompiledModule>, Vec<Tag>);

/// Modules compiled once (through the loader's AOT cache) and shared by all shards.
pub struct Modules {
    loader: Arc<Loader>,
    store: Store,
    compiled: Mutex<HashMap<String, Loaded>>,
    /// Serialises compilation so two shards never compile the same module at once.
    compiling: Mutex<()>,
}

impl Modules {
    /// A cache over `loader` reading wasm from `store`.
    pub fn new(loader: Arc<Loader>, store: Store) -> Self {
        Modules {
            loader,
            store,
            compiled: Mutex::new(HashMap::new()),
            compiling: Mutex::new(()),
        }
    }

    fn cached(&self, id: &str) -> Option<Loaded> {
        self.compiled.lock().ok()?.get(id).cloned()
    }

    /// The compiled module `id` and its tags (the wasm is read from the store only once).
    pub fn get(&self, id: &str) -> Result<Loaded, EngineError> {
        if let Some(hit) = self.cached(id) {
            return Ok(hit);
        }
        let _guard = self.compiling.lock().map_err(|_| EngineError::Stopped)?;
        if let Some(hit) = self.cached(id) {
            return Ok(hit);
        }
        let record = self
            .store
            .module(id)?
            .ok_or_else(|| EngineError::UnknownModule(id.to_string()))?;
        let bad = |reason: String| EngineError::Module {
            module: id.to_string(),
            reason,
        };
        let format: ModuleFormat = record.format.trim().parse().map_err(|e| bad(format!("{e}")))?;
        let module = self
            .loader
            .load(&record.wasm, format)
            .map_err(|e| bad(e.to_string()))?;
        if let Ok(mut map) = self.compiled.lock() {
            map.insert(id.to_string(), (module.clone(), record.tags.clone()));
        }
        Ok((module, record.tags))
    }
}

fn tag<'a>(tags: &'a [Tag], name: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.name == name).map(|t| t.value.as_str())
}

/// WeaveDrive for a process (`cu_wasm::drive`): the node's source (the `drive` of the engine's base
/// process config) with the process's and module's tags, when the module gets WeaveDrive at all
/// ([`cu_wasm::drive::enabled_for`]); `None` otherwise, or when the node has no source.
pub fn drive_of(
    base: Option<&cu_wasm::drive::Drive>,
    format: cu_types::ModuleFormat,
    process: &ProcessRecord,
    module_tags: &[Tag],
) -> Option<cu_wasm::drive::Drive> {
    let pairs = |tags: &[Tag]| -> Vec<(String, String)> {
        tags.iter().map(|t| (t.name.clone(), t.value.clone())).collect()
    };
    let module_tags = pairs(module_tags);
    if !cu_wasm::drive::enabled_for(format, &module_tags) {
        return None;
    }
    base.map(|b| cu_wasm::drive::Drive {
        source: b.source.clone(),
        spawn_tags: pairs(&process.tags),
        module_tags,
    })
}

/// `Memory-Limit` and `Compute-Limit`: the process's tag, else the module's (as the reference CU); with
/// neither, `Compute-Limit` is `default_compute` (the operator's setting).
pub fn limits_of(
    process: &ProcessRecord,
    module_tags: &[Tag],
    default_compute: u64,
) -> Result<Limits, EngineError> {
    let pick = |name| tag(&process.tags, name).or_else(|| tag(module_tags, name));
    let bad = |reason: String| EngineError::Limits {
        process: process.id.clone(),
        reason,
    };
    Ok(Limits {
        memory_limit: pick("Memory-Limit")
            .map(parse_memory_limit)
            .transpose()
            .map_err(|e| bad(e.to_string()))?,
        compute_limit: Some(
            pick("Compute-Limit")
                .map(parse_compute_limit)
                .transpose()
                .map_err(|e| bad(e.to_string()))?
                .unwrap_or(default_compute),
        ),
    })
}
