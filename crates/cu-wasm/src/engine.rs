//! The deterministic wasmtime engines.
//!
//! Settings are fixed (they are part of the determinism contract and of the AOT cache key): Cranelift,
//! NaN canonicalisation on, threads off, SIMD on with relaxed SIMD in its deterministic mode, memory64 on,
//! a fixed wasm stack limit. Two engines exist: one with fuel, for modules that are not metered (fuel is
//! the deterministic bound that ends an infinite loop with `out of gas!`), and one without, for metered
//! modules whose `metering.usegas` calls already bound them.

use wasmtime::{Config, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, Strategy};

use crate::error::WasmError;

/// Native stack the wasm code may use. Stack overflow is deterministic for a given build and
/// architecture; run evaluations on threads of at least [`EVAL_THREAD_STACK`] bytes.
pub const MAX_WASM_STACK: usize = 2 << 20;

/// Stack size of threads that evaluate messages.
pub const EVAL_THREAD_STACK: usize = 16 << 20;

/// Fuel granted per unit of `Compute-Limit` gas for modules that are not metered: one wasm operator per
/// gas unit. The reference's cost table charges at least 1 gas for almost every operator (45 for
/// arithmetic, 120 for memory access), so a message within its gas limit is within its fuel.
pub const FUEL_PER_GAS: u64 = 1;

/// Whether an engine counts fuel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metering {
    /// The module calls `metering.usegas`; no fuel.
    Gas,
    /// The module is not metered; fuel bounds it.
    Fuel,
}

/// How instances get their memories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Allocation {
    /// wasmtime's on-demand allocator with copy-on-write memory images (the default).
    #[default]
    OnDemand,
    /// wasmtime's pooling allocator with this many slots (measured against on-demand in the benchmarks).
    Pooling {
        /// Instances (and memories) that may exist at once.
        slots: u32,
    },
}

/// The pair of engines shared by every process of a node.
#[derive(Clone)]
pub struct Engines {
    gas: wasmtime::Engine,
    fuel: wasmtime::Engine,
}

fn config(fuel: bool, allocation: Allocation) -> Config {
    let mut c = Config::new();
    if let Allocation::Pooling { slots } = allocation {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots)
            .max_memory_size(1 << 32)
            .table_elements(1 << 20);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    c.strategy(Strategy::Cranelift)
        .cranelift_opt_level(OptLevel::Speed)
        .cranelift_nan_canonicalization(true)
        .wasm_simd(true)
        .wasm_relaxed_simd(true)
        .relaxed_simd_deterministic(true)
        .wasm_memory64(true)
        .wasm_multi_memory(false)
        .wasm_bulk_memory(true)
        .wasm_multi_value(true)
        .wasm_backtrace_max_frames(None)
        .max_wasm_stack(MAX_WASM_STACK)
        .parallel_compilation(true)
        .consume_fuel(fuel);
    c
}

impl Engines {
    /// Builds both engines with the on-demand allocator.
    pub fn new() -> Result<Self, WasmError> {
        Self::with_allocation(Allocation::OnDemand)
    }

    /// Builds both engines with the given instance allocator.
    pub fn with_allocation(allocation: Allocation) -> Result<Self, WasmError> {
        let make = |fuel| {
            wasmtime::Engine::new(&config(fuel, allocation)).map_err(|e| WasmError::Compile(e.to_string()))
        };
        Ok(Engines {
            gas: make(false)?,
            fuel: make(true)?,
        })
    }

    /// The engine for a kind of module.
    pub fn get(&self, metering: Metering) -> &wasmtime::Engine {
        match metering {
            Metering::Gas => &self.gas,
            Metering::Fuel => &self.fuel,
        }
    }

    /// A 64-bit digest of the engine's compatibility hash: artefacts compiled by another version or
    /// configuration have another digest.
    pub fn compatibility(&self, metering: Metering) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.get(metering).precompile_compatibility_hash().hash(&mut h);
        metering.hash(&mut h);
        h.finish()
    }
}
