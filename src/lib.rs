//! einc: an einsum / tensor-network contraction compiler.
//!
//! ```
//! use ndarray::array;
//! let a = array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
//! let b = array![[5.0, 6.0], [7.0, 8.0]].into_dyn();
//! let c = einc::einsum("ij,jk->ik", &[a.view(), b.view()]).unwrap();
//! assert_eq!(c, array![[19.0, 22.0], [43.0, 50.0]].into_dyn());
//! ```
//!
//! [`compile`] returns an [`Expression`] that runs many times on new arrays of the same
//! shapes without planning again. `.ein` programs go through [`Program`].

mod api;
pub mod cache;
mod chunk;
mod error;
mod pair;
mod view;

pub use api::{
    compile, compile_with as compile_with_config, compile_with_constants, einsum, einsum_cow,
    einsum_dyn, sublist_equation, Expression, Program,
};
pub use einc_compiler::optimize::{Extractor, OptimizeConfig};
pub use einc_compiler::order::Optimizer;
pub use einc_compiler::pipeline::CompileConfig;
pub use einc_frontend::ein::ast::DType;
pub use einc_runtime::{ExecOptions, ExecStats, InPlaceMode, Target, TensorData, TensorView};
pub use error::{Error, UserError};
pub use view::TensorCow;

/// Element types einc computes in: f32, f64, Complex<f32>, Complex<f64>.
pub trait Element: einc_runtime::kernels::Scalar {
    const DTYPE: DType;
    fn wrap(a: ndarray::ArrayD<Self>) -> TensorData;
    fn wrap_view(a: ndarray::ArrayViewD<'_, Self>) -> einc_runtime::TensorView<'_>;
    fn unwrap(t: TensorData) -> Option<ndarray::ArrayD<Self>>;
    fn unwrap_view(t: einc_runtime::TensorView<'_>) -> Option<ndarray::ArrayViewD<'_, Self>>;
}

macro_rules! element {
    ($t:ty, $d:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            fn wrap(a: ndarray::ArrayD<Self>) -> TensorData {
                TensorData::$d(a)
            }
            fn wrap_view(a: ndarray::ArrayViewD<'_, Self>) -> einc_runtime::TensorView<'_> {
                einc_runtime::TensorView::$d(a)
            }
            fn unwrap(t: TensorData) -> Option<ndarray::ArrayD<Self>> {
                match t {
                    TensorData::$d(a) => Some(a),
                    _ => None,
                }
            }
            fn unwrap_view(
                t: einc_runtime::TensorView<'_>,
            ) -> Option<ndarray::ArrayViewD<'_, Self>> {
                match t {
                    einc_runtime::TensorView::$d(a) => Some(a),
                    _ => None,
                }
            }
        }
    };
}
element!(f32, F32);
element!(f64, F64);
element!(num_complex::Complex32, C64);
element!(num_complex::Complex64, C128);
