//! `validate()` timed in the browser with `performance.now()` over 10,000 runs,
//! for `cargo xtask bench`. It reports; it never fails on speed.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn validate_timing_in_the_browser() {
    let settings = mailroom_shared::fixtures::office365_oauth("smtp.office365.com", 587);
    let perf = web_sys::window().unwrap().performance().unwrap();
    // 10 batches of 1,000: performance.now() is coarse, a batch is not.
    let mut per_run_us = Vec::new();
    let mut valid = 0;
    for _ in 0..10 {
        let t = perf.now();
        for _ in 0..1_000 {
            valid += usize::from(std::hint::black_box(&settings).validate().is_valid());
        }
        per_run_us.push((perf.now() - t) * 1000.0 / 1_000.0);
    }
    assert_eq!(valid, 10_000, "every run validated the same valid settings");
    per_run_us.sort_by(|a, b| a.partial_cmp(b).unwrap());
    console_log!(
        "BENCH validate_wasm {{\"runs\":10000,\"median_us\":{:.3}}}",
        per_run_us[5]
    );
}
