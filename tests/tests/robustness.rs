//! No input makes the compiler panic: every test program and example,
//! truncated at many points and with tokens shuffled, must either compile or
//! produce diagnostics. (Each call runs the whole pipeline: parse, check,
//! elaborate, differentiate, optimise — and, for a variant that compiles,
//! lowering and native code generation, which must not fail either.)

use slope::api::Program;
use slope::driver::no_files;
use slope_tests::workspace_dir;
use std::path::PathBuf;

fn sources() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs =
        vec![workspace_dir().join("tests/programs"), workspace_dir().join("examples"), workspace_dir().join("stdlib")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().and_then(|e| e.to_str()) == Some("slope") {
                out.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    assert!(out.len() >= 10, "expected the test programs and examples");
    out
}

fn compile_must_not_panic(name: &str, text: &str) {
    let result = std::panic::catch_unwind(|| {
        // Imports resolve to the stdlib only: a broken program must still not panic.
        match Program::compile(name, text, &no_files) {
            Ok(p) => {
                if let Err(f) = p.native() {
                    panic!("native code generation failed: {}", f.render(slope::diagnostic::RenderStyle::Short));
                }
            }
            Err(f) => assert!(!f.diagnostics.is_empty(), "a failure without diagnostics"),
        }
    });
    if result.is_err() {
        panic!("the front end panicked on a variant of {name}:\n{text}");
    }
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn truncated_programs_give_diagnostics() {
    for (path, text) in sources() {
        let name = path.display().to_string();
        let boundaries: Vec<usize> = (0..=text.len()).filter(|i| text.is_char_boundary(*i)).collect();
        let step = (boundaries.len() / 40).max(1);
        for &cut in boundaries.iter().step_by(step) {
            compile_must_not_panic(&name, &text[..cut]);
        }
    }
}

#[test]
fn shuffled_programs_give_diagnostics() {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for (path, text) in sources() {
        let name = path.display().to_string();
        let tokens: Vec<&str> = text.split_whitespace().collect();
        if tokens.len() < 2 {
            continue;
        }
        for _ in 0..20 {
            let mut t = tokens.clone();
            // Swap a few random token pairs, drop one, duplicate one.
            for _ in 0..3 {
                let (a, b) = (rng.next() as usize % t.len(), rng.next() as usize % t.len());
                t.swap(a, b);
            }
            let drop = rng.next() as usize % t.len();
            t.remove(drop);
            let dup = rng.next() as usize % t.len();
            t.insert(dup, t[dup]);
            compile_must_not_panic(&name, &t.join("\n"));
        }
    }
}
