//! Replays the committed `mpsc_consume` fuzz corpus through the same entry
//! point the cargo-fuzz target calls (until `fuzzing::TARGETS` lists it, at
//! which point `tests/fuzz_corpus.rs` covers it too).

use std::path::Path;

#[test]
fn mpsc_corpus_is_handled() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/mpsc_consume");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus folder")
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() > 10, "the corpus is there");
    for file in files {
        polycephaly::fuzzing::mpsc_consume(&std::fs::read(&file).expect("read corpus file"));
    }
}
