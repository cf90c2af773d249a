//! Generates one `#[test]` per program in `tests/programs/<area>/*.slope`, so
//! that failures are reported by name (Gleam's approach).

use std::fmt::Write;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("programs");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut out = String::new();
    let mut areas: Vec<_> = std::fs::read_dir(&root).map(|d| d.flatten().collect()).unwrap_or_default();
    areas.sort_by_key(|e| e.file_name());
    for area in areas {
        if !area.path().is_dir() {
            continue;
        }
        println!("cargo:rerun-if-changed={}", area.path().display());
        let mut files: Vec<_> = std::fs::read_dir(area.path()).expect("area dir").flatten().collect();
        files.sort_by_key(|e| e.file_name());
        for file in files {
            let path = file.path();
            if path.extension().and_then(|e| e.to_str()) != Some("slope") {
                continue;
            }
            let area_name = area.file_name().to_string_lossy().replace('-', "_");
            let stem = path.file_stem().unwrap().to_string_lossy().replace('-', "_");
            let _ = writeln!(
                out,
                "#[test]\nfn {area_name}__{stem}() {{ slope_tests::run_program(\"{}\"); }}\n",
                path.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap().display()
            );
        }
    }
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("programs.rs");
    std::fs::write(dest, out).expect("write generated tests");
}
