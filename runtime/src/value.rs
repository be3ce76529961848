//! Arrays of any of einc's dtypes behind one type.

use einc_frontend::ein::ast::DType;
use ndarray::ArrayD;
use num_complex::{Complex32, Complex64};

/// An owned n-dimensional array of one of the four dtypes.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    C64(ArrayD<Complex32>),
    C128(ArrayD<Complex64>),
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::C64(_) => DType::C64,
            TensorData::C128(_) => DType::C128,
        }
    }

    pub fn shape(&self) -> &[usize] {
        match self {
            TensorData::F32(a) => a.shape(),
            TensorData::F64(a) => a.shape(),
            TensorData::C64(a) => a.shape(),
            TensorData::C128(a) => a.shape(),
        }
    }

    /// Convert to `to`. Complex to real keeps the real part (numpy does the same, with a
    /// warning); the compiler never asks for that direction.
    pub fn cast(&self, to: DType) -> TensorData {
        if self.dtype() == to {
            return self.clone();
        }
        match to {
            DType::F32 => TensorData::F32(self.as_c128().mapv(|z| z.re as f32)),
            DType::F64 => TensorData::F64(match self {
                TensorData::F32(a) => a.mapv(f64::from),
                _ => self.as_c128().mapv(|z| z.re),
            }),
            DType::C64 => TensorData::C64(
                self.as_c128()
                    .mapv(|z| Complex32::new(z.re as f32, z.im as f32)),
            ),
            DType::C128 => TensorData::C128(self.as_c128()),
        }
    }

    /// Exact widening to complex128 (for the oracle and for comparisons).
    pub fn as_c128(&self) -> ArrayD<Complex64> {
        match self {
            TensorData::F32(a) => a.mapv(|x| Complex64::new(f64::from(x), 0.0)),
            TensorData::F64(a) => a.mapv(|x| Complex64::new(x, 0.0)),
            TensorData::C64(a) => a.mapv(|z| Complex64::new(f64::from(z.re), f64::from(z.im))),
            TensorData::C128(a) => a.clone(),
        }
    }

    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if any element is NaN or infinite.
    pub fn has_non_finite(&self) -> bool {
        match self {
            TensorData::F32(a) => a.iter().any(|x| !x.is_finite()),
            TensorData::F64(a) => a.iter().any(|x| !x.is_finite()),
            TensorData::C64(a) => a.iter().any(|z| !z.re.is_finite() || !z.im.is_finite()),
            TensorData::C128(a) => a.iter().any(|z| !z.re.is_finite() || !z.im.is_finite()),
        }
    }
}

impl From<ArrayD<f32>> for TensorData {
    fn from(a: ArrayD<f32>) -> Self {
        TensorData::F32(a)
    }
}
impl From<ArrayD<f64>> for TensorData {
    fn from(a: ArrayD<f64>) -> Self {
        TensorData::F64(a)
    }
}
impl From<ArrayD<Complex32>> for TensorData {
    fn from(a: ArrayD<Complex32>) -> Self {
        TensorData::C64(a)
    }
}
impl From<ArrayD<Complex64>> for TensorData {
    fn from(a: ArrayD<Complex64>) -> Self {
        TensorData::C128(a)
    }
}

/// A borrowed n-dimensional array of one of the four dtypes: how inputs reach the
/// executor without being copied.
#[derive(Clone, Debug)]
pub enum TensorView<'a> {
    F32(ndarray::ArrayViewD<'a, f32>),
    F64(ndarray::ArrayViewD<'a, f64>),
    C64(ndarray::ArrayViewD<'a, Complex32>),
    C128(ndarray::ArrayViewD<'a, Complex64>),
}

impl<'a> TensorView<'a> {
    pub fn dtype(&self) -> DType {
        match self {
            TensorView::F32(_) => DType::F32,
            TensorView::F64(_) => DType::F64,
            TensorView::C64(_) => DType::C64,
            TensorView::C128(_) => DType::C128,
        }
    }

    pub fn shape(&self) -> &[usize] {
        match self {
            TensorView::F32(a) => a.shape(),
            TensorView::F64(a) => a.shape(),
            TensorView::C64(a) => a.shape(),
            TensorView::C128(a) => a.shape(),
        }
    }

    /// The same view with a shorter lifetime.
    pub fn reborrow(&self) -> TensorView<'_> {
        match self {
            TensorView::F32(a) => TensorView::F32(a.view()),
            TensorView::F64(a) => TensorView::F64(a.view()),
            TensorView::C64(a) => TensorView::C64(a.view()),
            TensorView::C128(a) => TensorView::C128(a.view()),
        }
    }

    /// The view with each `(axis, value)` axis fixed to that value and dropped (axes
    /// numbered in `self`; any order), as an einsum slice does. Panics on an axis or value
    /// out of range: callers pass positions derived from the plan.
    pub fn fix_axes(&self, fixed: &[(usize, usize)]) -> TensorView<'_> {
        let mut order: Vec<(usize, usize)> = fixed.to_vec();
        // Dropping the highest axis first keeps the lower axes' numbers valid.
        order.sort_unstable_by_key(|&(axis, _)| std::cmp::Reverse(axis));
        macro_rules! fix {
            ($variant:ident, $a:expr) => {{
                let mut v = $a.view();
                for &(axis, value) in &order {
                    v = v.index_axis_move(ndarray::Axis(axis), value);
                }
                TensorView::$variant(v)
            }};
        }
        match self {
            TensorView::F32(a) => fix!(F32, a),
            TensorView::F64(a) => fix!(F64, a),
            TensorView::C64(a) => fix!(C64, a),
            TensorView::C128(a) => fix!(C128, a),
        }
    }

    /// The element strides of the view's axes.
    pub(crate) fn strides(&self) -> &[isize] {
        match self {
            TensorView::F32(a) => a.strides(),
            TensorView::F64(a) => a.strides(),
            TensorView::C64(a) => a.strides(),
            TensorView::C128(a) => a.strides(),
        }
    }

    /// The diagonal of this view (labels `idx`, some of them repeated) as a view of the
    /// same data, its axes in `out` order: what a unary step that only takes a diagonal
    /// (`jkk->jk`) computes, without the gather ([`Self::relabel`] with each output
    /// label's axes). `None` where `idx` repeats no label, or where `out` is not exactly
    /// its distinct labels (a sum or a broadcast) or `idx` does not label every axis.
    pub(crate) fn diagonal(&self, idx: &[u32], out: &[u32]) -> Option<TensorView<'a>> {
        let axes: Vec<Vec<usize>> = out
            .iter()
            .map(|l| (0..idx.len()).filter(|&p| idx[p] == *l).collect())
            .collect();
        if axes.iter().all(|g| g.len() < 2) {
            return None;
        }
        self.relabel(&axes)
    }

    /// The view cut to `start..start + len` along `axis`. Panics on a range out of bounds:
    /// callers pass ranges derived from the shape.
    pub fn slice_axis(&self, axis: usize, start: usize, len: usize) -> TensorView<'_> {
        let s = ndarray::Slice::from(start..start + len);
        match self {
            TensorView::F32(a) => TensorView::F32(a.slice_axis(ndarray::Axis(axis), s)),
            TensorView::F64(a) => TensorView::F64(a.slice_axis(ndarray::Axis(axis), s)),
            TensorView::C64(a) => TensorView::C64(a.slice_axis(ndarray::Axis(axis), s)),
            TensorView::C128(a) => TensorView::C128(a.slice_axis(ndarray::Axis(axis), s)),
        }
    }

    /// The view whose axis `o` walks, in step, the axes `axes[o]` of `self`: a
    /// permutation when each list has one axis, a diagonal when a list has several (all of
    /// one length). Every axis of `self` must appear exactly once. No element is copied.
    /// `None` when the axes do not fit that description, or when a diagonal would need
    /// negative strides or the view is empty (callers then copy).
    pub fn relabel(&self, axes: &[Vec<usize>]) -> Option<TensorView<'a>> {
        let nd = self.shape().len();
        let mut seen = vec![false; nd];
        for &a in axes.iter().flatten() {
            if a >= nd || std::mem::replace(&mut seen[a], true) {
                return None;
            }
        }
        if seen.iter().any(|s| !s) || axes.iter().any(|g| g.is_empty()) {
            return None;
        }
        macro_rules! go {
            ($variant:ident, $a:expr) => {
                relabel_view($a.clone(), axes).map(TensorView::$variant)
            };
        }
        match self {
            TensorView::F32(a) => go!(F32, a),
            TensorView::F64(a) => go!(F64, a),
            TensorView::C64(a) => go!(C64, a),
            TensorView::C128(a) => go!(C128, a),
        }
    }

    pub fn to_owned(&self) -> TensorData {
        match self {
            TensorView::F32(a) => TensorData::F32(a.to_owned()),
            TensorView::F64(a) => TensorData::F64(a.to_owned()),
            TensorView::C64(a) => TensorData::C64(a.to_owned()),
            TensorView::C128(a) => TensorData::C128(a.to_owned()),
        }
    }

    /// Owned copy converted to `to` (see [`TensorData::cast`]).
    pub fn cast(&self, to: DType) -> TensorData {
        match (self, to) {
            (TensorView::F32(a), DType::F32) => TensorData::F32(a.to_owned()),
            (TensorView::F32(a), DType::F64) => TensorData::F64(a.mapv(f64::from)),
            (TensorView::F32(a), DType::C64) => TensorData::C64(a.mapv(|x| Complex32::new(x, 0.0))),
            (TensorView::F32(a), DType::C128) => {
                TensorData::C128(a.mapv(|x| Complex64::new(f64::from(x), 0.0)))
            }
            (TensorView::F64(a), DType::F32) => TensorData::F32(a.mapv(|x| x as f32)),
            (TensorView::F64(a), DType::F64) => TensorData::F64(a.to_owned()),
            (TensorView::F64(a), DType::C64) => {
                TensorData::C64(a.mapv(|x| Complex32::new(x as f32, 0.0)))
            }
            (TensorView::F64(a), DType::C128) => {
                TensorData::C128(a.mapv(|x| Complex64::new(x, 0.0)))
            }
            _ => self.to_owned().cast(to),
        }
    }
}

impl TensorData {
    pub fn view(&self) -> TensorView<'_> {
        match self {
            TensorData::F32(a) => TensorView::F32(a.view()),
            TensorData::F64(a) => TensorView::F64(a.view()),
            TensorData::C64(a) => TensorView::C64(a.view()),
            TensorData::C128(a) => TensorView::C128(a.view()),
        }
    }

    /// `self += other`, elementwise; `None` when dtypes or shapes differ.
    pub fn add_assign(&mut self, other: &TensorView<'_>) -> Option<()> {
        if self.shape() != other.shape() {
            return None;
        }
        match (self, other) {
            (TensorData::F32(a), TensorView::F32(b)) => *a += b,
            (TensorData::F64(a), TensorView::F64(b)) => *a += b,
            (TensorData::C64(a), TensorView::C64(b)) => *a += b,
            (TensorData::C128(a), TensorView::C128(b)) => *a += b,
            _ => return None,
        }
        Some(())
    }

    /// Bytes of element storage.
    pub fn nbytes(&self) -> usize {
        self.len() * dtype_size(self.dtype())
    }
}

/// Bytes per element.
pub fn dtype_size(d: DType) -> usize {
    match d {
        DType::F32 => 4,
        DType::F64 | DType::C64 => 8,
        DType::C128 => 16,
    }
}

/// See [`TensorView::relabel`]; `axes` is already checked to partition `v`'s axes.
fn relabel_view<'a, T>(
    v: ndarray::ArrayViewD<'a, T>,
    axes: &[Vec<usize>],
) -> Option<ndarray::ArrayViewD<'a, T>> {
    if axes.iter().all(|g| g.len() == 1) {
        let perm: Vec<usize> = axes.iter().map(|g| g[0]).collect();
        return Some(v.permuted_axes(perm));
    }
    let (shape, strides) = (v.shape(), v.strides());
    if shape.contains(&0) || strides.iter().any(|&s| s < 0) {
        return None;
    }
    let mut out_shape = Vec::with_capacity(axes.len());
    let mut out_strides = Vec::with_capacity(axes.len());
    for g in axes {
        let len = shape[g[0]];
        if g.iter().any(|&a| shape[a] != len) {
            return None;
        }
        out_shape.push(len);
        out_strides.push(g.iter().map(|&a| strides[a] as usize).sum::<usize>());
    }
    use ndarray::ShapeBuilder;
    let dim = ndarray::IxDyn(&out_shape).strides(ndarray::IxDyn(&out_strides));
    // SAFETY: output index (x_0, ..) addresses the element of `v` whose axis a (in group o)
    // has index x_o < shape[a]: a valid element of `v`, at offset Σ_o x_o · Σ_{a∈g_o}
    // strides[a] = Σ_a index_a · strides[a] from `v`'s first element (all strides are
    // non-negative, so that element is `as_ptr()`). The view borrows `v`'s data for 'a and
    // is read-only, so elements reached by several output indices are fine.
    Some(unsafe { ndarray::ArrayViewD::from_shape_ptr(dim, v.as_ptr()) })
}
