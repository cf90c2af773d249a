//! The language test suite's harness.
//!
//! A test program carries its expectations in a comment header (format and
//! checks: `slope::testfile`, which `slope test` uses too). On top of those,
//! every program here gets `insta` snapshots of its AST, typed AST and IR (or
//! of its diagnostics), and its printed AST must re-parse to the same text.
//! Programs that differentiate also get the unary form of their reverse-mode
//! bodies and the derivative program (the `ad` stage).

use slope::api::{Engine, Program};
use slope::diagnostic::RenderStyle;
use std::path::{Path, PathBuf};

pub use slope::testfile::{json_close, parse_header, Case, Expect, Header};

/// The directory of the workspace (for stdlib and examples).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

/// A small deterministic generator (xorshift), so that a randomised test's
/// failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    /// The next number; the seed must not be 0.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The fixture files of one GradBench eval in `tests/fixtures` (see its
/// README), sorted.
pub fn fixture_files(eval_dir: &str) -> Vec<PathBuf> {
    let dir = workspace_dir().join("tests/fixtures").join(eval_dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixtures missing at {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// Reads imports relative to the importing file (as the CLI does).
pub use slope::driver::file_loader;

/// Compiles `src` as the file `name` (imports resolved by [`file_loader`]),
/// or panics with the rendered diagnostics and the source.
pub fn compile_source(name: &str, src: &str) -> Program {
    Program::compile(name, src, &file_loader).unwrap_or_else(|f| panic!("{}\n{src}", f.render(RenderStyle::Rich)))
}

/// The `-- ` comment lines (without the marker) of `entry` printed at
/// `stage`: the decisions a pass prints above the statements they are for.
pub fn stage_comments(p: &Program, stage: &str, entry: &str) -> Vec<String> {
    let text = p.emit(stage, Some(entry)).unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Rich)));
    text.lines().filter_map(|l| l.trim().strip_prefix("-- ").map(str::to_string)).collect()
}

/// `insta::assert_snapshot!(name, value)` into `tests/snapshots/NAME.snap`,
/// from a test file in `tests/tests/` (the path is relative to the file
/// the macro is used in, which insta records as the snapshot's source).
#[macro_export]
macro_rules! snapshot {
    ($name:expr, $value:expr) => {{
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path("../snapshots");
        settings.set_prepend_module_to_snapshot(false);
        settings.bind(|| insta::assert_snapshot!($name, $value));
    }};
}

fn snapshot(name: &str, value: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!(name, value));
}

/// Runs one test program (path relative to `tests/`).
pub fn run_program(relative: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = dir.join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {relative}: {e}"));
    let header = parse_header(&text).unwrap_or_else(|e| panic!("{relative}: bad header: {e}"));
    let stem = relative.trim_start_matches("programs/").trim_end_matches(".slope").replace('/', "__");
    // Files are read from this crate's directory; messages name them relative
    // to it, so that snapshots do not depend on where the repository is.
    let prefix = format!("{}/", dir.display());
    let compiled = Program::compile(relative, &text, &|importer, p| {
        file_loader(&dir.join(importer).display().to_string(), p).map_err(|e| e.replace(&prefix, ""))
    });
    // The expectations (cases, errors, gradchecks) are checked by the library,
    // as `slope test` checks them; this harness adds the stage snapshots.
    let failures = slope::testfile::check_program(relative, &header, compiled.as_ref());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    match compiled {
        Err(failure) => {
            let rendered = failure.render(RenderStyle::Rich);
            snapshot(&format!("{stem}__diagnostic"), &format!("{}\n{}", text, rendered));
        }
        Ok(program) => {
            the_optimiser_preserves_every_case(relative, &program, &header);
            let ast = program.emit("ast", None).expect("ast prints");
            check_round_trip(relative, &ast);
            snapshot(&format!("{stem}__ast"), &ast);
            snapshot(&format!("{stem}__typed"), &program.emit("typed", None).expect("typed prints"));
            let ir = program.emit("ir", None).expect("ir prints");
            snapshot(&format!("{stem}__ir"), &ir);
            // Programs that differentiate: the unary form of their reverse-mode
            // bodies and the derivative program itself.
            if ir.contains(" vjp ") || ir.contains(" jvp ") || ir.contains("= custom") {
                if ir.contains(" vjp ") {
                    snapshot(&format!("{stem}__unary"), &program.emit("unary", None).expect("unary prints"));
                }
                snapshot(&format!("{stem}__ad"), &program.emit("ad", None).expect("ad prints"));
            }
        }
    }
}

/// Cases where the optimiser computes what the raw AD output does not, on
/// purpose: a Jacobian's one-hot seeds are structural zeros, which the
/// one-hot collapse realises (Note [One-hot seeds] in opt/onehot.rs); the
/// raw AD output multiplies an infinite partial by a seed's zero, NaN.
const OPTIMISER_CONVENTIONS: &[(&str, &str)] = &[("programs/basics/ieee_products.slope", "seed_directions")];

/// Every case of the program computes what the raw AD output does, on the
/// interpreter, as `testfile::engines_agree` compares two engines: the same
/// values (within 1e-12; the optimiser reorders no floating-point operation
/// but for `x + 0.0 → x`'s sign of zero), or the same failure as the user
/// reads it — code, message and span (Note [Guards] in opt/guards.rs). Running out of memory (E0207) is left out:
/// which allocation fails first, and when, is each program's memory plan
/// (the raw AD output of `runtime/hoisted_allocation_not_reached.slope`
/// would run 2^63 iterations before it).
fn the_optimiser_preserves_every_case(relative: &str, program: &Program, header: &Header) {
    let raw = program.without_optimiser();
    for case in &header.cases {
        if matches!(&case.expect, Expect::Error(code) if code == "E0207") {
            continue;
        }
        let entry = program.entry_name(case.entry.as_deref()).expect("a case names an entry");
        if OPTIMISER_CONVENTIONS.contains(&(relative, entry.as_str())) {
            continue;
        }
        let optimised = program.call_json_on(Engine::Interp, &entry, &case.input);
        let unoptimised = raw.call_json_on(Engine::Interp, &entry, &case.input);
        // The engines' agreement is the same comparison (here "jit" is the
        // optimised program, "interpreter" the unoptimised one).
        slope::testfile::engines_agree(&optimised, &unoptimised).unwrap_or_else(|e| {
            panic!("{relative}: {entry} {}: the optimised and the unoptimised program differ: {e}", case.input)
        });
    }
}

fn check_round_trip(relative: &str, printed: &str) {
    let mut sources = slope::diagnostic::SourceMap::new();
    let file = sources.add("printed", printed);
    let reparsed = slope::syntax::parser::parse_module(printed, file)
        .unwrap_or_else(|d| panic!("{relative}: the printed AST does not parse: {}\n{printed}", d.message));
    let again = slope::syntax::print::print_module(&reparsed, false);
    assert_eq!(again.trim(), printed.trim(), "{relative}: printing is not stable under re-parsing");
}
