//! The pipeline is one list (Note [One pipeline] in `driver.rs`): every pass
//! in `driver::PIPELINE` is a stage `emit` prints, an unknown stage is E0305
//! listing exactly the pipeline, and every time `--timings` reports belongs
//! to a pass of the pipeline or to a loop optimiser pass, in pipeline order.

use slope::api::Program;
use slope::driver;
use slope_tests::file_loader;

const SOURCE: &str = "import \"linalg\"\n\
    entry loss [n] (w: [n]f64) (x: [n]f64) : f64 = dot w x * dot w x\n\
    entry gradient [n] (w: [n]f64) (x: [n]f64) : [n]f64 = grad (\\v -> loss v x) w";

#[test]
fn every_pass_of_the_pipeline_is_a_stage_that_prints() {
    let program = Program::compile("pipeline.slope", SOURCE, &file_loader).expect("compiles");
    let names = driver::stage_names();
    assert_eq!(names.first(), Some(&"ast"));
    assert_eq!(names.last(), Some(&"clif"));
    for stage in &names {
        let text = program.emit(stage, Some("gradient")).unwrap_or_else(|f| panic!("{stage}: {f:?}"));
        assert!(!text.trim().is_empty(), "stage `{stage}` printed nothing");
    }
    let err = program.emit("bogus", None).expect_err("not a stage");
    assert_eq!(err.codes(), vec![slope::diagnostic::Code::E0305]);
    let note = err.diagnostics[0].notes.join("\n");
    assert!(note.contains(&format!("the stages are {}", names.join(", "))), "{note}");
}

#[test]
fn timings_name_the_pipeline_in_order() {
    let program = Program::compile("pipeline.slope", SOURCE, &file_loader).expect("compiles");
    let native = program.native().expect("native code");
    let names = driver::stage_names();
    let loop_passes: Vec<&str> = slope::loops::opt::PASSES.iter().map(|p| p.name).collect();
    // The loop optimiser's time is reported by its passes, in its place.
    let position = |name: &str| match names.iter().position(|n| *n == name) {
        Some(i) => i,
        None if loop_passes.contains(&name) => names.iter().position(|n| *n == "loops").expect("a loops stage"),
        None => panic!("`{name}` is timed but is not a pass of the pipeline"),
    };
    let timed: Vec<&str> = program.timings.iter().chain(&native.timings).map(|(n, _)| *n).collect();
    let order: Vec<usize> = timed.iter().map(|n| position(n)).collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "timings out of pipeline order: {timed:?}");
    for stage in ["ast", "typed", "ir", "ad", "opt", "lowered", "parallel", "strands", "memory", "clif"] {
        assert!(timed.contains(&stage), "`{stage}` is not timed: {timed:?}");
    }
    assert!(loop_passes.iter().all(|p| timed.contains(p)), "{timed:?}");
}
