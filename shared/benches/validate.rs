//! Native median time of one full `validate()` (docs/PERFORMANCE.md).
use criterion::{criterion_group, criterion_main, Criterion};
use mailroom_shared::{Provider, Settings};

fn bench(c: &mut Criterion) {
    let mailer = format!("{}@{}", "mailer", "contoso.com");
    let settings = Settings {
        tenant_id: Some("0b4f1c2a-1234-4abc-9def-0123456789ab".into()),
        client_id: Some("6f1e2d3c-aaaa-4bbb-8ccc-0123456789ab".into()),
        client_secret: Some("abc8Q~s3cr3t-value_xyz".into()),
        username: Some(mailer.clone()),
        sender_name: "Contoso notifications".into(),
        sender_email: mailer,
        ..Settings::for_provider(Provider::Office365)
    };
    c.bench_function("validate_office365_oauth", |b| {
        b.iter(|| std::hint::black_box(&settings).validate())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
