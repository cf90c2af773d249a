//! The seed corpus: what the mutators start from.
//!
//! Input: the workspace on disk, read once when a fuzzing process starts.
//! Output: a [`Corpus`] — every `.slope` file under `tests/programs`,
//! `examples` and `stdlib` (sorted by path, so seeds are numbered the same on
//! every machine); the entry inputs those programs come with (their
//! `-- input:` header lines, the GradBench fixtures of `tests/fixtures` for
//! `examples/gradbench`, and `examples/data`); and the words and operators
//! that occur in the programs, which mutations splice in.
//! Invariant: nothing here runs the compiler.

use crate::mutate::tokens::{self, Kind};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One seed program.
#[derive(Clone, Debug)]
pub struct ProgramSeed {
    /// Relative to the workspace root, with `/` separators.
    pub path: String,
    pub text: String,
}

/// An entry input that came with a seed program.
#[derive(Clone, Debug)]
pub struct InputSeed {
    /// Index into [`Corpus::programs`].
    pub program: usize,
    /// The entry (`None`: the program's only entry, or `main`).
    pub entry: Option<String>,
    /// The JSON text, as `slope run --input` would read it.
    pub json: String,
}

#[derive(Debug, Default)]
pub struct Corpus {
    pub programs: Vec<ProgramSeed>,
    pub inputs: Vec<InputSeed>,
    /// The programs with entries that are meant to compile (not `tests/programs/errors`).
    pub runnable: Vec<usize>,
    /// Identifiers, keywords and builtins seen in the programs.
    pub words: Vec<String>,
    /// Operator spellings seen in the programs.
    pub operators: Vec<String>,
}

/// Fixture inputs larger than this are left out: decoding them would cost
/// more than the mutations they allow.
const MAX_FIXTURE_BYTES: u64 = 32 * 1024;

/// The workspace this crate was built in (`fuzz/..`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("fuzz/ is in the workspace").to_path_buf()
}

impl Corpus {
    /// Reads the seeds under `root`.
    pub fn load(root: &Path) -> Result<Corpus, String> {
        let mut corpus = Corpus::default();
        for dir in ["tests/programs", "examples", "stdlib"] {
            for path in files_with_extension(&root.join(dir), "slope") {
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                corpus.programs.push(ProgramSeed { path: relative(root, &path), text });
            }
        }
        corpus.programs.sort_by(|a, b| a.path.cmp(&b.path));
        if corpus.programs.len() < 10 {
            return Err(format!("expected the test programs and examples under {}", root.display()));
        }
        corpus.runnable = (0..corpus.programs.len())
            .filter(|&i| {
                let p = &corpus.programs[i];
                p.text.contains("entry ") && !p.path.starts_with("tests/programs/errors/")
            })
            .collect();
        corpus.add_header_inputs();
        corpus.add_fixture_inputs(root);
        corpus.add_example_data(root);
        corpus.collect_vocabulary();
        Ok(corpus)
    }

    /// The seed program at `path` (relative to the root), if any.
    pub fn program_index(&self, path: &str) -> Option<usize> {
        self.programs.iter().position(|p| p.path == path)
    }

    /// `-- input:` lines of the test programs, with the entry they belong to.
    fn add_header_inputs(&mut self) {
        for (index, program) in self.programs.iter().enumerate() {
            let Ok(header) = slope::testfile::parse_header(&program.text) else { continue };
            for case in header.cases {
                let json = case.input.to_string();
                self.inputs.push(InputSeed { program: index, entry: case.entry, json });
            }
        }
    }

    /// `tests/fixtures/<eval>/<function>-*.json`: the `input` field, for the
    /// entry `<function>` of `examples/gradbench/<eval>.slope`.
    fn add_fixture_inputs(&mut self, root: &Path) {
        for path in files_with_extension(&root.join("tests/fixtures"), "json") {
            let small = std::fs::metadata(&path).is_ok_and(|m| m.len() <= MAX_FIXTURE_BYTES);
            let eval = path.parent().and_then(|d| d.file_name()).and_then(|n| n.to_str());
            let Some(program) = eval.and_then(|e| self.program_index(&format!("examples/gradbench/{e}.slope"))) else {
                continue;
            };
            let Some(fixture) = small.then(|| std::fs::read_to_string(&path).ok()).flatten() else { continue };
            let Ok(fixture) = serde_json::from_str::<serde_json::Value>(&fixture) else { continue };
            let entry = fixture["function"].as_str().map(str::to_string);
            self.inputs.push(InputSeed { program, entry, json: fixture["input"].to_string() });
        }
    }

    /// `examples/data/<name>.json` for `examples/<name>.slope`.
    fn add_example_data(&mut self, root: &Path) {
        for path in files_with_extension(&root.join("examples/data"), "json") {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            let Some(program) = self.program_index(&format!("examples/{stem}.slope")) else { continue };
            let Ok(json) = std::fs::read_to_string(&path) else { continue };
            self.inputs.push(InputSeed { program, entry: None, json });
        }
    }

    fn collect_vocabulary(&mut self) {
        let (mut words, mut operators) = (BTreeSet::new(), BTreeSet::new());
        for program in &self.programs {
            for token in tokens::tokenize(&program.text) {
                match token.kind {
                    Kind::Word => words.insert(token.text.to_string()),
                    Kind::Operator => operators.insert(token.text.to_string()),
                    _ => false,
                };
            }
        }
        self.words = words.into_iter().collect();
        self.operators = operators.into_iter().collect();
    }
}

/// Every file under `dir` (recursively) with the given extension, sorted.
fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().and_then(|e| e.to_str()) == Some(extension) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}
