//! The interrupt flag (the REPL's Ctrl-C): a program compiled to poll it
//! (`driver::Options::poll_interrupt`) stops with E0208 once it is set, on
//! every back end, and runs to the end otherwise; code that does not poll
//! never sees it. The flag is process-wide, so these checks live in a test
//! binary of their own, in one test.

use slope::api::Program;
use slope::backend::{native, Backend, Executable, Interpreter, Multicore, Sequential};
use slope::diagnostic::{Code, Span};
use slope::driver::no_files;
use slope_runtime::failure::RuntimeError;
use slope_runtime::native::{clear_interrupt, request_interrupt};
use slope_runtime::{ArrayData, Scalar, Value};

const SOURCE: &str = "entry sum (n: i64) : i64 = loop s = 0 for i < n do s + i * i\n\
                      entry total (xs: []f64) : f64 = reduce (+) 0.0 (map (\\x -> x * 2.0) xs)\n";

/// `program` compiled by back end `B`, polling the flag or not.
fn build<B: Backend>(program: &Program, poll: bool) -> B::Executable {
    B::compile(
        &program.ir,
        &mut native::context(Span::default(), slope::driver::Options { poll_interrupt: poll, ..Default::default() }),
    )
    .unwrap_or_else(|_| panic!("{} compiles", B::NAME))
}

fn call(code: &dyn Executable, entry: &str, args: &[Value]) -> Result<Vec<Value>, RuntimeError> {
    code.call(entry, args, u64::MAX, &mut || 0).map(|outcome| outcome.results)
}

#[test]
fn polling_code_stops_at_an_interrupt_and_other_code_does_not() {
    let program = Program::compile("interrupt.slope", SOURCE, &no_files).expect("the program compiles");
    let polling: [Box<dyn Executable>; 3] = [
        Box::new(build::<Interpreter>(&program, true)),
        Box::new(build::<Sequential>(&program, true)),
        Box::new(build::<Multicore>(&program, true)),
    ];
    let plain: [Box<dyn Executable>; 3] = [
        Box::new(build::<Interpreter>(&program, false)),
        Box::new(build::<Sequential>(&program, false)),
        Box::new(build::<Multicore>(&program, false)),
    ];
    let n = [Value::Scalar(Scalar::I64(1000))];
    let expected = vec![Value::Scalar(Scalar::I64((0..1000).map(|i| i * i).sum()))];
    let xs = [Value::array(vec![3], ArrayData::F64(vec![1.0, 2.0, 3.0]))];

    for (polling, plain) in polling.iter().zip(&plain) {
        clear_interrupt();
        assert_eq!(call(polling.as_ref(), "sum", &n).expect("runs"), expected);

        request_interrupt();
        let e = call(polling.as_ref(), "sum", &n).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (Code::E0208, "interrupted"));
        // Combinators poll too: native code in the loops they lower to, the
        // interpreter at each lambda call.
        assert_eq!(call(polling.as_ref(), "total", &xs).unwrap_err().code, Code::E0208);
        assert_eq!(call(plain.as_ref(), "total", &xs).expect("runs"), vec![Value::Scalar(Scalar::F64(12.0))]);
        // Code that does not poll runs to the end with the flag set.
        assert_eq!(call(plain.as_ref(), "sum", &n).expect("runs"), expected);

        clear_interrupt();
        assert_eq!(call(polling.as_ref(), "sum", &n).expect("runs after the flag is cleared"), expected);
    }
}
