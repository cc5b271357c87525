//! Generated values compress as `--compression_ratio` asks (checked with zstd), and
//! keys have db_bench's shape.

use strata_bench::keys::{KeyFormat, ValuePool};

/// Compressed size / raw size of 1 MiB of consecutive 100-byte values.
fn zstd_ratio(compression_ratio: f64) -> f64 {
    let pool = ValuePool::new(301, compression_ratio, 100);
    let mut generator = pool.generator(0);
    let mut raw = Vec::new();
    while raw.len() < 1 << 20 {
        raw.extend_from_slice(generator.generate(100));
    }
    let compressed = zstd::bulk::compress(&raw, 3).expect("zstd");
    compressed.len() as f64 / raw.len() as f64
}

#[test]
fn values_are_about_half_compressible() {
    let r = zstd_ratio(0.5);
    // Half of each piece is random printable text (about 6.6 bits per byte), the other
    // half a repeat: zstd lands a little under one half.
    assert!((0.35..=0.6).contains(&r), "ratio {r}");
}

#[test]
fn compression_ratio_flag_moves_compressibility() {
    let quarter = zstd_ratio(0.25);
    let half = zstd_ratio(0.5);
    let full = zstd_ratio(1.0);
    assert!(quarter < half && half < full, "{quarter} {half} {full}");
    assert!((0.15..=0.35).contains(&quarter), "ratio {quarter}");
    assert!(
        full > 0.75,
        "ratio-1.0 values should barely compress: {full}"
    );
}

#[test]
fn keys_look_like_db_bench_keys() {
    let f = KeyFormat::new(16);
    let mut key = Vec::new();
    for k in [0u64, 7, 1_000_000, 999_999_999_999] {
        f.write(k, &mut key);
        assert_eq!(key, format!("{k:016}").as_bytes());
    }
    let f = KeyFormat::new(20);
    f.write(42, &mut key);
    assert_eq!(key.len(), 20);
    assert_eq!(key, b"00000000000000000042");
}
