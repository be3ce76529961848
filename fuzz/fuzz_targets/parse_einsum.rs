//! Fuzz einsum equations: parsing and resolving against shapes derived from the input
//! must never panic, and every diagnostic must render.
//!
//! Run with `cargo +nightly fuzz run parse_einsum` from the `fuzz/` directory.
#![no_main]

use einc_frontend::einsum::{parse, resolve};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First bytes choose shapes, the rest is the equation.
    if data.len() < 4 {
        return;
    }
    let (head, tail) = data.split_at(4);
    let Ok(eq) = std::str::from_utf8(tail) else {
        return;
    };
    let n_ops = usize::from(head[0] % 5) + 1;
    let shapes: Vec<Vec<usize>> = (0..n_ops)
        .map(|k| {
            let rank = usize::from(head[1].wrapping_add(k as u8) % 5);
            (0..rank)
                .map(|a| usize::from(head[2].wrapping_mul(a as u8 + 1).wrapping_add(head[3]) % 4))
                .collect()
        })
        .collect();
    match parse(eq) {
        Ok(parsed) => {
            if let Err(d) = resolve(&parsed, &shapes) {
                let _ = d.render("equation", eq);
            }
        }
        Err(d) => {
            let _ = d.render("equation", eq);
        }
    }
});
