//! The deterministic wasmtime engines.
//!
//! Settings are fixed (they are part of the determinism contract and of the AOT cache key): Cranelift,
//! NaN canonicalisation on, threads off, SIMD on with relaxed SIMD in its deterministic mode, memory64 on,
//! a fixed wasm stack limit. Two engines exist: one with fuel, for modules that are not metered (fuel is
//! the deterministic bound that ends an infinite loop with `out of gas!`), and one without, for metered
//! modules whose `metering.usegas` calls already bound them.
//!
//! Both engines are built with epoch interruption: compiled code checks an epoch counter at function
//! entries and loop headers, and a ticker thread (one per [`Engines`], ending when they are dropped)
//! advances it every [`EPOCH_TICK`]. A running store then calls its process's [`crate::watch::Watch`] on
//! the evaluating thread, which may pause the evaluation (preemption) or stop it (dry-run time limits,
//! cancellation); nothing of it is visible to the module (`docs/determinism.md`).

use std::time::Duration;

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

/// How often the ticker advances the engines' epoch: running evaluations call their watch about this
/// often (the granularity of dry-run time limits, cancellation and preemption).
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

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
        .epoch_interruption(true)
        .consume_fuel(fuel);
    c
}

/// Advances the epoch of both engines every [`EPOCH_TICK`] until both are dropped.
fn start_ticker(engines: &Engines) -> Result<(), WasmError> {
    let (gas, fuel) = (engines.gas.weak(), engines.fuel.weak());
    std::thread::Builder::new()
        .name("cu-wasm-epoch".into())
        .stack_size(64 << 10)
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                let (g, f) = (gas.upgrade(), fuel.upgrade());
                if g.is_none() && f.is_none() {
                    return;
                }
                for engine in g.iter().chain(f.iter()) {
                    engine.increment_epoch();
                }
            }
        })
        .map(drop)
        .map_err(|e| WasmError::Compile(format!("cannot start the epoch ticker: {e}")))
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
        let engines = Engines {
            gas: make(false)?,
            fuel: make(true)?,
        };
        start_ticker(&engines)?;
        Ok(engines)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Epoch interruption changes compiled code: artefacts of an engine without it must not be loaded by
    /// one with it (the AOT cache key holds the compatibility digest, and wasmtime checks the tunables).
    #[test]
    fn epoch_interruption_is_part_of_the_compatibility_hash() {
        use std::hash::{Hash, Hasher};
        let digest = |engine: &wasmtime::Engine| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            h.finish()
        };
        let with = wasmtime::Engine::new(&config(true, Allocation::OnDemand)).unwrap();
        let mut plain = config(true, Allocation::OnDemand);
        plain.epoch_interruption(false);
        let without = wasmtime::Engine::new(&plain).unwrap();
        assert_ne!(digest(&with), digest(&without));
        let wasm = wat::parse_str("(module (func (export \"f\")))").unwrap();
        let module = wasmtime::Module::new(&without, &wasm).unwrap();
        let artefact = module.serialize().unwrap();
        // SAFETY: the bytes were serialized by wasmtime just above.
        assert!(unsafe { wasmtime::Module::deserialize(&with, &artefact) }.is_err());
    }

    #[test]
    fn the_ticker_stops_with_its_engines() {
        let engines = Engines::new().unwrap();
        let weak = engines.get(Metering::Fuel).weak();
        drop(engines);
        std::thread::sleep(EPOCH_TICK * 5);
        assert!(weak.upgrade().is_none(), "the ticker holds no strong reference");
    }
}
