//! The GPU executor: runs a plan's WGSL kernels ([`einc_compiler::wgsl`]) through wgpu.
//!
//! One process-wide device ([`gpu`]), chosen once: `EINC_ADAPTER` (a substring of the
//! adapter's name or backend) narrows the choice, then discrete GPUs win over integrated,
//! virtual and CPU adapters, and Vulkan/Metal/DX12 over GL. Pipelines are cached by a hash
//! of their source for the life of the process. A [`GpuExecutable`] owns the buffers of
//! one plan (intermediates already pooled by the compiler) and records every kernel of a
//! run into one command encoder, so a run is one submission plus the readback.
//!
//! wgpu reports validation and out-of-memory failures through error scopes; every call that
//! can fail runs inside one and the failure comes back as an [`ExecError`], never a panic.

use crate::exec::ExecError;
use crate::value::{dtype_size, TensorData, TensorView};
use einc_compiler::ir::TensorId;
use einc_compiler::order::Limits;
use einc_compiler::plan::{Op, Plan, PlanConfig};
use einc_compiler::wgsl::{self, BufferRole, GpuCaps, GpuProgram, KernelKind};
use einc_frontend::ein::ast::DType;
use ndarray::{ArrayD, IxDyn};
use num_complex::{Complex32, Complex64};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The device einc runs on, with its pipeline cache.
pub struct Gpu {
    pub info: wgpu::AdapterInfo,
    device: wgpu::Device,
    queue: wgpu::Queue,
    caps: GpuCaps,
    pipelines: Mutex<HashMap<u64, wgpu::ComputePipeline>>,
}

static GPU: OnceLock<Result<Arc<Gpu>, String>> = OnceLock::new();

/// The process's GPU, opened on first use.
pub fn gpu() -> Result<Arc<Gpu>, ExecError> {
    GPU.get_or_init(|| Gpu::open().map(Arc::new))
        .clone()
        .map_err(ExecError)
}

fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (ty, backend)
}

impl Gpu {
    fn open() -> Result<Gpu, String> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        let want = std::env::var("EINC_ADAPTER").ok().map(|s| s.to_lowercase());
        let seen: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?})", i.name, i.backend)
            })
            .collect();
        let mut candidates: Vec<wgpu::Adapter> = adapters
            .into_iter()
            .filter(|a| {
                let i = a.get_info();
                match &want {
                    Some(w) => {
                        i.name.to_lowercase().contains(w)
                            || format!("{:?}", i.backend).to_lowercase().contains(w)
                    }
                    None => true,
                }
            })
            .collect();
        candidates.sort_by_key(|a| rank(&a.get_info()));
        let adapter = candidates.into_iter().next().ok_or_else(|| match &want {
            Some(w) => format!(
                "no GPU adapter matches EINC_ADAPTER='{w}' (adapters found: {})",
                if seen.is_empty() {
                    "none".to_string()
                } else {
                    seen.join(", ")
                }
            ),
            None => "no GPU adapter found: wgpu sees no Vulkan, Metal, DX12 or GL device \
                     (on Linux without a GPU, install Mesa's lavapipe: apt install \
                     mesa-vulkan-drivers libvulkan1); use --target cpu"
                .to_string(),
        })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features() & wgpu::Features::SHADER_F64;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("einc"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| format!("could not open GPU '{}': {e}", info.name))?;
        let caps = GpuCaps {
            f64: features.contains(wgpu::Features::SHADER_F64),
            max_workgroup_storage: limits.max_compute_workgroup_storage_size,
            max_invocations: limits.max_compute_invocations_per_workgroup,
            max_workgroups_per_dim: limits.max_compute_workgroups_per_dimension,
            max_binding_bytes: limits
                .max_storage_buffer_binding_size
                .min(limits.max_buffer_size),
            tile: std::env::var("EINC_GPU_TILE").ok().and_then(|s| {
                let v: Vec<u32> = s.split('x').filter_map(|x| x.parse().ok()).collect();
                (v.len() == 3).then(|| (v[0], v[1], v[2]))
            }),
        };
        Ok(Gpu {
            info,
            device,
            queue,
            caps,
            pipelines: Mutex::new(HashMap::new()),
        })
    }

    pub fn caps(&self) -> &GpuCaps {
        &self.caps
    }

    /// "NAME (BACKEND, DEVICE TYPE, driver DRIVER INFO)".
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}, driver {} {})",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.info.driver_info
        )
    }

    /// Runs `f` inside validation and out-of-memory error scopes.
    fn scoped<R>(&self, what: &str, f: impl FnOnce() -> R) -> Result<R, ExecError> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let r = f();
        let v = pollster::block_on(val.pop());
        let o = pollster::block_on(oom.pop());
        match (v, o) {
            (Some(e), _) => Err(ExecError(format!("GPU error while {what}: {e}"))),
            (None, Some(e)) => Err(ExecError(format!(
                "GPU out of memory while {what}: {e}; try a smaller problem or --target cpu"
            ))),
            (None, None) => Ok(r),
        }
    }

    fn pipeline(
        &self,
        kernel: &wgsl::Kernel,
        layout: &wgpu::PipelineLayout,
    ) -> Result<wgpu::ComputePipeline, ExecError> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        kernel.source.hash(&mut h);
        kernel.bindings.len().hash(&mut h);
        let key = h.finish();
        let mut cache = self
            .pipelines
            .lock()
            .map_err(|_| ExecError("internal error: GPU pipeline cache poisoned".into()))?;
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        let p = self.scoped(&format!("compiling kernel {}", kernel.name), || {
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(&kernel.name),
                source: wgpu::ShaderSource::Wgsl(kernel.source.as_str().into()),
            };
            let module = if kernel.kind == KernelKind::Gemm {
                // SAFETY: GEMM kernels guard every load and store against their operands'
                // extents by construction (tests run them on odd sizes), so wgpu's
                // per-access clamping only costs time in the inner loop.
                unsafe {
                    self.device
                        .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
                }
            } else {
                self.device.create_shader_module(desc)
            };
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&kernel.name),
                    layout: Some(layout),
                    module: &module,
                    entry_point: Some(kernel.entry_point),
                    compilation_options: Default::default(),
                    cache: None,
                })
        })?;
        cache.insert(key, p.clone());
        Ok(p)
    }
}

/// A plan compiled for the GPU: buffers allocated, pipelines built.
pub struct GpuExecutable {
    gpu: Arc<Gpu>,
    pub program: GpuProgram,
    plan: Plan,
    buffers: Vec<wgpu::Buffer>,
    steps: Vec<(wgpu::ComputePipeline, wgpu::BindGroup, [u32; 3])>,
    /// One run at a time: runs share the buffers.
    busy: Mutex<()>,
}

impl std::fmt::Debug for GpuExecutable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuExecutable")
            .field("device", &self.gpu.describe())
            .field("kernels", &self.program.kernels.len())
            .field("buffers", &self.program.buffers.len())
            .finish()
    }
}

impl GpuExecutable {
    pub fn new(gpu: Arc<Gpu>, plan: &Plan) -> Result<GpuExecutable, ExecError> {
        Self::with_binding_limit(gpu, plan, None)
    }

    /// [`GpuExecutable::new`] as if the adapter's largest storage binding were `limit`
    /// bytes (for tests of the splitting below on small problems).
    pub fn with_binding_limit(
        gpu: Arc<Gpu>,
        plan: &Plan,
        limit: Option<u64>,
    ) -> Result<GpuExecutable, ExecError> {
        let mut caps = gpu.caps().clone();
        if let Some(l) = limit {
            caps.max_binding_bytes = caps.max_binding_bytes.min(l);
        }
        let plan = &fit_bindings(plan, &caps)?;
        let program = wgsl::emit_wgsl(plan, &caps).map_err(|e| ExecError(e.0))?;
        let dev = &gpu.device;
        let buffers = gpu.scoped("allocating GPU buffers", || {
            program
                .buffers
                .iter()
                .enumerate()
                .map(|(k, b)| {
                    dev.create_buffer(&wgpu::BufferDescriptor {
                        label: Some(&format!("b{k}")),
                        size: b.bytes().max(4),
                        usage: wgpu::BufferUsages::STORAGE
                            | wgpu::BufferUsages::COPY_DST
                            | wgpu::BufferUsages::COPY_SRC,
                        mapped_at_creation: false,
                    })
                })
                .collect::<Vec<_>>()
        })?;
        for (k, b) in program.buffers.iter().enumerate() {
            if let BufferRole::Const(x) = b.role {
                let one = scalar_array(x, b.dtype);
                gpu.queue
                    .write_buffer(&buffers[k], 0, &to_bytes(&one.view()));
            }
        }
        let mut layouts: HashMap<usize, (wgpu::BindGroupLayout, wgpu::PipelineLayout)> =
            HashMap::new();
        let mut steps = Vec::new();
        for kern in &program.kernels {
            let n = kern.bindings.len();
            if let std::collections::hash_map::Entry::Vacant(slot) = layouts.entry(n) {
                let entries: Vec<wgpu::BindGroupLayoutEntry> = (0..n as u32)
                    .map(|b| wgpu::BindGroupLayoutEntry {
                        binding: b,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Storage { read_only: b != 0 },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        count: None,
                    })
                    .collect();
                let bgl = dev.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: None,
                    entries: &entries,
                });
                let pl = dev.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: None,
                    bind_group_layouts: &[Some(&bgl)],
                    immediate_size: 0,
                });
                slot.insert((bgl, pl));
            }
            let (bgl, pl) = &layouts[&n];
            let pipeline = gpu.pipeline(kern, pl)?;
            let entries: Vec<wgpu::BindGroupEntry> = kern
                .bindings
                .iter()
                .map(|b| wgpu::BindGroupEntry {
                    binding: b.binding,
                    resource: buffers[b.buffer].as_entire_binding(),
                })
                .collect();
            let bg = gpu.scoped("binding buffers", || {
                dev.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&kern.name),
                    layout: bgl,
                    entries: &entries,
                })
            })?;
            steps.push((pipeline, bg, kern.dispatch));
        }
        Ok(GpuExecutable {
            gpu,
            program,
            plan: plan.clone(),
            buffers,
            steps,
            busy: Mutex::new(()),
        })
    }

    /// The plan the kernels compute (re-planned with slicing if it had to be).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Uploads `inputs` (one per input tensor, in [`crate::input_ids`] order).
    pub fn upload(&self, inputs: &[TensorView<'_>]) -> Result<(), ExecError> {
        let p = &self.plan.program;
        if inputs.len() != self.program.inputs.len() {
            return Err(ExecError(format!(
                "expected {} input arrays, got {}",
                self.program.inputs.len(),
                inputs.len()
            )));
        }
        for (&(id, buf), data) in self.program.inputs.iter().zip(inputs) {
            let t = &p.tensors[id];
            let want: Vec<usize> = t.axes.iter().map(|&a| p.size(a) as usize).collect();
            if data.shape() != want.as_slice() {
                return Err(ExecError(format!(
                    "input '{}' has shape {:?} but {:?} was expected",
                    t.name,
                    data.shape(),
                    want
                )));
            }
            let owned = data.cast(t.dtype);
            let bytes = to_bytes(&owned.view());
            if !bytes.is_empty() {
                self.gpu.queue.write_buffer(&self.buffers[buf], 0, &bytes);
            }
        }
        Ok(())
    }

    fn record(&self, enc: &mut wgpu::CommandEncoder) {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("einc"),
            timestamp_writes: None,
        });
        for (pipeline, bg, d) in &self.steps {
            if d.contains(&0) {
                continue;
            }
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, bg, &[]);
            pass.dispatch_workgroups(d[0], d[1], d[2]);
        }
    }

    /// Runs every kernel `n` times back to back in one submission on the uploaded inputs
    /// and waits for the GPU (for timing).
    pub fn run_kernels_n(&self, n: usize) -> Result<Duration, ExecError> {
        let t0 = Instant::now();
        let dev = &self.gpu.device;
        self.gpu.scoped("running kernels", || {
            let mut enc = dev.create_command_encoder(&Default::default());
            for _ in 0..n {
                self.record(&mut enc);
            }
            self.gpu.queue.submit([enc.finish()]);
        })?;
        dev.poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| ExecError(format!("GPU error while waiting for kernels: {e}")))?;
        Ok(t0.elapsed())
    }

    /// Runs the kernels and reads the program's outputs back.
    pub fn run(&self, inputs: &[TensorView<'_>]) -> Result<Vec<TensorData>, ExecError> {
        let _one_at_a_time = self
            .busy
            .lock()
            .map_err(|_| ExecError("internal error: a GPU run panicked".into()))?;
        self.upload(inputs)?;
        let p = &self.plan.program;
        let dev = &self.gpu.device;
        let staging = self.gpu.scoped("allocating readback buffers", || {
            let mut enc = dev.create_command_encoder(&Default::default());
            self.record(&mut enc);
            let mut staging = Vec::new();
            for &(t, buf) in &self.program.outputs {
                let n: u64 = p.tensors[t].axes.iter().map(|&a| p.size(a)).product();
                let bytes = (n * dtype_size(p.tensors[t].dtype) as u64).max(4);
                let s = dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("readback"),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                enc.copy_buffer_to_buffer(&self.buffers[buf], 0, &s, 0, bytes);
                staging.push(s);
            }
            self.gpu.queue.submit([enc.finish()]);
            staging
        })?;
        for s in &staging {
            s.map_async(wgpu::MapMode::Read, .., |_| {});
        }
        dev.poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| ExecError(format!("GPU error while reading results: {e}")))?;
        let mut outs = Vec::new();
        for (&(t, _), s) in self.program.outputs.iter().zip(&staging) {
            let tensor = &p.tensors[t];
            let shape: Vec<usize> = tensor.axes.iter().map(|&a| p.size(a) as usize).collect();
            let view = s
                .get_mapped_range(..)
                .map_err(|e| ExecError(format!("could not read GPU result: {e}")))?;
            outs.push(from_bytes(&view, tensor.dtype, &shape)?);
        }
        Ok(outs)
    }
}

/// `plan`, or the same program re-planned with its products sliced (summed over slices
/// of an index) when an intermediate would not fit one storage binding of the adapter.
/// Inputs and outputs themselves must fit: they are not split.
fn fit_bindings(plan: &Plan, caps: &GpuCaps) -> Result<Plan, ExecError> {
    let p = &plan.program;
    let limit = caps.max_binding_bytes as f64;
    let bytes = |s: &einc_compiler::plan::Step| -> f64 {
        s.indices.iter().map(|&i| p.size(i) as f64).product::<f64>() * dtype_size(s.dtype) as f64
    };
    for (_, t) in p.tensors.iter() {
        let b =
            t.axes.iter().map(|&a| p.size(a) as f64).product::<f64>() * dtype_size(t.dtype) as f64;
        if b > limit {
            return Err(ExecError(format!(
                "tensor '{}' needs {b} bytes, more than the GPU's largest storage binding \
                 ({limit} bytes); inputs and outputs are not split: use --target cpu",
                t.name
            )));
        }
    }
    let too_big = plan
        .steps
        .iter()
        .filter(|s| !matches!(s.op, Op::Load { .. } | Op::Store { .. }))
        .any(|s| bytes(s) > limit);
    if !too_big {
        return Ok(plan.clone());
    }
    let elem = plan
        .steps
        .iter()
        .map(|s| dtype_size(s.dtype))
        .max()
        .unwrap_or(4) as f64;
    let cfg = PlanConfig {
        optimizer: plan.optimizer,
        semiring: plan.semiring,
        limits: Limits {
            memory_limit: Some((limit / elem).floor()),
            allow_slicing: true,
            ..Limits::default()
        },
        ..PlanConfig::default()
    };
    einc_compiler::plan::plan(p, &cfg).map_err(|e| {
        ExecError(format!(
            "an intermediate exceeds the GPU's largest storage binding ({limit} bytes) and \
             no sliced plan fits it: {e}"
        ))
    })
}

/// Runs `plan` on the process's GPU (compiling it for that device first).
pub fn execute_gpu(plan: &Plan, inputs: &[TensorView<'_>]) -> Result<Vec<TensorData>, ExecError> {
    let exe = GpuExecutable::new(gpu()?, plan)?;
    exe.run(inputs)
}

fn scalar_array(x: f64, d: DType) -> TensorData {
    let a = ArrayD::from_elem(IxDyn(&[]), x);
    TensorData::F64(a).cast(d)
}

/// The elements of `t` in row-major order, as bytes (complex as (re, im) pairs).
fn to_bytes(t: &TensorView<'_>) -> Vec<u8> {
    fn raw<T: Copy>(a: &ndarray::ArrayViewD<'_, T>, f: impl Fn(&T, &mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::with_capacity(a.len() * std::mem::size_of::<T>());
        for x in a.iter() {
            f(x, &mut out);
        }
        out
    }
    match t {
        TensorView::F32(a) => raw(a, |x, o| o.extend_from_slice(&x.to_le_bytes())),
        TensorView::F64(a) => raw(a, |x, o| o.extend_from_slice(&x.to_le_bytes())),
        TensorView::C64(a) => raw(a, |x, o| {
            o.extend_from_slice(&x.re.to_le_bytes());
            o.extend_from_slice(&x.im.to_le_bytes());
        }),
        TensorView::C128(a) => raw(a, |x, o| {
            o.extend_from_slice(&x.re.to_le_bytes());
            o.extend_from_slice(&x.im.to_le_bytes());
        }),
    }
}

fn from_bytes(b: &[u8], d: DType, shape: &[usize]) -> Result<TensorData, ExecError> {
    let n: usize = shape.iter().product();
    let bad = || ExecError("internal error: GPU result has the wrong size".into());
    if b.len() < n * dtype_size(d) {
        return Err(bad());
    }
    let f32s = |k: usize| f32::from_le_bytes([b[k], b[k + 1], b[k + 2], b[k + 3]]);
    let f64s = |k: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[k..k + 8]);
        f64::from_le_bytes(w)
    };
    let sh = IxDyn(shape);
    let r = match d {
        DType::F32 => TensorData::F32(
            ArrayD::from_shape_vec(sh, (0..n).map(|i| f32s(4 * i)).collect()).map_err(|_| bad())?,
        ),
        DType::F64 => TensorData::F64(
            ArrayD::from_shape_vec(sh, (0..n).map(|i| f64s(8 * i)).collect()).map_err(|_| bad())?,
        ),
        DType::C64 => TensorData::C64(
            ArrayD::from_shape_vec(
                sh,
                (0..n)
                    .map(|i| Complex32::new(f32s(8 * i), f32s(8 * i + 4)))
                    .collect(),
            )
            .map_err(|_| bad())?,
        ),
        DType::C128 => TensorData::C128(
            ArrayD::from_shape_vec(
                sh,
                (0..n)
                    .map(|i| Complex64::new(f64s(16 * i), f64s(16 * i + 8)))
                    .collect(),
            )
            .map_err(|_| bad())?,
        ),
    };
    Ok(r)
}

/// Inputs a GPU program reads, for callers matching arrays to tensors.
pub fn gpu_inputs(program: &GpuProgram) -> Vec<TensorId> {
    program.inputs.iter().map(|&(t, _)| t).collect()
}
