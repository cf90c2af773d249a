//! The interrupt flag (the REPL's Ctrl-C): code compiled to poll it — native
//! code built with `poll_interrupt`, the interpreter with
//! `Options::poll_interrupt` — stops with E0208 once it is set, and runs to
//! the end otherwise; code that does not poll never sees it. The flag is
//! process-wide, so these checks live in a test binary of their own, in one
//! test.

use slope::api::{NativeCode, Program};
use slope::diagnostic::{Code, Span};
use slope::driver::no_files;
use slope::ir::interp::{self, Val};
use slope_runtime::native::{clear_interrupt, request_interrupt};
use slope_runtime::{Array, ArrayData};

const SOURCE: &str = "entry sum (n: i64) : i64 = loop s = 0 for i < n do s + i * i\n\
                      entry total (xs: []f64) : f64 = reduce (+) 0.0 (map (\\x -> x * 2.0) xs)\n";

#[test]
fn polling_code_stops_at_an_interrupt_and_other_code_does_not() {
    let program = Program::compile("interrupt.slope", SOURCE, &no_files).expect("the program compiles");
    let polling = NativeCode::build(&program.ir, Span::default(), true).expect("native code");
    let plain = NativeCode::build(&program.ir, Span::default(), false).expect("native code");
    let n = vec![Val::I64(1000)];
    let polling_interp = interp::Options { poll_interrupt: true, ..interp::Options::default() };
    let plain_interp = interp::Options::default();
    let expected = vec![Val::I64((0..1000).map(|i| i * i).sum())];

    clear_interrupt();
    assert_eq!(polling.code.call("sum", &n, u64::MAX).expect("runs"), expected);
    assert_eq!(interp::run(&program.ir, "sum", n.clone(), &polling_interp).expect("runs").0, expected);

    request_interrupt();
    let e = polling.code.call("sum", &n, u64::MAX).unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (Code::E0208, "interrupted"));
    let e = interp::run(&program.ir, "sum", n.clone(), &polling_interp).unwrap_err();
    assert_eq!(e.code, Code::E0208);
    // Combinators poll too: native code in the loops they lower to, the
    // interpreter at each lambda call.
    let xs = vec![Val::Arr(std::rc::Rc::new(Array::new(vec![3], ArrayData::F64(vec![1.0, 2.0, 3.0]))))];
    assert_eq!(polling.code.call("total", &xs, u64::MAX).unwrap_err().code, Code::E0208);
    assert_eq!(interp::run(&program.ir, "total", xs.clone(), &polling_interp).unwrap_err().code, Code::E0208);
    assert_eq!(plain.code.call("total", &xs, u64::MAX).expect("runs"), vec![Val::F64(12.0)]);
    // Code that does not poll runs to the end with the flag set.
    assert_eq!(plain.code.call("sum", &n, u64::MAX).expect("runs"), expected);
    assert_eq!(interp::run(&program.ir, "sum", n.clone(), &plain_interp).expect("runs").0, expected);

    clear_interrupt();
    assert_eq!(polling.code.call("sum", &n, u64::MAX).expect("runs after the flag is cleared"), expected);
}
