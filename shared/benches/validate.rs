//! Native median time of one full `validate()` (docs/PERFORMANCE.md).
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let settings = mailroom_shared::fixtures::office365_oauth("smtp.office365.com", 587);
    c.bench_function("validate_office365_oauth", |b| {
        b.iter(|| std::hint::black_box(&settings).validate())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
