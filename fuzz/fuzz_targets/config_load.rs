//! Fuzz the process config: fuzzed text through `Config::parse` (serde
//! parse, then the semantic validation that `serve`, `check` and the linter
//! share, including provider presets and the YAML position index used for
//! error locations). A config that loads is turned into the policy lint
//! context, as `spangate policy check` does. Errors must carry a position
//! inside the file.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run config_load` (from the repository root).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use spangate::config::Config;
use spangate::policy::LintContext;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(Path::new("fuzz.yaml"), text) {
        Ok(cfg) => {
            let _ = LintContext::from_config(&cfg);
            assert!(cfg.validate(Path::new("fuzz.yaml")).is_empty());
        }
        Err(errors) => {
            // libyaml reports the end of the stream on the line after the last.
            let lines = spangate_fuzz::yaml_lines(text) + 1;
            for e in &errors.0 {
                if let Some((line, column)) = e.location {
                    assert!(line >= 1 && column >= 1, "positions are 1-based: {e}");
                    assert!(line <= lines, "line {line} beyond the file's {lines}: {e}");
                }
            }
            let _ = errors.to_string();
        }
    }
});
