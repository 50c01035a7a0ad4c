//! `cargo xtask bench`: measures the product against its budgets.

pub fn bench() -> Result<(), String> {
    Err("the benchmark report is not built yet".into())
}
