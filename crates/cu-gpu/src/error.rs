//! The crate's error type.

/// Everything that can go wrong in a tensor operation or while opening a device.
///
/// Shape and argument errors are the caller's fault (a process passed a bad shape or parameter) and
/// are deterministic: every node rejects the same call. Device errors are the node's business: in
/// [`Placement::Auto`](crate::Placement::Auto) they never reach the caller because the CPU twin
/// computes the same bytes instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    /// A tensor's byte length does not match the length its shape requires.
    #[error("{what}: expected {expected} bytes for the given shape, got {actual}")]
    ShapeMismatch {
        /// Which tensor ("a", "b", "logits", ...).
        what: &'static str,
        /// Bytes the shape requires.
        expected: u64,
        /// Bytes supplied.
        actual: u64,
    },
    /// A tensor would exceed [`MAX_TENSOR_BYTES`](crate::MAX_TENSOR_BYTES), or a dimension product overflows.
    #[error("{what}: {bytes} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Which tensor.
        what: &'static str,
        /// Its size in bytes (saturated at `u64::MAX` on overflow).
        bytes: u64,
        /// The limit it exceeds.
        limit: u64,
    },
    /// A scalar parameter is outside its documented range.
    #[error("invalid argument {what}: {detail}")]
    InvalidArgument {
        /// Which parameter.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A GPU was required ([`Placement::Gpu`](crate::Placement::Gpu)) but no usable adapter was found.
    #[error("no usable GPU adapter: {0}")]
    NoAdapter(String),
    /// The adapter refused to create a device.
    #[error("could not open the GPU device: {0}")]
    RequestDevice(String),
    /// The operation does not fit the device's limits (buffer size or dispatch size); only returned
    /// under [`Placement::Gpu`](crate::Placement::Gpu), otherwise the CPU computes it.
    #[error("operation exceeds the GPU's limits: {0}")]
    ExceedsDeviceLimits(String),
    /// The GPU failed while running a batch (validation error, out of memory, device lost, mapping
    /// failure); only returned under [`Placement::Gpu`](crate::Placement::Gpu).
    #[error("GPU execution failed: {0}")]
    Gpu(String),
    /// The batcher thread has stopped, so GPU work can no longer be submitted.
    #[error("the GPU batcher thread has stopped")]
    BatcherStopped,
}
