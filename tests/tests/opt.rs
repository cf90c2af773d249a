//! Golden snapshots of the optimiser: the default schedule brings the classic
//! AD examples to closed form. Each snapshot shows the source, then the
//! optimised entry (`slope emit --stage opt`).

use slope::api::Program;
use slope::diagnostic::RenderStyle;
use slope_tests::file_loader;

fn opt_snapshot(name: &str, src: &str, entry: &str) -> String {
    let p =
        Program::compile("opt.slope", src, &file_loader).unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Rich)));
    let text = p.emit("opt", Some(entry)).unwrap_or_else(|f| panic!("{}", f.render(RenderStyle::Rich)));
    let shown = format!("{src}\n---\n{text}");
    slope_tests::snapshot!(format!("opt__{name}"), shown);
    text
}

#[test]
fn gradient_of_dot_is_the_other_vector() {
    let text = opt_snapshot(
        "grad_dot",
        "entry g [n] (x: [n]f64) (y: [n]f64) : [n]f64 = grad (\\a -> sum (map2 (*) a y)) x",
        "g",
    );
    assert!(text.trim_end().ends_with("in y_1"), "{text}");
    assert!(!text.contains("map"), "{text}");
}

#[test]
fn gradient_of_sum_is_a_replicate_of_the_cotangent() {
    let text = opt_snapshot("grad_sum", "entry g [n] (x: [n]f64) (c: f64) : [n]f64 = vjp (\\a -> sum a) x c", "g");
    assert!(text.contains("replicate"), "{text}");
    assert!(!text.contains("map") && !text.contains("reduce"), "{text}");
}

#[test]
fn a_chain_of_maps_fuses_into_one() {
    let text = opt_snapshot(
        "map_chain",
        "entry f [n] (x: [n]f64) : [n]f64 = map (\\a -> a * 2.0) (map (\\a -> sin a) (map (\\a -> a + 1.0) x))",
        "f",
    );
    assert_eq!(text.matches("map").count(), 1, "{text}");
}

/// The one-hot collapse: `jacfwd` seeds n one-hot directions, O(n²) as written;
/// after the schedule each direction reads one element, and the map of those
/// reads is a slice of `y`: O(n) in all.
#[test]
fn jacfwd_of_dot_is_linear() {
    let text = opt_snapshot(
        "jacfwd_dot",
        "entry j [n] (x: [n]f64) (y: [n]f64) : [n]f64 = jacfwd (\\a -> sum (map2 (*) a y)) x",
        "j",
    );
    // Each direction reads one element of y: the whole Jacobian is `y` itself.
    assert!(text.trim_end().ends_with("in y_1"), "{text}");
    assert!(!text.contains("map") && !text.contains("reduce") && !text.contains("select"), "{text}");
}

/// The gradient of `product` multiplies prefix and suffix products: no division,
/// so a zero element gives the right answer. (Check the values too.)
#[test]
fn gradient_of_product_uses_no_division() {
    let src = "entry g [n] (x: [n]f64) : [n]f64 = grad product x";
    let text = opt_snapshot("grad_product", src, "g");
    assert!(!text.contains(" / "), "{text}");
    let p = Program::compile("opt.slope", src, &file_loader).unwrap();
    let out = p.call_json("g", &serde_json::json!({"x": [2.0, 0.0, 3.0, 4.0]})).unwrap();
    assert_eq!(out, serde_json::json!([0.0, 24.0, 0.0, 0.0]));
}

/// docs/optimiser.md has a row for every rule of the library.
#[test]
fn every_rule_is_documented() {
    let doc =
        std::fs::read_to_string(slope_tests::workspace_dir().join("docs/optimiser.md")).expect("docs/optimiser.md");
    for rule in slope::opt::rules::RULES {
        assert!(doc.contains(&format!("| `{}` |", rule.name)), "docs/optimiser.md does not describe `{}`", rule.name);
    }
}

/// Note [Accumulated rows]: the gradient of k-means with respect to the
/// centroids, whose reverse sweep over the points accumulates a matrix, adds
/// each centroid's row in place (`with [i] +=`) instead of rebuilding the
/// matrix with a map every point; the values are the interpreter's, bit for bit.
#[test]
fn matrix_adjoints_in_a_loop_are_added_row_by_row() {
    let src = "\
entry g [n][k][d] (ps: [n][d]f64) (cs: [k][d]f64) : [k][d]f64 =
  grad (\\c -> sum (map (\\p -> minimum (map (\\q -> sum (map2 (\\a b -> (a - b) * (a - b)) p q)) c)) ps)) cs";
    let text = opt_snapshot("accumulated_rows", src, "g");
    assert!(text.contains("with [i_"), "{text}");
    assert!(!text.contains("[][]f64 = map"), "{text}");
    let p = Program::compile("opt.slope", src, &file_loader).unwrap();
    let input = serde_json::json!({"ps": [[0.5, 1.0], [2.0, -1.0], [0.1, 0.2]], "cs": [[0.0, 0.0], [1.5, -0.5]]});
    let out = p.call_json("g", &input).unwrap();
    assert_eq!(out, serde_json::json!([[-1.2, -2.4], [-1.0, 1.0]]));
}
