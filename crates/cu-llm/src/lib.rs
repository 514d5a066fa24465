//! Language models for AO inference processes (SmolLM2-135M and other Llama-architecture models).
//!
//! An AO result must be reproducible on every node, so nothing here lets floating point decide a
//! result: the model's weights are read from a GGUF file ([`gguf`]) and every operation of the forward
//! pass is specified in fixed point (`docs/llm.md`): scalar functions in [`fixed`], quantised weights
//! and the matrix-vector product in [`quant`], the forward pass and KV cache in [`model`]. The text side
//! is the GGUF's own byte-level BPE tokenizer and chat template ([`tokenizer`]).

pub mod fixed;
pub mod gguf;
pub mod model;
pub mod quant;
pub mod tokenizer;
