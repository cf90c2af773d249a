//! The C API: examples/c/gradient.c built with the system C compiler against
//! `include/slope.h` and this crate's shared library, run, and its output
//! checked against the gradient computed here by hand; and the API's checks
//! of bad arguments (NULLs, negative sizes, wrong dtypes, bool bytes), called
//! from Rust.

use slope_c::*;
use std::ffi::{c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

/// The directory holding `libslope_c.so` for this build.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    let deps = exe.parent().expect("target/PROFILE/deps");
    let found = [deps.parent().expect("target/PROFILE"), deps].into_iter().find(|d| d.join("libslope_c.so").exists());
    found.unwrap_or_else(|| panic!("no libslope_c.so near {}", deps.display())).to_path_buf()
}

fn rosenbrock_gradient(x: &[f64]) -> Vec<f64> {
    let mut g = vec![0.0; x.len()];
    for i in 0..x.len() - 1 {
        let a = x[i + 1] - x[i] * x[i];
        g[i] += -400.0 * a * x[i] - 2.0 * (1.0 - x[i]);
        g[i + 1] += 200.0 * a;
    }
    g
}

#[test]
fn the_c_example_builds_runs_and_computes_the_gradient() {
    let root = root();
    let lib = library_dir();
    let out = std::env::temp_dir().join(format!("slope-c-example-{}", std::process::id()));
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .arg(root.join("examples/c/gradient.c"))
        .arg("-I")
        .arg(root.join("c/include"))
        .arg("-L")
        .arg(&lib)
        .arg("-lslope_c")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-Wall")
        .arg("-Werror")
        .arg("-o")
        .arg(&out)
        .status()
        .expect("a C compiler (cc) runs");
    assert!(status.success(), "the C example does not build");
    let run = Command::new(&out).arg(root.join("examples/c/rosenbrock.slope")).output().expect("runs");
    let _ = std::fs::remove_file(&out);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let line = |key: &str| -> Vec<f64> {
        let l = stdout.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no `{key}` in {stdout}"));
        l[key.len()..].split_whitespace().map(|w| w.parse().expect("a number")).collect()
    };
    let x = [-1.2, 1.0, 0.5, 2.0];
    let want = rosenbrock_gradient(&x);
    let got = line("gradient");
    assert_eq!(got.len(), 4);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{got:?} vs {want:?}");
    }
    let value = line("value")[0];
    let after = line("after 1000 steps")[0];
    assert!(after < value / 10.0, "gradient descent did not descend: {value} -> {after}");
    assert!(stdout.contains("error E0302: `x` must be []f64, but the leaf's dtype is SLOPE_I64 (2)"), "{stdout}");
}

/// Compiles `source`, panicking with the diagnostic on failure.
fn compiled(source: &str) -> *mut SlopeProgram {
    let name = CString::new("api.slope").unwrap();
    let text = CString::new(source).unwrap();
    let mut err = std::ptr::null_mut();
    // SAFETY: valid strings and error slot.
    let p = unsafe { slope_compile_source(name.as_ptr(), text.as_ptr(), 1, &mut err) };
    assert!(!p.is_null(), "{}", unsafe { error_text(err) });
    p
}

/// The code and diagnostic of an error, freeing it.
unsafe fn error_text(err: *mut SlopeError) -> String {
    let code = unsafe { CStr::from_ptr(slope_error_code(err)) }.to_string_lossy().into_owned();
    let text = unsafe { CStr::from_ptr(slope_error_diagnostic(err)) }.to_string_lossy().into_owned();
    unsafe { slope_error_free(err) };
    format!("{code}|{text}")
}

/// Calls `entry` on `args`: the result or the error's `code|diagnostic`.
fn call(p: *mut SlopeProgram, entry: &str, args: &[SlopeArg]) -> Result<*mut SlopeValue, String> {
    let entry = CString::new(entry).unwrap();
    let mut result = std::ptr::null_mut();
    let mut err = std::ptr::null_mut();
    // SAFETY: live program, valid leaves.
    let status = unsafe { slope_call(p, entry.as_ptr(), args.as_ptr(), args.len(), &mut result, &mut err) };
    if status == 0 {
        Ok(result)
    } else {
        assert!(result.is_null());
        Err(unsafe { error_text(err) })
    }
}

fn leaf(dtype: i32, shape: &[i64], data: *const c_void) -> SlopeArg {
    SlopeArg { dtype, rank: shape.len() as i64, shape: shape.as_ptr(), data }
}

#[test]
fn values_of_every_kind_cross_the_c_boundary() {
    let p = compiled(
        "entry count [n] (bs: [n]bool) : i64 = sum (map (\\b -> if b then 1 else 0) bs)\n\
         entry pair (r: {x: f64, k: i64}) (t: (f32, bool)) : (f64, {k: i64, t: bool}) = (r.x, {k = r.k, t = t.1})\n\
         entry tip (v: [3]f64) : f64 = v[2]\n\
         entry at [n] (xs: [n]f64) (k: i64) : f64 = xs[k]",
    );
    // Bool bytes: any non-zero byte is true, never read as a Rust bool.
    let bytes: [u8; 4] = [0, 1, 7, 255];
    let r = call(p, "count", &[leaf(3, &[4], bytes.as_ptr() as *const c_void)]).unwrap();
    // SAFETY: a live scalar result of type i64.
    unsafe {
        assert_eq!((slope_value_rank(r), slope_value_dtype(r), slope_value_count(r)), (0, 2, 1));
        assert_eq!(*(slope_value_data(r) as *const i64), 3);
        slope_value_free(r);
    }
    // A record and a tuple: one leaf per field (in the order of the field
    // names, as Slope orders a record's fields) or item.
    let (x, k, f, b) = (2.5f64, 7i64, 1.5f32, 1u8);
    let args = [
        leaf(2, &[], &k as *const i64 as *const c_void),
        leaf(0, &[], &x as *const f64 as *const c_void),
        leaf(1, &[], &f as *const f32 as *const c_void),
        leaf(3, &[], &b as *const u8 as *const c_void),
    ];
    let r = call(p, "pair", &args).unwrap();
    // SAFETY: a live tuple result.
    unsafe {
        assert_eq!((slope_value_rank(r), slope_value_count(r)), (-1, 2));
        assert!(slope_value_field(r, 0).is_null());
        assert_eq!(*(slope_value_data(slope_value_item(r, 0)) as *const f64), 2.5);
        let rec = slope_value_item(r, 1);
        assert_eq!(CStr::from_ptr(slope_value_field(rec, 1)).to_str().unwrap(), "t");
        assert_eq!(*(slope_value_data(slope_value_item(rec, 0)) as *const i64), 7);
        assert!(slope_value_item(rec, 2).is_null());
        slope_value_free(r);
    }
    let xs = [1.0f64, 2.0, 3.0];
    let xp = xs.as_ptr() as *const c_void;
    let bad: Vec<(Vec<SlopeArg>, &str, &str)> = vec![
        (vec![leaf(2, &[3], xp)], "count", "E0302"),
        (vec![leaf(0, &[4], xp)], "tip", "length 3"),
        (vec![leaf(0, &[3, 1], xp)], "tip", "rank 2"),
        (vec![leaf(0, &[-3], xp)], "tip", "negative size"),
        (vec![leaf(0, &[3], std::ptr::null())], "tip", "data is NULL"),
        (vec![SlopeArg { dtype: 0, rank: 1, shape: std::ptr::null(), data: xp }], "tip", "shape is NULL"),
        (vec![leaf(0, &[i64::MAX], xp), leaf(2, &[], &k as *const i64 as *const c_void)], "at", "largest array"),
        (
            vec![leaf(0, &[1 << 41], std::ptr::null()), leaf(2, &[], &k as *const i64 as *const c_void)],
            "at",
            "largest array",
        ),
        (vec![leaf(0, &[3], xp), leaf(0, &[3], xp)], "tip", "takes 1 argument leaves, 2 given"),
        (vec![], "tip", "takes 1 argument leaves, 0 given"),
        (vec![leaf(7, &[3], xp)], "tip", "dtype is invalid (7)"),
        (vec![leaf(0, &[3], xp)], "nope", "E0301"),
        (vec![leaf(0, &[3], xp), leaf(2, &[], &k as *const i64 as *const c_void)], "at", "E0201"),
    ];
    for (args, entry, words) in bad {
        let err = call(p, entry, &args).expect_err(words);
        assert!(err.contains(words), "{entry}: {err}");
        assert!(err.contains("error[E0"), "{err}");
    }
    // Data at any alignment is read byte for byte.
    let mut bytes = vec![0u8; 1 + 3 * 8];
    for (i, v) in [1.0f64, 2.0, 9.5].iter().enumerate() {
        bytes[1 + 8 * i..9 + 8 * i].copy_from_slice(&v.to_ne_bytes());
    }
    let r = call(p, "tip", &[leaf(0, &[3], bytes[1..].as_ptr() as *const c_void)]).unwrap();
    // SAFETY: a live f64 scalar result.
    unsafe {
        assert_eq!(*(slope_value_data(r) as *const f64), 9.5);
        assert!(slope_value_shape(r).is_null());
        slope_value_free(r);
    }
    // SAFETY: NULLs are refused, not dereferenced.
    unsafe {
        let mut result = std::ptr::null_mut();
        assert_ne!(
            slope_call(std::ptr::null(), std::ptr::null(), std::ptr::null(), 0, &mut result, std::ptr::null_mut()),
            0
        );
        assert_eq!(slope_entry_count(std::ptr::null()), 0);
        assert_eq!(slope_entry_count(p), 4);
        assert_eq!(CStr::from_ptr(slope_entry_name(p, 3)).to_str().unwrap(), "at");
        assert!(slope_entry_name(p, 4).is_null());
        assert_ne!(slope_set_threads(p, 0, std::ptr::null_mut()), 0);
        assert_eq!(slope_set_threads(p, 2, std::ptr::null_mut()), 0);
        slope_program_free(p);
        slope_program_free(std::ptr::null_mut());
    }
}

#[test]
fn compile_errors_carry_code_and_diagnostic() {
    let name = CString::new("bad.slope").unwrap();
    let text = CString::new("entry f (x: f64) : f64 = y").unwrap();
    let mut err = std::ptr::null_mut();
    // SAFETY: valid strings and error slot.
    let p = unsafe { slope_compile_source(name.as_ptr(), text.as_ptr(), 0, &mut err) };
    assert!(p.is_null());
    let msg = unsafe { CStr::from_ptr(slope_error_message(err)) }.to_string_lossy().into_owned();
    let text = unsafe { error_text(err) };
    assert!(text.starts_with("E0101|") && text.contains("bad.slope"), "{text}");
    assert!(msg.contains("`y`"), "{msg}");
    let missing = CString::new("/nonexistent/model.slope").unwrap();
    // SAFETY: as above.
    let p = unsafe { slope_compile_file(missing.as_ptr(), 0, &mut err) };
    assert!(p.is_null() && unsafe { error_text(err) }.starts_with("E0303|"));
    let p = unsafe { slope_compile_source(name.as_ptr(), name.as_ptr(), 70000, &mut err) };
    assert!(p.is_null() && unsafe { error_text(err) }.starts_with("E0305|"));
}

#[test]
fn options_choose_checkpointing_and_the_save_policy() {
    let name = CString::new("options.slope").unwrap();
    let text = CString::new(
        "entry g (x: f64) (n: i64) : f64 = grad (\\a -> loop y = a for i < n do sin y * 1.1 + exp (y * 0.01)) x",
    )
    .unwrap();
    let gradient = |options: *const SlopeOptions| -> f64 {
        let mut err = std::ptr::null_mut();
        // SAFETY: valid strings, options and error slot.
        let p = unsafe { slope_compile_source_with(name.as_ptr(), text.as_ptr(), options, &mut err) };
        assert!(!p.is_null(), "{}", unsafe { error_text(err) });
        let (x, n) = (0.7f64, 9i64);
        let args = [leaf(0, &[], &x as *const f64 as *const c_void), leaf(2, &[], &n as *const i64 as *const c_void)];
        let r = call(p, "g", &args).unwrap();
        // SAFETY: a live f64 scalar result, freed once.
        let g = unsafe { *(slope_value_data(r) as *const f64) };
        unsafe { slope_value_free(r) };
        unsafe { slope_program_free(p) };
        g
    };
    let want = gradient(std::ptr::null());
    for (checkpoint, save, reassociate) in [(1, "host-calls", 0), (0, "nothing", 1), (1, "everything", 1)] {
        let save = CString::new(save).unwrap();
        let options = SlopeOptions { threads: 2, checkpoint, save: save.as_ptr(), reassociate };
        let got = gradient(&options);
        assert!((got - want).abs() <= 1e-12 * want.abs(), "{got} vs {want}");
    }
    let bad = CString::new("sometimes").unwrap();
    let options = SlopeOptions { threads: 0, checkpoint: 0, save: bad.as_ptr(), reassociate: 0 };
    let mut err = std::ptr::null_mut();
    // SAFETY: as above.
    let p = unsafe { slope_compile_source_with(name.as_ptr(), text.as_ptr(), &options, &mut err) };
    let e = unsafe { error_text(err) };
    assert!(p.is_null() && e.starts_with("E0305|") && e.contains("host-calls"), "{e}");
}
