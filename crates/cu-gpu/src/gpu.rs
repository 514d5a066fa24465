//! The wgpu side: adapter selection, the one shared device, the pipeline set, the buffer pool and
//! the execution of a batch of jobs as a single queue submission.
//!
//! Nothing here decides *what* is computed: jobs arrive fully prepared (packed inputs, parameters,
//! dispatch size) from [`crate::device`], and results leave as raw bytes. Only the batcher thread
//! ([`crate::batch`]) calls [`GpuContext::run_batch`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cpu::EXP2_Q15;
use crate::kernels::{self, KernelSource};
use crate::{DeviceConfig, TensorError};

/// What was picked, for logs and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSummary {
    /// Adapter name as the driver reports it (for lavapipe: "llvmpipe (LLVM ...)").
    pub name: String,
    /// Backend: "vulkan", "metal", "dx12" or "gl".
    pub backend: String,
    /// Device type: "discrete", "integrated", "virtual", "cpu" or "other".
    pub device_type: String,
    /// Driver name and version info.
    pub driver: String,
}

/// The compute entry points, one pipeline each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kernel {
    MatmulI8,
    Requantize,
    AddI8,
    AddI32,
    ReluI8,
    ReluI32,
    SoftmaxArgmax,
}

impl Kernel {
    const ALL: [Kernel; 7] = [
        Kernel::MatmulI8,
        Kernel::Requantize,
        Kernel::AddI8,
        Kernel::AddI32,
        Kernel::ReluI8,
        Kernel::ReluI32,
        Kernel::SoftmaxArgmax,
    ];

    fn source(self) -> (KernelSource, &'static str) {
        match self {
            Kernel::MatmulI8 => (kernels::MATMUL_I8, "matmul_i8"),
            Kernel::Requantize => (kernels::REQUANTIZE, "requantize"),
            Kernel::AddI8 => (kernels::ADD, "add_i8"),
            Kernel::AddI32 => (kernels::ADD, "add_i32"),
            Kernel::ReluI8 => (kernels::RELU, "relu_i8"),
            Kernel::ReluI32 => (kernels::RELU, "relu_i32"),
            Kernel::SoftmaxArgmax => (kernels::SOFTMAX_ARGMAX, "softmax_argmax"),
        }
    }
}

/// One dispatch of a job: its uniform parameters and workgroup counts (x, y).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pass {
    pub params: [u32; 8],
    pub workgroups: (u32, u32),
}

/// One operation ready to encode. Inputs bind at 1, 2, ... in order (after the uniform at 0), then
/// the exp2 table if the kernel is softmax, then the outputs. The passes run in order over the
/// same buffers, each with its own uniform buffer.
#[derive(Debug)]
pub(crate) struct GpuJob {
    pub kernel: Kernel,
    /// Packed input buffers, each a non-zero multiple of 4 bytes.
    pub inputs: Vec<Vec<u8>>,
    /// Output buffer sizes in bytes, each a non-zero multiple of 4.
    pub outputs: Vec<u64>,
    /// At least one dispatch.
    pub passes: Vec<Pass>,
}

impl GpuJob {
    /// Bytes this job moves, for batch sizing.
    pub fn bytes(&self) -> u64 {
        let i: u64 = self.inputs.iter().map(|v| v.len() as u64).sum();
        i + self.outputs.iter().sum::<u64>()
    }
}

/// The device's size limits that decide whether a job can run on it at all.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobLimits {
    pub max_binding: u64,
    pub max_workgroups: u32,
}

impl JobLimits {
    /// Checks a job against the limits; returns why it does not fit.
    pub fn check(&self, job: &GpuJob) -> Result<(), String> {
        let biggest = job
            .inputs
            .iter()
            .map(|v| v.len() as u64)
            .chain(job.outputs.iter().copied())
            .max()
            .unwrap_or(0);
        if biggest > self.max_binding {
            return Err(format!(
                "a {biggest}-byte buffer exceeds the {}-byte binding limit",
                self.max_binding
            ));
        }
        for pass in &job.passes {
            let (x, y) = pass.workgroups;
            if x > self.max_workgroups || y > self.max_workgroups {
                return Err(format!(
                    "{x}×{y} workgroups exceed {} per dimension",
                    self.max_workgroups
                ));
            }
        }
        Ok(())
    }

    /// Splits `count` workgroups over (x, y) with x ≤ the per-dimension limit.
    pub fn split(&self, count: u64) -> (u32, u32) {
        let max = u64::from(self.max_workgroups.max(1));
        let x = count.clamp(1, max);
        let y = count.div_ceil(x).max(1);
        (x as u32, u32::try_from(y).unwrap_or(u32::MAX))
    }
}

struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// Reusable buffers, keyed by usage and power-of-two size class.
#[derive(Default)]
struct BufferPool {
    free: HashMap<(u32, u64), Vec<wgpu::Buffer>>,
    pooled_bytes: u64,
}

/// Most bytes the pool keeps idle; buffers returned beyond this are dropped.
const POOL_MAX_BYTES: u64 = 512 << 20;
/// Most idle buffers per (usage, size class).
const POOL_MAX_PER_CLASS: usize = 16;

impl BufferPool {
    fn class(size: u64) -> u64 {
        size.max(256).next_power_of_two()
    }

    fn take(&mut self, device: &wgpu::Device, usage: wgpu::BufferUsages, size: u64) -> wgpu::Buffer {
        let class = Self::class(size);
        if let Some(buf) = self.free.get_mut(&(usage.bits(), class)).and_then(Vec::pop) {
            self.pooled_bytes -= class;
            return buf;
        }
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("cu-gpu pooled buffer"),
            size: class,
            usage,
            mapped_at_creation: false,
        })
    }

    fn give(&mut self, usage: wgpu::BufferUsages, buf: wgpu::Buffer) {
        let class = buf.size();
        let list = self.free.entry((usage.bits(), class)).or_default();
        if list.len() < POOL_MAX_PER_CLASS && self.pooled_bytes + class <= POOL_MAX_BYTES {
            self.pooled_bytes += class;
            list.push(buf);
        }
    }
}

const INPUT: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_DST);
const OUTPUT: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC);
const UNIFORM: wgpu::BufferUsages = wgpu::BufferUsages::UNIFORM.union(wgpu::BufferUsages::COPY_DST);
const READBACK: wgpu::BufferUsages = wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);

/// Offsets of outputs inside the readback buffer are aligned to this.
const READBACK_ALIGN: u64 = 256;

/// The one device every shard shares, with its pipelines and buffer pool.
pub(crate) struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipelines: HashMap<Kernel, Pipeline>,
    exp2_table: wgpu::Buffer,
    pool: Mutex<BufferPool>,
    lost: Arc<AtomicBool>,
    pub summary: AdapterSummary,
    pub limits: JobLimits,
}

fn backend_name(b: wgpu::Backend) -> &'static str {
    match b {
        wgpu::Backend::Vulkan => "vulkan",
        wgpu::Backend::Metal => "metal",
        wgpu::Backend::Dx12 => "dx12",
        wgpu::Backend::Gl => "gl",
        wgpu::Backend::BrowserWebGpu => "webgpu",
        wgpu::Backend::Noop => "noop",
    }
}

fn type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
}

/// Preference order: real GPUs first, then virtual, then software (lavapipe), then unknown.
fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn backend_rank(b: wgpu::Backend) -> u8 {
    match b {
        wgpu::Backend::Vulkan => 0,
        wgpu::Backend::Metal => 1,
        wgpu::Backend::Dx12 => 2,
        wgpu::Backend::Gl => 3,
        _ => 4,
    }
}

/// Why an adapter cannot run our kernels, if it cannot.
fn unusable(adapter: &wgpu::Adapter) -> Option<String> {
    let caps = adapter.get_downlevel_capabilities();
    if !caps.flags.contains(wgpu::DownlevelFlags::COMPUTE_SHADERS) {
        return Some("no compute shaders".into());
    }
    let l = adapter.limits();
    if l.max_compute_invocations_per_workgroup < 256
        || l.max_compute_workgroup_size_x < 256
        || l.max_compute_workgroup_size_y < 16
        || l.max_compute_workgroup_storage_size < 4096
        || l.max_storage_buffers_per_shader_stage < 4
    {
        return Some("compute limits below 256 invocations / 4 KiB shared / 4 storage buffers".into());
    }
    None
}

impl GpuContext {
    /// Enumerates adapters, picks the best usable one and opens the device.
    ///
    /// Candidates come from the compiled-in backends (Vulkan everywhere but Apple, Metal on Apple,
    /// DX12 on Windows, GL with the `gles` feature), narrowed by `WGPU_BACKEND` if set. Adapters
    /// without compute support are skipped, and `config.adapter` (a case-insensitive substring of
    /// the name) filters further. Among the rest: discrete > integrated > virtual > CPU (lavapipe),
    /// then Vulkan > Metal > DX12 > GL, then name. The choice only affects speed, never results.
    pub fn open(config: &DeviceConfig) -> Result<Self, TensorError> {
        let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        let backends = desc.backends;
        let instance = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        let mut reasons = Vec::new();
        let mut usable = Vec::new();
        for adapter in adapters {
            let info = adapter.get_info();
            if let Some(why) = unusable(&adapter) {
                reasons.push(format!("{} ({}): {why}", info.name, backend_name(info.backend)));
                continue;
            }
            if let Some(filter) = &config.adapter
                && !info.name.to_lowercase().contains(&filter.to_lowercase())
            {
                reasons.push(format!("{}: does not match the filter {filter:?}", info.name));
                continue;
            }
            usable.push(adapter);
        }
        usable.sort_by_key(|a| {
            let i = a.get_info();
            (type_rank(i.device_type), backend_rank(i.backend), i.name)
        });
        let Some(adapter) = usable.into_iter().next() else {
            let why = if reasons.is_empty() {
                let compiled = backends & wgpu::Instance::enabled_backend_features();
                format!(
                    "no adapters found for backends {compiled:?} (is a Vulkan driver such as mesa-vulkan-drivers installed?)"
                )
            } else {
                reasons.join("; ")
            };
            return Err(TensorError::NoAdapter(why));
        };
        let info = adapter.get_info();
        let summary = AdapterSummary {
            name: info.name.clone(),
            backend: backend_name(info.backend).into(),
            device_type: type_name(info.device_type).into(),
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
        };
        let adapter_limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("cu-gpu"),
            required_features: wgpu::Features::empty(),
            required_limits: adapter_limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| TensorError::RequestDevice(e.to_string()))?;

        // Errors are collected through error scopes in `run_batch`; anything that escapes them is
        // logged here instead of wgpu's default panic.
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            tracing::error!(error = %e, "uncaptured wgpu error");
        }));
        let lost = Arc::new(AtomicBool::new(false));
        let lost_flag = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            tracing::error!(?reason, %msg, "GPU device lost");
            lost_flag.store(true, Ordering::SeqCst);
        });

        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut modules = HashMap::new();
        for k in kernels::ALL {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(k.file),
                source: wgpu::ShaderSource::Wgsl(k.source.into()),
            });
            modules.insert(k.file, module);
        }
        let mut pipelines = HashMap::new();
        for kernel in Kernel::ALL {
            let (src, entry) = kernel.source();
            let Some(module) = modules.get(src.file) else {
                return Err(TensorError::RequestDevice(format!(
                    "missing shader module {}",
                    src.file
                )));
            };
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[],
                    // Every kernel writes its workgroup memory before reading it.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
            let layout = pipeline.get_bind_group_layout(0);
            pipelines.insert(kernel, Pipeline { pipeline, layout });
        }
        let table: Vec<u8> = EXP2_Q15.iter().flat_map(|v| v.to_le_bytes()).collect();
        let exp2_table = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("cu-gpu exp2 table"),
            size: table.len() as u64,
            usage: INPUT,
            mapped_at_creation: false,
        });
        queue.write_buffer(&exp2_table, 0, &table);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(TensorError::RequestDevice(format!(
                "kernel compilation failed: {e}"
            )));
        }
        let limits = JobLimits {
            max_binding: adapter_limits
                .max_storage_buffer_binding_size
                .min(adapter_limits.max_buffer_size),
            max_workgroups: adapter_limits.max_compute_workgroups_per_dimension,
        };
        tracing::info!(adapter = %summary.name, backend = %summary.backend, kind = %summary.device_type, "cu-gpu device open");
        Ok(GpuContext {
            device,
            queue,
            pipelines,
            exp2_table,
            pool: Mutex::new(BufferPool::default()),
            lost,
            summary,
            limits,
        })
    }

    /// Encodes every job into one command buffer, submits it once, waits, and reads every output
    /// back through one mapped buffer. Either the whole batch succeeds or every job gets the error.
    pub fn run_batch(&self, jobs: &[GpuJob]) -> Result<Vec<Vec<Vec<u8>>>, TensorError> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(TensorError::Gpu("device lost".into()));
        }
        for job in jobs {
            self.limits.check(job).map_err(TensorError::ExceedsDeviceLimits)?;
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let result = self.encode_and_run(jobs);
        let oom_err = pollster::block_on(oom.pop());
        let val_err = pollster::block_on(scope.pop());
        if let Some(e) = oom_err.or(val_err) {
            return Err(TensorError::Gpu(e.to_string()));
        }
        result
    }

    fn encode_and_run(&self, jobs: &[GpuJob]) -> Result<Vec<Vec<Vec<u8>>>, TensorError> {
        let mut pool = self
            .pool
            .lock()
            .map_err(|_| TensorError::Gpu("buffer pool poisoned".into()))?;
        let mut taken: Vec<(wgpu::BufferUsages, wgpu::Buffer)> = Vec::new();
        let mut outputs: Vec<Vec<(wgpu::Buffer, u64, u64)>> = Vec::with_capacity(jobs.len());
        let mut readback_size = 0u64;
        let mut bind_groups = Vec::with_capacity(jobs.len());

        for job in jobs {
            let pipeline = self
                .pipelines
                .get(&job.kernel)
                .ok_or_else(|| TensorError::Gpu(format!("no pipeline for {:?}", job.kernel)))?;
            let mut buffers = Vec::new();
            for input in &job.inputs {
                let buf = pool.take(&self.device, INPUT, input.len() as u64);
                self.queue.write_buffer(&buf, 0, input);
                buffers.push(buf.clone());
                taken.push((INPUT, buf));
            }
            if job.kernel == Kernel::SoftmaxArgmax {
                buffers.push(self.exp2_table.clone());
            }
            let mut outs = Vec::with_capacity(job.outputs.len());
            for &size in &job.outputs {
                let buf = pool.take(&self.device, OUTPUT, size);
                buffers.push(buf.clone());
                outs.push((buf.clone(), size, readback_size));
                readback_size += size.div_ceil(READBACK_ALIGN) * READBACK_ALIGN;
                taken.push((OUTPUT, buf));
            }
            for pass in &job.passes {
                let uniform = pool.take(&self.device, UNIFORM, 32);
                let params: Vec<u8> = pass.params.iter().flat_map(|v| v.to_le_bytes()).collect();
                self.queue.write_buffer(&uniform, 0, &params);
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: uniform.as_entire_binding(),
                }];
                entries.extend(buffers.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource: b.as_entire_binding(),
                }));
                let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &pipeline.layout,
                    entries: &entries,
                });
                drop(entries);
                taken.push((UNIFORM, uniform));
                bind_groups.push((&pipeline.pipeline, group, pass.workgroups));
            }
            outputs.push(outs);
        }

        let readback = pool.take(&self.device, READBACK, readback_size.max(4));
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("cu-gpu batch"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
            for (pipeline, group, (x, y)) in &bind_groups {
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, group, &[]);
                pass.dispatch_workgroups(*x, *y, 1);
            }
        }
        for outs in &outputs {
            for (buf, size, offset) in outs {
                encoder.copy_buffer_to_buffer(buf, 0, &readback, *offset, *size);
            }
        }
        self.queue.submit([encoder.finish()]);

        let (tx, rx) = std::sync::mpsc::channel();
        readback.map_async(wgpu::MapMode::Read, 0..readback_size.max(4), move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| TensorError::Gpu(format!("poll: {e}")))?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(TensorError::Gpu(format!("map: {e}"))),
            Err(_) => return Err(TensorError::Gpu("map callback dropped".into())),
        }
        let results = {
            let view = readback
                .get_mapped_range(0..readback_size.max(4))
                .map_err(|e| TensorError::Gpu(format!("mapped range: {e}")))?;
            outputs
                .iter()
                .map(|outs| {
                    outs.iter()
                        .map(|(_, size, offset)| view[*offset as usize..(*offset + *size) as usize].to_vec())
                        .collect()
                })
                .collect()
        };
        readback.unmap();
        drop(bind_groups);
        drop(outputs);
        taken.push((READBACK, readback));
        for (usage, buf) in taken {
            pool.give(usage, buf);
        }
        Ok(results)
    }
}
