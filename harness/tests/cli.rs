//! The `polycephaly` command as a newcomer meets it: `--help` everywhere,
//! bad input answered in one line on stderr with a failing exit (never a
//! panic or a backtrace, even with `RUST_BACKTRACE=1`), `demo`, a fractal
//! whose PNG holds the pixels of a one-process computation, and `assess`
//! whose line counts are those of `wc -l` and whose parallel results are
//! those of one process, on a generated tree (several languages, a file
//! that is not UTF-8, unreadable files and directories, a symbolic link
//! loop) and on this repository's `src/`.
//!
//! The pool runs in the spawned command, not in this process, so these
//! tests use libtest's harness.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use polycephaly_harness::fractal::render::{View, render_single};

const BIN: &str = env!("CARGO_BIN_EXE_polycephaly");

/// A fresh directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("polycephaly-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Make what a test locked readable again, so it can be removed.
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("u+rwX")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn command(bin: &Path, args: &[&str], dir: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args(args).current_dir(dir).env("RUST_BACKTRACE", "1");
    c
}

fn run(args: &[&str], dir: &Path) -> Output {
    command(Path::new(BIN), args, dir).output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_ok(out: &Output) -> String {
    let (stdout, stderr) = text(out);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    assert_no_panic(&stdout, &stderr);
    stdout
}

fn assert_no_panic(stdout: &str, stderr: &str) {
    for t in [stdout, stderr] {
        let lower = t.to_lowercase();
        assert!(
            !lower.contains("panicked") && !lower.contains("backtrace"),
            "{stdout}\n{stderr}"
        );
    }
}

#[test]
fn every_command_has_help() {
    let dir = TempDir::new("help");
    for args in [
        &["--help"][..],
        &["demo", "--help"],
        &["fractal", "--help"],
        &["assess", "--help"],
        &["bench", "--help"],
    ] {
        let out = assert_ok(&run(args, &dir.0));
        assert!(out.contains("Usage:"), "{args:?}: {out}");
    }
    let top = assert_ok(&run(&["--help"], &dir.0));
    for cmd in ["demo", "fractal", "assess", "bench"] {
        assert!(top.contains(cmd), "{top}");
    }
}

#[test]
fn bad_input_is_one_line_on_stderr_and_a_failure() {
    let dir = TempDir::new("bad");
    let a_dir = dir.0.join("a-directory");
    std::fs::create_dir(&a_dir).unwrap();
    let a_dir = a_dir.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["fractal", "--size", "0x100"],
        &["fractal", "--size", "100x0"],
        &["fractal", "--size", "abcx100"],
        &["fractal", "--size", "100"],
        &["fractal", "--size", "100000x100000"],
        &["fractal", "--max-iter", "0"],
        &["fractal", "--max-iter", "many"],
        &["fractal", "--zoom", "-1"],
        &["fractal", "--center", "1"],
        &["fractal", "--drones", "0"],
        &[
            "fractal",
            "--size",
            "32x32",
            "--out",
            "/nonexistent-dir/x.png",
        ],
        &["fractal", "--size", "32x32", "--out", a_dir],
        &["assess", "/no/such/path"],
        &["assess"],
        &["assess", ".", "--out", "report.txt"],
        &["assess", ".", "--out", "/nonexistent-dir/r.json"],
        &["assess", ".", "--drones", "x"],
        &["frobnicate"],
        &[],
    ];
    for args in cases {
        let out = run(args, &dir.0);
        let (stdout, stderr) = text(&out);
        assert!(
            !out.status.success(),
            "{args:?} succeeded:\n{stdout}\n{stderr}"
        );
        assert_no_panic(&stdout, &stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{args:?}: stderr is not one line:\n{stderr}"
        );
        assert!(lines[0].starts_with("polycephaly: "), "{args:?}: {stderr}");
    }
    // Nothing was written where it could not be.
    assert!(!dir.0.join("report.txt").exists());
}

#[test]
fn demo_shows_the_seeds_example_and_an_account() {
    let dir = TempDir::new("demo");
    let out = assert_ok(&run(&["demo"], &dir.0));
    for want in [
        "drones do: [:a :b | a + b] with: #(1 2 3 4 5) with: #(5 4 3 2 1)",
        "-> [6, 6, 6, 6, 6]",
        "drones started          4 (0 lost)",
        "bytes through arena",
        "time in exchange",
        "machine: ",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    assert!(!out.contains("DIFFERENT"), "{out}");
}

/// The RGB pixels and size of a PNG.
fn read_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn fractal_png_holds_the_one_process_pixels() {
    let dir = TempDir::new("fractal");
    let out = assert_ok(&run(
        &[
            "fractal",
            "--size",
            "240x150",
            "--max-iter",
            "300",
            "--center",
            "-0.7,0.2",
            "--zoom",
            "2.5",
            "--drones",
            "2",
            "--out",
            "f.png",
        ],
        &dir.0,
    ));
    for want in [
        "pool render",
        "through the drones' arena lanes",
        "one process",
        "speed-up",
        "Unix sockets",
        "pixels identical to the one-process render: yes",
        "wrote f.png (240x150",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    let view = View {
        center_x: -0.7,
        center_y: 0.2,
        zoom: 2.5,
        width: 240,
        height: 150,
        max_iter: 300,
        _pad: 0,
    };
    let (w, h, pixels) = read_png(&dir.0.join("f.png"));
    assert_eq!((w, h), (240, 150));
    assert!(
        pixels == render_single(&view, 150, || {}).pixels,
        "PNG pixels differ"
    );
}

#[test]
fn fractal_explore_writes_numbered_frames() {
    let dir = TempDir::new("explore");
    let out = assert_ok(&run(
        &[
            "fractal",
            "--size",
            "64x40",
            "--max-iter",
            "100",
            "--explore",
            "3",
            "--out",
            "zoom.png",
        ],
        &dir.0,
    ));
    for i in 0..3 {
        let path = dir.0.join(format!("zoom-{i:03}.png"));
        assert_eq!(read_png(&path).0, 64, "{out}");
    }
    assert!(!dir.0.join("zoom.png").exists());
    assert!(!dir.0.join("zoom-003.png").exists());
}

/// The fields of a CSV line (quotes undone).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

/// The CSV report's rows: path -> (lines, status).
fn read_report(path: &Path) -> BTreeMap<String, (Option<u64>, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = csv_fields(lines.next().unwrap());
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (path_c, lines_c, status_c) = (col("path"), col("lines"), col("status"));
    lines
        .map(|l| {
            let f = csv_fields(l);
            (
                f[path_c].clone(),
                (f[lines_c].parse().ok(), f[status_c].clone()),
            )
        })
        .collect()
}

/// `wc -l` of each file (paths relative to `dir`).
fn wc_lines(dir: &Path, files: &[&String]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for batch in files.chunks(500) {
        let o = Command::new("wc")
            .arg("-l")
            .args(batch.iter().map(|s| s.as_str()))
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let (n, name) = line.trim().split_once(' ').unwrap();
            if name != "total" || batch.iter().any(|b| b.as_str() == "total") {
                out.insert(name.to_owned(), n.parse().unwrap());
            }
        }
    }
    out
}

/// Every analysed file's lines equal `wc -l`'s.
fn assert_lines_are_wc(root: &Path, report: &BTreeMap<String, (Option<u64>, String)>) -> usize {
    let ok: Vec<&String> = report
        .iter()
        .filter(|(_, (_, status))| status == "ok")
        .map(|(p, _)| p)
        .collect();
    let wc = wc_lines(root, &ok);
    for path in &ok {
        assert_eq!(report[*path].0, Some(wc[*path]), "{path}: ours vs wc -l");
    }
    ok.len()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A small tree of every language, with the awkward cases.
fn make_tree(root: &Path) {
    write(&root.join("rust/Cargo.toml"), b"[package]\nname = \"x\"\n");
    write(
        &root.join("rust/src/lib.rs"),
        b"//! A crate.\n\n/// Adds.\npub fn add(a: u8, b: u8) -> u8 {\n    if a > b { a } else { b }\n}\n",
    );
    write(&root.join("rust/src/empty.rs"), b"");
    write(
        &root.join("rust/src/no_newline.rs"),
        b"fn f() {}\nfn g() {}",
    );
    write(
        &root.join("c/main.c"),
        b"#include <stdio.h>\n/* entry */\nint main(void) {\n    for (;;) { break; }\n    return 0;\n}\n",
    );
    write(&root.join("c/util.h"), b"#pragma once\nint util(int);\n");
    write(
        &root.join("cpp/a.cpp"),
        b"namespace n {\nint A::f() const { return x ? 1 : 2; }\n}\n",
    );
    write(&root.join("py/pkg/__init__.py"), b"");
    write(
        &root.join("py/pkg/mod.py"),
        b"\"\"\"Doc.\"\"\"\n\ndef f(x):\n    # c\n    return x if x else 0\n",
    );
    write(
        &root.join("java/A.java"),
        b"class A {\n  void f() { if (true) {} }\n}\n",
    );
    write(
        &root.join("js/app.js"),
        b"const f = (x) => {\n  return x && 1;\n};\n",
    );
    write(&root.join("js/lib.mjs"), b"export function g() {}\n");
    write(
        &root.join("ts/x.ts"),
        b"function h(a: number): number {\n  return a;\n}\n",
    );
    write(
        &root.join("st/Foo.st"),
        b"!Foo methodsFor: 'x'!\nsize\n\t^ a isNil ifTrue: [0] ifFalse: [a size]! !\n",
    );
    write(&root.join("docs/README.md"), b"# not source\n");
    // Latin-1, not UTF-8.
    write(&root.join("bad/latin1.c"), b"/* caf\xe9 */\nint x;\n");
    // A link loop and a link to a file: neither followed.
    std::fs::create_dir_all(root.join("links")).unwrap();
    std::os::unix::fs::symlink("..", root.join("links/up")).unwrap();
    std::os::unix::fs::symlink("../rust/src/lib.rs", root.join("links/lib.rs")).unwrap();
    // Unreadable: a file and a directory.
    write(&root.join("secret/hidden.py"), b"x = 1\n");
    std::fs::set_permissions(
        root.join("secret/hidden.py"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    write(&root.join("locked/inside.py"), b"y = 2\n");
    std::fs::set_permissions(root.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
}

#[test]
fn assess_a_generated_tree() {
    let dir = TempDir::new("assess-gen");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let root = dir.0.join("tree");
    make_tree(&root);
    // Root reads everything: run as nobody, from a copy of the command
    // it may execute, so that the unreadable stays unreadable.
    let root_user = rustix::process::geteuid().is_root();
    let bin = if root_user {
        let copy = dir.0.join("polycephaly");
        std::fs::copy(BIN, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    } else {
        PathBuf::from(BIN)
    };
    for name in ["report.csv", "report.json"] {
        let mut cmd = command(
            &bin,
            &["assess", "tree", "--drones", "2", "--out", name],
            &dir.0,
        );
        if root_user {
            use std::os::unix::process::CommandExt as _;
            cmd.uid(65534).gid(65534);
        }
        let out = assert_ok(&cmd.output().unwrap());
        for want in [
            "results identical",
            "2 symbolic links not followed",
            "bad/latin1.c: not UTF-8 (byte 6 is not), skipped",
            "secret/hidden.py: unreadable: Permission denied",
            "locked: unreadable directory: Permission denied",
            "Smalltalk",
            "most complex functions",
        ] {
            assert!(out.contains(want), "{want:?} missing:\n{out}");
        }
    }
    let report = read_report(&dir.0.join("report.csv"));
    assert_eq!(report["bad/latin1.c"].1, "not UTF-8 at byte 6");
    assert!(report["secret/hidden.py"].1.starts_with("unreadable: "));
    assert!(!report.contains_key("locked/inside.py"));
    assert!(!report.keys().any(|p| p.starts_with("links/")));
    assert!(!report.contains_key("docs/README.md"));
    assert_eq!(report["rust/src/no_newline.rs"].0, Some(1));
    assert_eq!(report["rust/src/empty.rs"].0, Some(0));
    // Every readable UTF-8 source file, each with wc's count.
    assert_eq!(assert_lines_are_wc(&root, &report), 13);

    let json = std::fs::read_to_string(dir.0.join("report.json")).unwrap();
    assert_eq!(json.matches("\"language\": ").count(), 13, "{json}");
    assert!(json.contains("\"name\": \"Foo>>size\""), "{json}");
    assert!(
        json.contains("\"reason\": \"not UTF-8 (byte 6 is not), skipped\""),
        "{json}"
    );
}

#[test]
fn assess_this_repository_matches_wc() {
    let dir = TempDir::new("assess-src");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src");
    let report_path = dir.0.join("src.csv");
    let out = assert_ok(&run(
        &[
            "assess",
            src.to_str().unwrap(),
            "--out",
            report_path.to_str().unwrap(),
        ],
        &dir.0,
    ));
    assert!(out.contains("results identical"), "{out}");
    let report = read_report(&report_path);
    let n = assert_lines_are_wc(&src, &report);
    assert!(n > 50, "{n} files");
    assert!(report.values().all(|(_, status)| status == "ok"));
}
