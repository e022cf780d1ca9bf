//! Replays the committed fuzz corpus (`fuzz/corpus/TARGET/*`) through the
//! same entry points the cargo-fuzz targets call, on the stable toolchain.

use std::path::Path;

#[test]
fn every_corpus_input_is_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut replayed = 0usize;
    for (name, entry) in polycephaly::fuzzing::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus folder {}: {e}", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus for fuzz target {name}");
        for file in files {
            let data = std::fs::read(&file).expect("read corpus file");
            entry(&data);
            replayed += 1;
        }
    }
    assert!(replayed > 0);
}
