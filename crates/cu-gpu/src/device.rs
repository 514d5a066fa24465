//! [`TensorDevice`]: the API a host import calls — validate, charge, then run on the GPU (through
//! the batcher) or on the CPU twin, with identical bytes either way.

use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::TensorError;
use crate::batch::{self, BatchPolicy, BatchStats, BatchStatsSnapshot, Envelope};
use crate::cpu::{self, SoftmaxArgmax};
use crate::gpu::{AdapterSummary, GpuContext, GpuJob, JobLimits, Kernel, Pass};
use crate::ops::{self, ElemType, MatmulDims, Requant};

/// Where operations run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Use a hardware GPU when one is found and the operation is big enough
    /// ([`DeviceConfig::gpu_min_work`]); otherwise, and whenever the GPU fails, the CPU twin.
    /// Software adapters (lavapipe, SwiftShader) are not used in this mode: the CPU twin is faster.
    Auto,
    /// Always the GPU (any adapter, software ones included). Opening fails without an adapter,
    /// and GPU failures are returned instead of falling back. For tests and benchmarks.
    Gpu,
    /// Always the CPU twin; no adapter is opened.
    Cpu,
}

/// How to open a [`TensorDevice`].
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Where operations run.
    pub placement: Placement,
    /// Only adapters whose name contains this (case-insensitive).
    pub adapter: Option<String>,
    /// How the batcher groups concurrent calls into submissions.
    pub batch: BatchPolicy,
    /// In [`Placement::Auto`], operations with less [`Op::work`](crate::Op::work) than this run on
    /// the CPU (a GPU round trip costs tens of microseconds).
    pub gpu_min_work: u64,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            placement: Placement::Auto,
            adapter: None,
            batch: BatchPolicy::default(),
            gpu_min_work: 1 << 20,
        }
    }
}

impl DeviceConfig {
    /// The default configuration, overridden by environment variables:
    /// `AO_CU_GPU` = `auto` | `gpu` | `cpu`, `AO_CU_GPU_ADAPTER` = name substring,
    /// `AO_CU_GPU_BATCH_WINDOW_US` = batch window in microseconds, `AO_CU_GPU_MIN_WORK` = see
    /// [`DeviceConfig::gpu_min_work`]. `WGPU_BACKEND` (e.g. `vulkan`, `gl`) narrows the backends.
    pub fn from_env() -> Result<Self, TensorError> {
        let mut c = DeviceConfig::default();
        if let Ok(v) = std::env::var("AO_CU_GPU") {
            c.placement = match v.to_ascii_lowercase().as_str() {
                "auto" | "" => Placement::Auto,
                "gpu" | "on" | "1" => Placement::Gpu,
                "cpu" | "off" | "0" => Placement::Cpu,
                other => {
                    return Err(TensorError::InvalidArgument {
                        what: "AO_CU_GPU",
                        detail: format!("{other:?} is not auto, gpu or cpu"),
                    });
                }
            };
        }
        if let Ok(v) = std::env::var("AO_CU_GPU_ADAPTER")
            && !v.is_empty()
        {
            c.adapter = Some(v);
        }
        if let Ok(v) = std::env::var("AO_CU_GPU_BATCH_WINDOW_US") {
            let us = v.parse::<u64>().map_err(|e| TensorError::InvalidArgument {
                what: "AO_CU_GPU_BATCH_WINDOW_US",
                detail: e.to_string(),
            })?;
            c.batch.window = Duration::from_micros(us);
        }
        if let Ok(v) = std::env::var("AO_CU_GPU_MIN_WORK") {
            c.gpu_min_work = v.parse::<u64>().map_err(|e| TensorError::InvalidArgument {
                what: "AO_CU_GPU_MIN_WORK",
                detail: e.to_string(),
            })?;
        }
        Ok(c)
    }
}

struct GpuSide {
    summary: AdapterSummary,
    limits: JobLimits,
    tx: Mutex<Option<Sender<Envelope>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<BatchStats>,
}

impl Drop for GpuSide {
    fn drop(&mut self) {
        // Closing the channel ends the batcher loop.
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Ok(mut t) = self.thread.lock()
            && let Some(t) = t.take()
        {
            let _ = t.join();
        }
    }
}

struct Inner {
    placement: Placement,
    gpu_min_work: u64,
    gpu: Option<GpuSide>,
}

/// The tensor engine of a node: one per process, cloned (cheaply) into every shard.
///
/// Holds at most one GPU device and one batcher thread. Every method validates its arguments the
/// same way on both paths and returns little-endian bytes; results never depend on the path.
#[derive(Clone)]
pub struct TensorDevice {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TensorDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorDevice")
            .field("placement", &self.inner.placement)
            .field("adapter", &self.adapter())
            .finish()
    }
}

impl TensorDevice {
    /// Opens the device as configured. Fails only under [`Placement::Gpu`] without a usable GPU;
    /// [`Placement::Auto`] quietly (with a log line) settles for the CPU.
    pub fn open(config: DeviceConfig) -> Result<Self, TensorError> {
        let gpu = match config.placement {
            Placement::Cpu => None,
            Placement::Gpu => Some(Self::start_gpu(&config)?),
            Placement::Auto => match GpuContext::open(&config) {
                Ok(ctx) if ctx.summary.device_type == "cpu" => {
                    tracing::info!(adapter = %ctx.summary.name, "software adapter only: tensor ops run on the CPU");
                    None
                }
                Ok(ctx) => Some(Self::start_batcher(ctx, &config)?),
                Err(e) => {
                    tracing::info!(error = %e, "no GPU: tensor ops run on the CPU");
                    None
                }
            },
        };
        Ok(TensorDevice {
            inner: Arc::new(Inner {
                placement: config.placement,
                gpu_min_work: config.gpu_min_work,
                gpu,
            }),
        })
    }

    /// A device that always computes on the CPU.
    pub fn cpu_only() -> Self {
        TensorDevice {
            inner: Arc::new(Inner {
                placement: Placement::Cpu,
                gpu_min_work: u64::MAX,
                gpu: None,
            }),
        }
    }

    fn start_gpu(config: &DeviceConfig) -> Result<GpuSide, TensorError> {
        let ctx = GpuContext::open(config)?;
        Self::start_batcher(ctx, config)
    }

    fn start_batcher(ctx: GpuContext, config: &DeviceConfig) -> Result<GpuSide, TensorError> {
        let summary = ctx.summary.clone();
        let limits = ctx.limits;
        let stats = Arc::new(BatchStats::default());
        let (tx, rx) = channel();
        let thread = batch::spawn(Arc::new(ctx), config.batch, stats.clone(), rx)
            .map_err(|e| TensorError::RequestDevice(format!("cannot start the batcher thread: {e}")))?;
        Ok(GpuSide {
            summary,
            limits,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            stats,
        })
    }

    /// The GPU adapter in use, if any.
    pub fn adapter(&self) -> Option<&AdapterSummary> {
        self.inner.gpu.as_ref().map(|g| &g.summary)
    }

    /// The configured placement.
    pub fn placement(&self) -> Placement {
        self.inner.placement
    }

    /// Batcher counters (all zero without a GPU).
    pub fn batch_stats(&self) -> BatchStatsSnapshot {
        self.inner
            .gpu
            .as_ref()
            .map(|g| g.stats.snapshot())
            .unwrap_or_default()
    }

    /// The GPU side, if this operation should go there.
    fn route(&self, work: u64) -> Option<&GpuSide> {
        let gpu = self.inner.gpu.as_ref()?;
        match self.inner.placement {
            Placement::Gpu => Some(gpu),
            Placement::Auto if work >= self.inner.gpu_min_work => Some(gpu),
            _ => None,
        }
    }

    /// Runs `job` on the GPU, or returns `None` when the CPU should compute it instead (Auto mode,
    /// job too large for the device or GPU failure).
    fn submit(&self, gpu: &GpuSide, job: GpuJob) -> Result<Option<Vec<Vec<u8>>>, TensorError> {
        let forced = self.inner.placement == Placement::Gpu;
        if let Err(why) = gpu.limits.check(&job) {
            return if forced {
                Err(TensorError::ExceedsDeviceLimits(why))
            } else {
                Ok(None)
            };
        }
        let (reply_tx, reply_rx) = channel();
        {
            let tx = gpu.tx.lock().map_err(|_| TensorError::BatcherStopped)?;
            let tx = tx.as_ref().ok_or(TensorError::BatcherStopped)?;
            tx.send(Envelope { job, reply: reply_tx })
                .map_err(|_| TensorError::BatcherStopped)?;
        }
        let result = reply_rx
            .recv()
            .map_err(|_| TensorError::BatcherStopped)
            .and_then(|r| r);
        match result {
            Ok(out) => Ok(Some(out)),
            Err(e) if forced => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "GPU path failed; computing on the CPU");
                Ok(None)
            }
        }
    }

    /// `C = A · B`: A m×k int8, B k×n int8 (row-major bytes), C m×n int32 (little-endian bytes).
    /// See [`cpu::matmul_i8`].
    pub fn matmul_i8(&self, a: &[u8], b: &[u8], d: MatmulDims) -> Result<Vec<u8>, TensorError> {
        ops::validate_matmul(a, b, d)?;
        let work = ops::Op::MatmulI8(d).work();
        if work == 0 {
            return cpu::matmul_i8(a, b, d);
        }
        let Some(gpu) = self.route(work) else {
            return cpu::matmul_i8(a, b, d);
        };
        let (m, k, n) = (d.m as usize, d.k as usize, d.n as usize);
        let k4 = k.div_ceil(4);
        let mut ap = vec![0u8; m * k4 * 4];
        for (dst, src) in ap.chunks_exact_mut(k4 * 4).zip(a.chunks_exact(k)) {
            dst[..k].copy_from_slice(src);
        }
        let mut bt = vec![0u8; n * k4 * 4];
        for (kk, row) in b.chunks_exact(n).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                bt[j * k4 * 4 + kk] = v;
            }
        }
        // K is summed in chunks of at most MATMUL_K_CHUNK words per dispatch (see the kernel).
        let workgroups = (d.n.div_ceil(64), d.m.div_ceil(64));
        let passes = (0..k4)
            .step_by(MATMUL_K_CHUNK)
            .map(|begin| Pass {
                params: [
                    d.m,
                    d.n,
                    k4 as u32,
                    begin as u32,
                    (begin + MATMUL_K_CHUNK).min(k4) as u32,
                    u32::from(begin > 0),
                    0,
                    0,
                ],
                workgroups,
            })
            .collect();
        let job = GpuJob {
            kernel: Kernel::MatmulI8,
            inputs: vec![ap, bt],
            outputs: vec![(m * n * 4) as u64],
            passes,
        };
        match self.submit(gpu, job)? {
            Some(mut out) if out.len() == 1 => Ok(out.swap_remove(0)),
            Some(_) => Err(TensorError::Gpu("unexpected output count".into())),
            None => cpu::matmul_i8(a, b, d),
        }
    }

    /// int32 → int8 requantisation (see [`cpu::requantize`]).
    pub fn requantize(&self, x: &[u8], q: Requant) -> Result<Vec<u8>, TensorError> {
        let len = ops::validate_requantize(x, q)?;
        let work = ops::Op::Requantize { len }.work();
        let Some(gpu) = self.route(work).filter(|_| len > 0) else {
            return cpu::requantize(x, q);
        };
        let words = len.div_ceil(4);
        let params = [
            len as u32,
            q.multiplier as u32,
            q.shift as u32,
            q.zero_point as u32,
        ];
        let job = GpuJob {
            kernel: Kernel::Requantize,
            inputs: vec![x.to_vec()],
            outputs: vec![words * 4],
            passes: vec![Pass {
                params: pad8(params),
                workgroups: gpu.limits.split(words.div_ceil(256)),
            }],
        };
        self.finish_bytes(gpu, job, len as usize, || cpu::requantize(x, q))
    }

    /// Elementwise `a + b` with b broadcast over a (see [`cpu::add`]).
    pub fn add(&self, ty: ElemType, a: &[u8], b: &[u8]) -> Result<Vec<u8>, TensorError> {
        let (len, b_len) = ops::validate_add(ty, a, b)?;
        let work = ops::Op::Add { ty, len, b_len }.work();
        let Some(gpu) = self.route(work).filter(|_| len > 0) else {
            return cpu::add(ty, a, b);
        };
        let (kernel, words) = match ty {
            ElemType::I8 => (Kernel::AddI8, len.div_ceil(4)),
            ElemType::I32 => (Kernel::AddI32, len),
        };
        let params = [len as u32, b_len as u32, 0, 0];
        let job = GpuJob {
            kernel,
            inputs: vec![pad4(a), pad4(b)],
            outputs: vec![words * 4],
            passes: vec![Pass {
                params: pad8(params),
                workgroups: gpu.limits.split(words.div_ceil(256)),
            }],
        };
        self.finish_bytes(gpu, job, a.len(), || cpu::add(ty, a, b))
    }

    /// Elementwise `max(x, 0)` (see [`cpu::relu`]).
    pub fn relu(&self, ty: ElemType, x: &[u8]) -> Result<Vec<u8>, TensorError> {
        let len = ops::validate_relu(ty, x)?;
        let work = ops::Op::Relu { ty, len }.work();
        let Some(gpu) = self.route(work).filter(|_| len > 0) else {
            return cpu::relu(ty, x);
        };
        let (kernel, words) = match ty {
            ElemType::I8 => (Kernel::ReluI8, len.div_ceil(4)),
            ElemType::I32 => (Kernel::ReluI32, len),
        };
        let job = GpuJob {
            kernel,
            inputs: vec![pad4(x)],
            outputs: vec![words * 4],
            passes: vec![Pass {
                params: pad8([len as u32, 0, 0, 0]),
                workgroups: gpu.limits.split(words.div_ceil(256)),
            }],
        };
        self.finish_bytes(gpu, job, x.len(), || cpu::relu(ty, x))
    }

    /// Row-wise fixed-point softmax and argmax (see [`cpu::softmax_argmax`]).
    pub fn softmax_argmax(
        &self,
        logits: &[u8],
        rows: u32,
        cols: u32,
        beta: u32,
    ) -> Result<SoftmaxArgmax, TensorError> {
        ops::validate_softmax(logits, rows, cols)?;
        let work = ops::Op::SoftmaxArgmax { rows, cols }.work();
        let Some(gpu) = self.route(work).filter(|_| rows > 0) else {
            return cpu::softmax_argmax(logits, rows, cols, beta);
        };
        // One workgroup per row.
        let job = GpuJob {
            kernel: Kernel::SoftmaxArgmax,
            inputs: vec![logits.to_vec()],
            outputs: vec![logits.len() as u64, u64::from(rows) * 4],
            passes: vec![Pass {
                params: pad8([rows, cols, beta, 0]),
                workgroups: gpu.limits.split(u64::from(rows)),
            }],
        };
        match self.submit(gpu, job)? {
            Some(out) => {
                let mut it = out.into_iter();
                match (it.next(), it.next()) {
                    (Some(probs), Some(argmax)) => Ok(SoftmaxArgmax { probs, argmax }),
                    _ => Err(TensorError::Gpu("unexpected output count".into())),
                }
            }
            None => cpu::softmax_argmax(logits, rows, cols, beta),
        }
    }

    /// Submits a single-output job and truncates its output to `len` bytes, or falls back.
    fn finish_bytes(
        &self,
        gpu: &GpuSide,
        job: GpuJob,
        len: usize,
        fallback: impl FnOnce() -> Result<Vec<u8>, TensorError>,
    ) -> Result<Vec<u8>, TensorError> {
        match self.submit(gpu, job)? {
            Some(mut out) if out.len() == 1 => {
                let mut bytes = out.swap_remove(0);
                bytes.truncate(len);
                Ok(bytes)
            }
            Some(_) => Err(TensorError::Gpu("unexpected output count".into())),
            None => fallback(),
        }
    }
}

/// K words one matmul dispatch sums at most (4096 steps of 8 words): keeps every invocation's loop
/// count far below the 65535 after which lavapipe silently stops loops.
const MATMUL_K_CHUNK: usize = 32768;

/// Widens 4 kernel parameters to the 8-word uniform block.
fn pad8(p: [u32; 4]) -> [u32; 8] {
    [p[0], p[1], p[2], p[3], 0, 0, 0, 0]
}

/// Copies bytes into a buffer padded with zeros to a multiple of 4.
fn pad4(x: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(x.len().div_ceil(4) * 4);
    v.extend_from_slice(x);
    v.resize(x.len().div_ceil(4) * 4, 0);
    v
}
