//! The page's allocator (TLSF, `frontend/src/lib.rs`) in headless Chromium:
//! the page stays open for days and rebuilds the Activity table every 3 s, so
//! memory must stop growing once the allocator has warmed up.
#![cfg(target_arch = "wasm32")]

use std::hint::black_box;

use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const PAGE: f64 = 65_536.0;

/// The size of the module's linear memory, in bytes.
fn memory_bytes() -> f64 {
    let buffer = js_sys::Reflect::get(&wasm_bindgen::memory(), &JsValue::from_str("buffer"))
        .expect("memory.buffer");
    js_sys::Reflect::get(&buffer, &JsValue::from_str("byteLength"))
        .expect("buffer.byteLength")
        .as_f64()
        .expect("a number")
}

/// One refresh of the Activity view, roughly: 200 rows of small strings, an
/// HTML string grown by pushes past a 64 KB page, a large answer body, all
/// dropped at the end. Sizes vary from round to round, so freed blocks never
/// line up exactly with the next requests.
fn refresh(round: usize) -> usize {
    let rows: Vec<String> = (0..200)
        .map(|r| {
            let mut s = String::from("row ");
            s.push_str(&r.to_string());
            s.push_str(&"x".repeat((r * 7 + round) % 90));
            s
        })
        .collect();
    let mut html = String::new();
    for _ in 0..4 {
        for r in &rows {
            html.push_str("<tr><td class=\"status\">");
            html.push_str(r);
            html.push_str("</td></tr>");
        }
    }
    let body = vec![round as u8; 70_000 + (round % 9) * 9_000];
    black_box(&html);
    black_box(&body);
    html.len() + body.len()
}

#[wasm_bindgen_test]
fn memory_stops_growing_under_the_refresh_churn() {
    let mut total = 0;
    for round in 0..100 {
        total += refresh(round);
    }
    let warm = memory_bytes();
    for round in 100..3_000 {
        total += refresh(round);
    }
    let after = memory_bytes();
    assert!(total > 3_000 * 100_000, "the rounds ran: {total} bytes");
    assert!(
        after <= warm + 2.0 * PAGE,
        "memory grew from {warm} to {after} bytes after warm-up"
    );
}

#[wasm_bindgen_test]
fn large_and_small_blocks_keep_their_contents() {
    // Interleaved lifetimes: every third block is freed early, the rest are
    // checked byte for byte after the others were reused.
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for i in 0..600usize {
        let len = if i % 50 == 0 {
            200_000
        } else {
            1 + (i * 37) % 3_000
        };
        let block = vec![(i % 251) as u8; len];
        if i % 3 != 0 {
            kept.push(block);
        } else {
            drop(black_box(block));
        }
    }
    let mut n = 0;
    for (k, block) in kept.iter().enumerate() {
        let i = k + k / 2 + 1; // the i of the k-th kept block (i % 3 != 0)
        assert!(
            block.iter().all(|b| *b == (i % 251) as u8),
            "block {i} was overwritten"
        );
        n += block.len();
    }
    assert!(n > 1_000_000, "{n} bytes kept");
}
