//! Tally what the inputs of a `jwt_structured` or `jwt_verify` corpus do:
//! how many tokens are accepted (by provider and algorithm) and the reason
//! codes of the rest, to see which paths fuzzing reached.
//!
//! `cargo run --example jwt_outcomes -- structured <dir> [<pick-dir>]` or
//! `-- raw <dir>` (from `fuzz/`). With `<pick-dir>`, the smallest input of
//! each outcome is copied there, named after the outcome.

use std::collections::BTreeMap;

use libfuzzer_sys::arbitrary::{Arbitrary, Unstructured};
use spangate_fuzz::jwt::{TokenSpec, now_secs, verifiers};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(dir)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: jwt_outcomes structured|raw <dir>");
        std::process::exit(2);
    };
    let v = verifiers();
    let pick = args.get(3);
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut smallest: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("corpus dir").flatten() {
        let data = std::fs::read(entry.path()).expect("input");
        let token = if mode == "structured" {
            let Ok(spec) = TokenSpec::arbitrary_take_rest(Unstructured::new(&data)) else {
                continue;
            };
            spec.build(&v.keys, now_secs()).token
        } else {
            String::from_utf8_lossy(&data).into_owned()
        };
        let key = match v.authenticate(&token) {
            Ok(p) => {
                let alg = token
                    .split('.')
                    .next()
                    .and_then(|h| {
                        use base64::Engine;
                        base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .decode(h.trim())
                            .ok()
                    })
                    .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
                    .and_then(|h| h.get("alg").and_then(|a| a.as_str()).map(str::to_string))
                    .unwrap_or_default();
                format!("accepted {} {alg}", p.provider)
            }
            Err(e) => e.reason().to_string(),
        };
        *tally.entry(key.clone()).or_default() += 1;
        let best = smallest.entry(key).or_insert_with(|| data.clone());
        if data.len() < best.len() {
            *best = data;
        }
    }
    for (k, n) in tally {
        println!("{n:>7}  {k}");
    }
    if let Some(out) = pick {
        std::fs::create_dir_all(out).expect("pick dir");
        for (k, data) in smallest {
            let name = k.to_ascii_lowercase().replace(' ', "-");
            std::fs::write(std::path::Path::new(out).join(name), data).expect("write pick");
        }
    }
}
