//! The gradients a fused backward kernel returns, each computed only if asked for.

/// The gradients of a layer norm's inputs, each computed only if asked for.
#[derive(Debug, Default)]
pub struct LayerNormGrads<T> {
    /// The input's gradient.
    pub x: Option<T>,
    /// γ's gradient, `[H]`.
    pub gamma: Option<T>,
    /// β's gradient, `[H]`.
    pub beta: Option<T>,
}

/// The gradients of a linear layer's inputs, each computed only if asked for.
#[derive(Debug, Default)]
pub struct LinearGrads<T> {
    /// `grad · weightᵀ`, `[N, in]`.
    pub x: Option<T>,
    /// `xᵀ · grad`, `[in, out]`.
    pub weight: Option<T>,
    /// Column sums of `grad`, `[out]`.
    pub bias: Option<T>,
}
