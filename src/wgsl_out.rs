//! `einc compile --emit wgsl`: the plan's kernels as `.wgsl` files plus `manifest.json`
//! (buffers, bindings, dispatch sizes, step order), enough to run them from any WebGPU
//! host. Without `-o DIR` the same content is printed as one text (manifest first).

use einc::Error;
use einc_compiler::plan::Plan;
use einc_compiler::wgsl::{emit_wgsl, BufferRole, GpuCaps, GpuProgram};
use serde_json::{json, Value};
use std::path::Path;

fn program(plan: &Plan) -> Result<GpuProgram, Error> {
    emit_wgsl(plan, &GpuCaps::default()).map_err(|e| Error::Runtime(e.0))
}

fn manifest(plan: &Plan, prog: &GpuProgram, source: &str) -> Value {
    let p = &plan.program;
    let shape = |t: einc_compiler::ir::TensorId| -> Vec<u64> {
        p.tensors[t].axes.iter().map(|&a| p.size(a)).collect()
    };
    let buffers: Vec<Value> = prog
        .buffers
        .iter()
        .enumerate()
        .map(|(k, b)| {
            let (role, tensor, value) = match &b.role {
                BufferRole::Input(t) => ("input", Some(p.tensors[*t].name.clone()), None),
                BufferRole::Result(t) => ("result", Some(p.tensors[*t].name.clone()), None),
                BufferRole::Const(x) => ("constant", None, Some(*x)),
                BufferRole::Temp => ("temporary", None, None),
            };
            json!({
                "id": k, "dtype": b.dtype.name(), "elements": b.len, "bytes": b.bytes(),
                "role": role, "tensor": tensor, "value": value,
            })
        })
        .collect();
    let kernels: Vec<Value> = prog
        .kernels
        .iter()
        .map(|k| {
            json!({
                "name": k.name, "file": format!("{}.wgsl", k.name), "step": k.step,
                "kind": k.kind.name(), "entry_point": k.entry_point,
                "workgroup_size": k.workgroup_size, "dispatch": k.dispatch,
                "dispatch_formula": k.dispatch_formula, "flops": k.flops,
                "bindings": k.bindings.iter().map(|b| json!({
                    "group": 0, "binding": b.binding, "buffer": b.buffer,
                    "access": if b.writable { "read_write" } else { "read" },
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let io = |list: &[(einc_compiler::ir::TensorId, usize)]| -> Vec<Value> {
        list.iter()
            .map(|&(t, b)| {
                json!({
                    "tensor": p.tensors[t].name, "buffer": b, "shape": shape(t),
                    "dtype": p.tensors[t].dtype.name(),
                })
            })
            .collect()
    };
    json!({
        "source": source,
        "layout": "row-major over each tensor's axes; complex dtypes as interleaved (re, im) pairs",
        "order": "run the kernels in the listed order, each with one compute dispatch; \
                  write inputs and constants first, read outputs last",
        "inputs": io(&prog.inputs),
        "outputs": io(&prog.outputs),
        "buffers": buffers,
        "kernels": kernels,
    })
}

fn pretty(v: &Value) -> Result<String, Error> {
    serde_json::to_string_pretty(v).map_err(|e| Error::Internal(format!("manifest: {e}")))
}

/// Manifest and every kernel as one text.
pub fn render(plan: &Plan, source: &str) -> Result<String, Error> {
    let prog = program(plan)?;
    let mut s = pretty(&manifest(plan, &prog, source))?;
    s.push('\n');
    for k in &prog.kernels {
        s.push_str(&format!("\n// ---- {}.wgsl ----\n{}", k.name, k.source));
    }
    Ok(s)
}

/// Writes `DIR/manifest.json` and `DIR/<kernel>.wgsl`.
pub fn write_dir(plan: &Plan, source: &str, dir: &Path) -> Result<(), Error> {
    let prog = program(plan)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Runtime(format!("cannot create {}: {e}", dir.display())))?;
    let write = |name: &str, text: &str| -> Result<(), Error> {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| Error::Runtime(format!("cannot write {}: {e}", path.display())))
    };
    for k in &prog.kernels {
        write(&format!("{}.wgsl", k.name), &k.source)?;
    }
    write(
        "manifest.json",
        &(pretty(&manifest(plan, &prog, source))? + "\n"),
    )
}
