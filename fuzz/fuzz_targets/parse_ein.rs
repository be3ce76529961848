//! Fuzz the `.ein` front end: parsing and checking must never panic, whatever the
//! input, and every diagnostic must render against the text it came from.
//!
//! Run with `cargo +nightly fuzz run parse_ein` from the `fuzz/` directory.
#![no_main]

use einc_frontend::ein::{check, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The language is defined over text; other byte strings never reach the parser.
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    match parse(source) {
        Ok(program) => {
            // A parsed program prints to text that parses again.
            let printed = program.to_string();
            assert!(
                parse(&printed).is_ok(),
                "reprint does not parse:\n{printed}"
            );
            if let Err(d) = check(&program) {
                let _ = d.render("fuzz.ein", source);
            }
        }
        Err(d) => {
            let _ = d.render("fuzz.ein", source);
        }
    }
});
