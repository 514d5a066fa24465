//! Language models a node holds for its processes (`ao_tensor.model_*`, `docs/tensor-api.md`).
//!
//! A process names a model by the id of the data item that holds its GGUF file. Ids are
//! content-addressed, so every node that loads the same id computes with the same weights. The
//! [`ModelRegistry`] is node-wide: the first process that opens an id loads the file through the node's
//! [`DriveSource`] (its store, and in network mode the gateway), converts it once ([`cu_llm::model`]) and
//! keeps it in memory, shared by every process that opens the same id; processes pass only activations,
//! token ids and their own KV cache. Converted models count against the registry's byte budget: when a
//! new one does not fit, the least recently opened models that no message is using are dropped.
//!
//! What a process observes never depends on the registry's state. A model that does not exist or that
//! is not a model the host can run is the message's `Error` (the same answer on every node); a model
//! that cannot be had now (the source unreachable, the budget taken by models in use) halts the
//! evaluation, which is retried later, as WeaveDrive does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cu_llm::gguf::GgufFile;
use cu_llm::model::Model;
use cu_llm::tokenizer::Tokenizer;

use crate::drive::DriveSource;

/// The default budget of converted models: 2 GiB (SmolLM2-135M takes about 100 MB).
pub const DEFAULT_MODEL_BUDGET: u64 = 2 << 30;

/// The largest model file the registry reads (4 GiB).
pub const MAX_MODEL_FILE: u64 = 4 << 30;

/// A model converted for the forward pass, with its tokenizer.
pub struct LoadedModel {
    /// The id of the data item it came from.
    pub id: String,
    /// The integer model.
    pub model: Model,
    /// The GGUF's tokenizer and chat template.
    pub tokenizer: Tokenizer,
    /// Bytes it holds in memory (weights; what the budget counts).
    pub bytes: u64,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("id", &self.id)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

/// Why a model could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// No data item has this id: the message's `Error`.
    #[error("no data item {0} holds a model")]
    NotFound(String),
    /// The data is not a model the host can run: the message's `Error`.
    #[error("data item {id} is not a usable model: {reason}")]
    Malformed {
        /// The id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The model cannot be had now: the evaluation halts and is retried.
    #[error("model {id} is unavailable: {reason}")]
    Unavailable {
        /// The id.
        id: String,
        /// Why.
        reason: String,
    },
}

impl OpenError {
    /// Whether the message's answer is an `Error` (the same on every node) rather than a halt.
    pub fn is_deterministic(&self) -> bool {
        !matches!(self, OpenError::Unavailable { .. })
    }
}

#[derive(Default)]
struct Resident {
    models: HashMap<String, (Arc<LoadedModel>, u64)>,
    bytes: u64,
    clock: u64,
}

/// The node's converted models, by data item id.
pub struct ModelRegistry {
    budget: u64,
    resident: Mutex<Resident>,
    /// Held while a model loads, so two processes opening the same new id load it once.
    loading: Mutex<()>,
}

impl std::fmt::Debug for ModelRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRegistry")
            .field("budget", &self.budget)
            .field("resident_bytes", &self.resident_bytes())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ModelRegistry {
    /// An empty registry that keeps at most `budget` bytes of converted models.
    pub fn new(budget: u64) -> ModelRegistry {
        ModelRegistry {
            budget,
            resident: Mutex::default(),
            loading: Mutex::new(()),
        }
    }

    /// Bytes of the models held now.
    pub fn resident_bytes(&self) -> u64 {
        lock(&self.resident).bytes
    }

    /// How many models are held now.
    pub fn resident_models(&self) -> usize {
        lock(&self.resident).models.len()
    }

    /// The model of data item `id`, loaded through `source` the first time.
    pub fn open(&self, id: &str, source: &dyn DriveSource) -> Result<Arc<LoadedModel>, OpenError> {
        if let Some(m) = self.cached(id) {
            return Ok(m);
        }
        let _loading = lock(&self.loading);
        if let Some(m) = self.cached(id) {
            return Ok(m);
        }
        let loaded = Arc::new(load(id, source)?);
        self.admit(loaded.clone())?;
        Ok(loaded)
    }

    fn cached(&self, id: &str) -> Option<Arc<LoadedModel>> {
        let mut r = lock(&self.resident);
        r.clock += 1;
        let now = r.clock;
        r.models.get_mut(id).map(|(m, used)| {
            *used = now;
            m.clone()
        })
    }

    /// Makes room (dropping unused models, least recently opened first) and keeps `model`.
    fn admit(&self, model: Arc<LoadedModel>) -> Result<(), OpenError> {
        let unavailable = |reason: String| OpenError::Unavailable {
            id: model.id.clone(),
            reason,
        };
        if model.bytes > self.budget {
            return Err(unavailable(format!(
                "it takes {} bytes, more than the node's model budget of {} bytes",
                model.bytes, self.budget
            )));
        }
        let mut r = lock(&self.resident);
        while r.bytes + model.bytes > self.budget {
            // A model is in use while a message holds it (an open handle): only the registry's own
            // reference left means unused.
            let victim = r
                .models
                .iter()
                .filter(|(_, (m, _))| Arc::strong_count(m) == 1)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| id.clone());
            let Some(victim) = victim else {
                return Err(unavailable(format!(
                    "the node's model budget of {} bytes is taken by models in use",
                    self.budget
                )));
            };
            if let Some((m, _)) = r.models.remove(&victim) {
                r.bytes -= m.bytes;
            }
        }
        r.clock += 1;
        let now = r.clock;
        r.bytes += model.bytes;
        r.models.insert(model.id.clone(), (model, now));
        Ok(())
    }
}

/// Reads, parses and converts the model of `id`.
fn load(id: &str, source: &dyn DriveSource) -> Result<LoadedModel, OpenError> {
    let unavailable = |reason: String| OpenError::Unavailable {
        id: id.to_owned(),
        reason,
    };
    let malformed = |reason: String| OpenError::Malformed {
        id: id.to_owned(),
        reason,
    };
    let size = source
        .data_size(id)
        .map_err(|e| unavailable(e.0))?
        .ok_or_else(|| OpenError::NotFound(id.to_owned()))?;
    if size > MAX_MODEL_FILE {
        return Err(malformed(format!(
            "{size} bytes, more than the {MAX_MODEL_FILE} a model may take"
        )));
    }
    let bytes = source
        .read_whole(id)
        .map_err(|e| unavailable(e.0))?
        .ok_or_else(|| OpenError::NotFound(id.to_owned()))?;
    if bytes.len() as u64 != size {
        return Err(unavailable(format!("read {} of its {size} bytes", bytes.len())));
    }
    let file = GgufFile::parse(bytes).map_err(|e| malformed(format!("GGUF: {e}")))?;
    let model = Model::from_gguf(&file).map_err(|e| malformed(format!("model: {e}")))?;
    let tokenizer = Tokenizer::from_gguf(&file).map_err(|e| malformed(format!("tokenizer: {e}")))?;
    if tokenizer.vocab_size() != model.config().n_vocab {
        return Err(malformed(format!(
            "the tokenizer has {} tokens, the model {}",
            tokenizer.vocab_size(),
            model.config().n_vocab
        )));
    }
    let bytes = model.resident_bytes() as u64;
    tracing::info!(id, bytes, "model loaded");
    Ok(LoadedModel {
        id: id.to_owned(),
        model,
        tokenizer,
        bytes,
    })
}

/// What a process's `ao_tensor.model_*` imports use: the node's registry and where model data comes
/// from.
#[derive(Clone)]
pub struct ModelHost {
    /// The node-wide registry.
    pub registry: Arc<ModelRegistry>,
    /// Where a model's data item is read.
    pub source: Arc<dyn DriveSource>,
}

impl std::fmt::Debug for ModelHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelHost")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// The models one message has opened: handle `h` is the `h`-th distinct id opened by this message.
/// Cleared before and after every message, so a handle never outlives its message and its value
/// depends only on what the message did (the same after a checkpoint restore).
#[derive(Debug, Default)]
pub struct OpenModels {
    open: Vec<Arc<LoadedModel>>,
    /// The forward pass's buffers, sized for the model whose id they carry.
    scratch: Option<(String, cu_llm::model::Scratch)>,
}

impl OpenModels {
    /// Forgets every handle (the scratch buffers stay).
    pub fn clear(&mut self) {
        self.open.clear();
    }

    /// The handle of `model`, a new one the first time this message opens it.
    pub fn handle_of(&mut self, model: Arc<LoadedModel>) -> u32 {
        if let Some(i) = self.open.iter().position(|m| m.id == model.id) {
            return i as u32;
        }
        self.open.push(model);
        (self.open.len() - 1) as u32
    }

    /// The model behind `handle`.
    pub fn get(&self, handle: u32) -> Option<Arc<LoadedModel>> {
        self.open.get(handle as usize).cloned()
    }

    /// Scratch buffers for `model`'s forward pass (kept between calls of the same model).
    pub fn take_scratch(&mut self, model: &LoadedModel) -> cu_llm::model::Scratch {
        match self.scratch.take() {
            Some((id, s)) if id == model.id => s,
            _ => model.model.new_scratch(),
        }
    }

    /// Returns the scratch buffers after a call.
    pub fn put_scratch(&mut self, model: &LoadedModel, scratch: cu_llm::model::Scratch) {
        self.scratch = Some((model.id.clone(), scratch));
    }
}
