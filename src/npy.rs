//! `.npy` files in and out, for the four dtypes einc computes in.

use einc::{Error, TensorData};
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use num_complex::{Complex32, Complex64};
use std::path::Path;

pub fn read(path: &Path) -> Result<TensorData, Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Runtime(format!("cannot read {}: {e}", path.display())))?;
    // The header names the dtype; try each supported element type in turn.
    if let Ok(a) = ArrayD::<f64>::read_npy(&bytes[..]) {
        return Ok(TensorData::F64(a));
    }
    if let Ok(a) = ArrayD::<f32>::read_npy(&bytes[..]) {
        return Ok(TensorData::F32(a));
    }
    if let Ok(a) = ArrayD::<Complex64>::read_npy(&bytes[..]) {
        return Ok(TensorData::C128(a));
    }
    match ArrayD::<Complex32>::read_npy(&bytes[..]) {
        Ok(a) => Ok(TensorData::C64(a)),
        Err(e) => Err(Error::Runtime(format!(
            "cannot read {} as a .npy array of float32, float64, complex64 or complex128: {e}",
            path.display()
        ))),
    }
}

pub fn write(path: &Path, data: &TensorData) -> Result<(), Error> {
    let file = std::fs::File::create(path)
        .map_err(|e| Error::Runtime(format!("cannot write {}: {e}", path.display())))?;
    let w = std::io::BufWriter::new(file);
    let r = match data {
        TensorData::F32(a) => a.write_npy(w),
        TensorData::F64(a) => a.write_npy(w),
        TensorData::C64(a) => a.write_npy(w),
        TensorData::C128(a) => a.write_npy(w),
    };
    r.map_err(|e| Error::Runtime(format!("cannot write {}: {e}", path.display())))
}

/// Short text form for printing a result to the terminal.
pub fn format(data: &TensorData) -> String {
    match data {
        TensorData::F32(a) => format!("{a}"),
        TensorData::F64(a) => format!("{a}"),
        TensorData::C64(a) => format!("{a}"),
        TensorData::C128(a) => format!("{a}"),
    }
}
