//! The WGSL sources of every kernel, compiled into the crate from the workspace's `kernels/` folder.
//!
//! Each file documents its bindings, dispatch and exact semantics at its top; the CPU twin of each
//! entry point lives in [`crate::cpu`].

/// One WGSL file and the compute entry points it defines.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource {
    /// File name under `kernels/`.
    pub file: &'static str,
    /// The WGSL text.
    pub source: &'static str,
    /// Compute entry points defined in the file.
    pub entry_points: &'static [&'static str],
}

/// `kernels/matmul_i8.wgsl`: int8 × int8 → int32 tiled matrix multiply.
pub const MATMUL_I8: KernelSource = KernelSource {
    file: "matmul_i8.wgsl",
    source: include_str!("../../../kernels/matmul_i8.wgsl"),
    entry_points: &["matmul_i8"],
};

/// `kernels/requantize.wgsl`: int32 → int8 fixed-point requantisation.
pub const REQUANTIZE: KernelSource = KernelSource {
    file: "requantize.wgsl",
    source: include_str!("../../../kernels/requantize.wgsl"),
    entry_points: &["requantize"],
};

/// `kernels/add.wgsl`: elementwise add with broadcast (int8 saturating, int32 wrapping).
pub const ADD: KernelSource = KernelSource {
    file: "add.wgsl",
    source: include_str!("../../../kernels/add.wgsl"),
    entry_points: &["add_i8", "add_i32"],
};

/// `kernels/relu.wgsl`: elementwise ReLU (int8, int32).
pub const RELU: KernelSource = KernelSource {
    file: "relu.wgsl",
    source: include_str!("../../../kernels/relu.wgsl"),
    entry_points: &["relu_i8", "relu_i32"],
};

/// `kernels/softmax_argmax.wgsl`: row-wise fixed-point softmax and argmax.
pub const SOFTMAX_ARGMAX: KernelSource = KernelSource {
    file: "softmax_argmax.wgsl",
    source: include_str!("../../../kernels/softmax_argmax.wgsl"),
    entry_points: &["softmax_argmax"],
};

/// Every kernel file, in a fixed order.
pub const ALL: [KernelSource; 5] = [MATMUL_I8, REQUANTIZE, ADD, RELU, SOFTMAX_ARGMAX];
