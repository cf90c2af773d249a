//! The fuzzer in CI: every target for a fixed number of cases from a fixed
//! seed, and no findings but those of the known open defects below (each
//! checked to still show on its own reproducer). About a minute in the test
//! profile on a two-core machine. The cases run as `slope-fuzz` runs them
//! for as long as asked (see `docs/fuzzing.md`): in worker processes, so an
//! abort, a stack overflow or a hang is a finding here too, not the end of
//! the test.
//!
//! A failure lists each new finding with its case — the program, the input —
//! the folder it was saved in, and the command that runs it again.

use slope_fuzz::case::{Case, Record, Target};
use slope_fuzz::corpus::{workspace_root, Corpus};
use slope_fuzz::local;
use slope_fuzz::report::{self, Group};
use slope_fuzz::supervisor;
use slope_fuzz::targets::Outcome;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const SEED: u64 = 20_261_201;

/// Cases per target: sized so that the four take about a minute together.
const CASES: [(Target, u64); 4] =
    [(Target::Check, 12_000), (Target::Native, 2_500), (Target::Engines, 1_500), (Target::Decode, 40_000)];

/// An open defect that the fuzzer finds.
struct Known {
    defect: &'static str,
    /// A small case that shows it (the test checks that it still does).
    reproducer: fn() -> (Target, Case),
    /// Whether a finding (its case and first message line) is this defect.
    matches: fn(&Record, &str) -> bool,
}

/// The open defects: findings of these are expected. When one is fixed,
/// its reproducer no longer shows it and this test says so: remove the
/// entry, and add the reproducer under `tests/programs` (`docs/fuzzing.md`,
/// "From a finding to a test program"). Empty: every defect the fuzzer has
/// found is fixed. A reproducer is a `(Target, Case)`, e.g.
/// `(Target::Check, Case::Program { text: "entry f …".into() })`.
const KNOWN: &[Known] = &[];

#[test]
fn fuzz_targets_find_nothing_new_in_a_bounded_run() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bounded-fuzz");
    let _ = std::fs::remove_dir_all(&out);
    let mut unexpected = Vec::new();
    for (target, cases) in CASES {
        let start = std::time::Instant::now();
        let options = supervisor::Options {
            targets: vec![target],
            time: None,
            cases: Some(cases),
            seed: SEED,
            first: 0,
            out: out.clone(),
            hang: Duration::from_secs(20),
            slow: Duration::from_secs(1),
            program: PathBuf::from(env!("CARGO_BIN_EXE_slope-fuzz")),
        };
        let (tallies, store) = supervisor::run(&options).expect("the fuzzer runs");
        eprintln!("{}\n({:.1} s)", report::table(&tallies), start.elapsed().as_secs_f64());
        let tally = &tallies[0];
        assert_eq!(tally.cases, cases);
        // The mutants must reach past the parser: a target that only ever
        // sees rejected input tests nothing downstream.
        assert!(tally.accepted * 20 >= cases, "{}: only {} of {cases} cases accepted", target.name(), tally.accepted);
        for group in store.groups() {
            let first_line = group.first.1.message.lines().next().unwrap_or_default();
            if !KNOWN.iter().any(|k| (k.matches)(&group.first.0, first_line)) {
                unexpected.push(describe(group));
            }
        }
    }
    assert!(unexpected.is_empty(), "{} new kinds of findings:\n\n{}", unexpected.len(), unexpected.join("\n\n"));
}

/// Each known defect still shows on its reproducer (else it is fixed, and its entry goes).
#[test]
fn known_defects_still_show() {
    let corpus = Arc::new(Corpus::load(&workspace_root()).expect("the seed corpus"));
    for known in KNOWN {
        let (target, case) = (known.reproducer)();
        let record = Record { target, seed: 0, index: 0, case, call: None };
        let shows = match local::replay(corpus.clone(), &record) {
            Outcome::Finding(finding) => (known.matches)(&record, finding.message.lines().next().unwrap_or_default()),
            Outcome::Pass(_) => false,
        };
        assert!(shows, "fixed? \"{}\" no longer shows on its reproducer: remove it from KNOWN", known.defect);
    }
}

fn describe(group: &Group) -> String {
    let (record, finding) = &group.first;
    format!(
        "{} {} ×{} (seed {}, case {}): {}\n{}\nsaved in {:?}\nagain: cargo run --release -p slope-fuzz -- --target {} --seed {} --first {} --cases 1",
        record.target.name(),
        finding.kind.name(),
        group.count,
        record.seed,
        record.index,
        finding.message,
        serde_json::to_string_pretty(&record.to_json()).expect("JSON prints"),
        group.saved,
        record.target.name(),
        record.seed,
        record.index
    )
}
