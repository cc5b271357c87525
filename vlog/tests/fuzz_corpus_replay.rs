//! Replays the committed cargo-fuzz seed corpus of `vlog_segment`, so that every
//! `cargo test` checks the fuzz target's invariants on stable Rust.

use std::path::Path;

fn corpus_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/vlog_segment")
}

#[test]
fn vlog_segment_corpus_replays_without_panics() {
    let mut count = 0;
    for entry in std::fs::read_dir(corpus_dir()).expect("the seed corpus is committed") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        strata_vlog::fuzzing::vlog_segment(&data);
        count += 1;
    }
    assert!(count >= 6, "seed corpus has only {count} inputs");
}

/// Regenerates the seed corpus: `cargo test -p strata-vlog --release --test
/// fuzz_corpus_replay -- --ignored generate`.
#[test]
#[ignore]
fn generate_seed_corpus() {
    use std::sync::Arc;
    use strata_vlog::{segment_file_name, SegmentWriter, VlogCompression, SEGMENT_HEADER_LEN};
    use strata_wal::{FaultFs, Fs, SeqNo};

    let out = corpus_dir();
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(&out).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let segment = |records: u64, compression: VlogCompression| -> Vec<u8> {
        let fault = FaultFs::new(1);
        let fs: Arc<dyn Fs> = Arc::new(fault.clone());
        fs.create_dir_all(Path::new("/v")).unwrap();
        let mut w = SegmentWriter::create(&fs, Path::new("/v"), 1, 0, compression).unwrap();
        for i in 0..records {
            let value: Vec<u8> = format!("value {i} ")
                .repeat(1 + (i as usize % 5) * 20)
                .into_bytes();
            w.append(format!("key{i:03}").as_bytes(), SeqNo(1 + i), &value)
                .unwrap();
        }
        w.sync().unwrap();
        fault
            .read_file(&Path::new("/v").join(segment_file_name(1)))
            .unwrap()
    };
    let mut inputs: Vec<(&str, Vec<u8>)> = Vec::new();
    for (name, records, compression) in [
        ("plain", 4, VlogCompression::None),
        ("zstd", 4, VlogCompression::Zstd(3)),
        ("one", 1, VlogCompression::None),
    ] {
        let file = segment(records, compression);
        // Structured: records only (the harness writes the header), all durable.
        let mut structured = vec![0x7f];
        structured.extend_from_slice(&file[SEGMENT_HEADER_LEN..]);
        inputs.push((name, structured.clone()));
        // Half durable, with a torn last record.
        let mut torn = structured.clone();
        torn[0] = 0x3f;
        torn.truncate(torn.len() - 7);
        inputs.push((name, torn));
        // Raw: the whole file, header included.
        let mut raw = vec![0x80 | 0x7f];
        raw.extend_from_slice(&file);
        inputs.push((name, raw));
    }
    for (i, (name, data)) in inputs.iter().enumerate() {
        std::fs::write(out.join(format!("{i:02}-{name}")), data).unwrap();
    }
}
