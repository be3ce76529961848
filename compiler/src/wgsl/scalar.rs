//! WGSL spellings of einc's dtypes and scalar operations.
//!
//! Complex numbers are `vec2` pairs (re, im), matching the interleaved layout of
//! `Complex<f32>`/`Complex<f64>` buffers. Vulkan's extended instruction set has no 64-bit
//! `exp`/`log`/`tanh`, so f64 versions are written out here (range reduction and a series
//! for `exp`, Newton steps on an f32 estimate for `log`).

use crate::ir::{MapOp, ReduceOp};
use crate::plan::ElemOp;
use einc_frontend::ein::ast::DType;

pub fn is_complex(d: DType) -> bool {
    matches!(d, DType::C64 | DType::C128)
}

/// The real type underneath `d`.
pub fn real(d: DType) -> &'static str {
    match d {
        DType::F32 | DType::C64 => "f32",
        DType::F64 | DType::C128 => "f64",
    }
}

/// The WGSL type of one element.
pub fn ty(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32",
        DType::F64 => "f64",
        DType::C64 => "vec2<f32>",
        DType::C128 => "vec2<f64>",
    }
}

/// `x`, of dtype `from`, as dtype `to`.
pub fn conv(x: &str, from: DType, to: DType) -> String {
    if from == to {
        return x.to_string();
    }
    let r = real(to);
    match (is_complex(from), is_complex(to)) {
        (false, false) => format!("{r}({x})"),
        (false, true) => format!("vec2<{r}>({r}({x}), {r}(0.0))"),
        (true, true) => format!("vec2<{r}>({x})"),
        (true, false) => format!("{r}(({x}).x)"),
    }
}

pub fn lit(v: f64, d: DType) -> String {
    let r = real(d);
    let s = if v.is_finite() {
        format!("{r}({v:?})")
    } else if v > 0.0 {
        format!("{r}(bitcast<f32>(0x7f800000u))")
    } else if v < 0.0 {
        format!("{r}(-bitcast<f32>(0x7f800000u))")
    } else {
        format!("{r}(bitcast<f32>(0x7fc00000u))")
    };
    if is_complex(d) {
        format!("vec2<{r}>({s}, {r}(0.0))")
    } else {
        s
    }
}

/// The largest finite value of `d`'s real type. Tests against it stand in for tests
/// against infinity: an infinite constant in arithmetic or comparisons is what a driver
/// compiling with finite-math assumptions may fold away.
pub fn max_finite(d: DType) -> String {
    match real(d) {
        "f32" => "f32(3.4028234663852886e38)".into(),
        _ => "f64(1.7976931348623157e308)".into(),
    }
}

pub fn mul(a: &str, b: &str, d: DType) -> String {
    if is_complex(d) {
        format!("cmul({a}, {b})")
    } else {
        format!("({a} * {b})")
    }
}

/// Helper functions a kernel of dtype `d` may call.
pub fn prelude(d: DType) -> String {
    let r = real(d);
    let mut s = String::new();
    let f64_math = r == "f64";
    if f64_math {
        s.push_str(EXP64);
    }
    let (exp, log) = if f64_math {
        ("exp64", "log64")
    } else {
        ("exp", "log")
    };
    s.push_str(&format!(
        "fn rexp(x: {r}) -> {r} {{ return {exp}(x); }}\n\
         fn rlog(x: {r}) -> {r} {{ return {log}(x); }}\n\
         fn rtanh(x: {r}) -> {r} {{\n  let e = rexp(-2.0 * abs(x));\n  let t = (1.0 - e) / (1.0 + e);\n  return select(t, -t, x < 0.0);\n}}\n"
    ));
    if is_complex(d) {
        s.push_str(&COMPLEX.replace("R", r));
    }
    s
}

const EXP64: &str = "
fn exp64(x: f64) -> f64 {
  if (x > 709.8) { return f64(bitcast<f32>(0x7f800000u)); }
  if (x < -745.2) { return f64(0.0); }
  if (x != x) { return x; }
  let n = round(x * 1.4426950408889634);
  let r = (x - n * 0.6931471803691238) - n * 1.9082149292705877e-10;
  var t = f64(1.0);
  var p = f64(1.0);
  for (var k = 1; k <= 13; k++) { p = p * r / f64(k); t = t + p; }
  // 2^n in two halves so neither factor overflows.
  let h = floor(n * 0.5);
  return t * ldexp(f64(1.0), i32(h)) * ldexp(f64(1.0), i32(n - h));
}
fn log64(x: f64) -> f64 {
  if (x < 0.0 || x != x) { return f64(bitcast<f32>(0x7fc00000u)); }
  if (x == 0.0) { return f64(-bitcast<f32>(0x7f800000u)); }
  if (x > 1.7976931348623157e308) { return x; }
  // Scale into f32's range by powers of 2^60, then refine an f32 estimate by Newton
  // steps on exp.
  var m = x;
  var k = 0.0;
  for (var i = 0; i < 20 && m > 1.152921504606847e18; i++) { m = m * ldexp(f64(1.0), -60); k = k + 60.0; }
  for (var i = 0; i < 20 && m < 8.673617379884035e-19; i++) { m = m * ldexp(f64(1.0), 60); k = k - 60.0; }
  var y = f64(log(f32(m)));
  for (var i = 0; i < 3; i++) { let e = exp64(y); y = y + 2.0 * (m - e) / (m + e); }
  return y + f64(k) * 0.6931471805599453;
}
";

const COMPLEX: &str = "
fn cmul(a: vec2<R>, b: vec2<R>) -> vec2<R> { return vec2<R>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x); }
fn cdiv(a: vec2<R>, b: vec2<R>) -> vec2<R> {
  let d = b.x * b.x + b.y * b.y;
  return vec2<R>((a.x * b.x + a.y * b.y) / d, (a.y * b.x - a.x * b.y) / d);
}
fn cabs(a: vec2<R>) -> R {
  let m = max(abs(a.x), abs(a.y));
  if (m == 0.0) { return R(0.0); }
  let u = a / m;
  return m * sqrt(u.x * u.x + u.y * u.y);
}
fn cexp(a: vec2<R>) -> vec2<R> { let e = rexp(a.x); return vec2<R>(e * R(cos(f32(a.y))), e * R(sin(f32(a.y)))); }
fn clog(a: vec2<R>) -> vec2<R> { return vec2<R>(rlog(cabs(a)), R(atan2(f32(a.y), f32(a.x)))); }
fn csqrt(a: vec2<R>) -> vec2<R> {
  let m = cabs(a);
  let re = sqrt((m + a.x) * 0.5);
  let im = sqrt(max((m - a.x) * 0.5, R(0.0)));
  return vec2<R>(re, select(im, -im, a.y < 0.0));
}
fn ctanh(a: vec2<R>) -> vec2<R> {
  // tanh z = (1 - e^{-2z}) / (1 + e^{-2z}), written for Re z >= 0 and mirrored.
  let s = select(R(1.0), R(-1.0), a.x < 0.0);
  let z = a * s;
  let e = cexp(vec2<R>(-2.0 * z.x, -2.0 * z.y));
  let one = vec2<R>(1.0, 0.0);
  return cdiv(one - e, one + e) * s;
}
fn cge(a: vec2<R>, b: vec2<R>) -> bool { return a.x > b.x || (a.x == b.x && a.y >= b.y); }
fn cle(a: vec2<R>, b: vec2<R>) -> bool { return a.x < b.x || (a.x == b.x && a.y <= b.y); }
";

/// One elementwise operation on already-converted operands.
pub fn elem(op: ElemOp, xs: &[String], d: DType) -> String {
    let c = is_complex(d);
    let r = real(d);
    let x = &xs[0];
    let m = match op {
        ElemOp::Add => return format!("({x} + {})", xs[1]),
        ElemOp::Mul if c => return format!("cmul({x}, {})", xs[1]),
        ElemOp::Mul => return format!("({x} * {})", xs[1]),
        ElemOp::Map(m) => m,
    };
    match (m, c) {
        (MapOp::Neg, _) => format!("(-{x})"),
        (MapOp::Sub, _) => format!("({x} - {})", xs[1]),
        (MapOp::Div, false) => format!("({x} / {})", xs[1]),
        (MapOp::Div, true) => format!("cdiv({x}, {})", xs[1]),
        (MapOp::Exp, false) => format!("rexp({x})"),
        (MapOp::Exp, true) => format!("cexp({x})"),
        (MapOp::Log, false) => format!("rlog({x})"),
        (MapOp::Log, true) => format!("clog({x})"),
        (MapOp::Sqrt, false) => format!("sqrt({x})"),
        (MapOp::Sqrt, true) => format!("csqrt({x})"),
        (MapOp::Tanh, false) => format!("rtanh({x})"),
        (MapOp::Tanh, true) => format!("ctanh({x})"),
        (MapOp::Abs, false) => format!("abs({x})"),
        (MapOp::Abs, true) => format!("vec2<{r}>(cabs({x}), {r}(0.0))"),
        (MapOp::Relu, false) => format!("max({x}, {r}(0.0))"),
        (MapOp::Relu, true) => {
            format!("select(vec2<{r}>(0.0, 0.0), {x}, cge({x}, vec2<{r}>(0.0, 0.0)))")
        }
        (MapOp::Sigmoid, false) => format!("({r}(1.0) / ({r}(1.0) + rexp(-{x})))"),
        (MapOp::Sigmoid, true) => {
            format!("cdiv(vec2<{r}>(1.0, 0.0), vec2<{r}>(1.0, 0.0) + cexp(-{x}))")
        }
        (MapOp::Max, false) => format!("max({x}, {})", xs[1]),
        (MapOp::Min, false) => format!("min({x}, {})", xs[1]),
        (MapOp::Max, true) => format!("select({1}, {0}, cge({0}, {1}))", x, xs[1]),
        (MapOp::Min, true) => format!("select({1}, {0}, cle({0}, {1}))", x, xs[1]),
    }
}

/// The identity of a reduction `⊕` (`None`: a sum).
pub fn identity(op: Option<ReduceOp>, d: DType) -> String {
    match op {
        None => lit(0.0, d),
        Some(ReduceOp::Max | ReduceOp::LogSumExp) => lit(f64::NEG_INFINITY, d),
        Some(ReduceOp::Min) => lit(f64::INFINITY, d),
    }
}

/// `a ⊕ b` for the tree reduction and for plain folds (not log-sum-exp, which keeps a
/// running max and sum instead).
pub fn combine(op: Option<ReduceOp>, a: &str, b: &str, d: DType) -> String {
    match (op, is_complex(d)) {
        (None, _) => format!("({a} + {b})"),
        (Some(ReduceOp::Max), false) => format!("max({a}, {b})"),
        (Some(ReduceOp::Min), false) => format!("min({a}, {b})"),
        (Some(ReduceOp::Max), true) => format!("select({b}, {a}, cge({a}, {b}))"),
        (Some(ReduceOp::Min), true) => format!("select({b}, {a}, cle({a}, {b}))"),
        (Some(ReduceOp::LogSumExp), _) => unreachable!("log-sum-exp folds with a running max"),
    }
}
