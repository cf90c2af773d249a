//! Generates the parser from `grammar/slope.lalrpop` (the grammar lives at the top level, per the design card).
fn main() {
    lalrpop::Configuration::new()
        .set_in_dir("../grammar")
        .set_out_dir(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .emit_rerun_directives(true)
        .process()
        .expect("grammar/slope.lalrpop must generate a parser");
}
