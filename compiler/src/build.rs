//! `slope build`: a Slope program as a C library, compiled ahead of time.
//!
//! Input: a compiled [`Program`] and a [`Request`] (output path, entries,
//! library name). Output: `libNAME.so` (shared) or `libNAME.a` (static),
//! and the header `NAME.h` beside it.
//!
//! Steps: the program's loop form after the `parallel` stage (what the JIT
//! compiles) → the library's description ([`Library`]: entry types, argument
//! and result words, failure sites with their diagnostics rendered around a
//! hole for the run-time message) → an object file (`jit::aot`) → the system
//! C compiler driver `cc` links it with `libslope_capi.a` (the runtime) into
//! a shared library, or `ar` makes a static library of it alone, with the
//! runtime archive copied beside it.
//!
//! Invariants:
//! - An entry's C function is `NAME_` + the entry's name with every
//!   character outside `[A-Za-z0-9_]` replaced by `_`; two entries that
//!   spell the same are refused (E0309), never silently merged.
//! - A failure reads as in the CLI: the same code, message and short
//!   diagnostic (`file:line:col: error[CODE]: message`); the rendering is
//!   the compiler's own, made at build time (Note [Diagnostics with a hole]).
//! - A shared library exports only the functions of its header; the
//!   runtime inside it is hidden, so two Slope libraries in one process
//!   keep their own runtime state. (The value and error accessors of
//!   `slope_values.h` are exported by each, and a C program binds them to
//!   the first library loaded: values of libraries built by one version of
//!   Slope have the same layout.)
//! - Names: a library is never called `slope` or `slope_…` (the runtime's
//!   prefix); an entry's C name never equals another exported name or the
//!   context type `NAME_context`; a header's argument names avoid C and C++
//!   keywords and the header's own names.

use crate::api::{Failure, Program};
use crate::diagnostic::{Code, Diagnostic, RenderStyle, Span};
use crate::ir::interp::RuntimeError;
use crate::jit::aot::{self, Exports};
use crate::values::value_type;
use slope_runtime::aot::{Entry, Library, Rendered, Site};
use slope_runtime::ValueType;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The header every library's header starts with: values and errors.
const VALUES_HEADER: &str = include_str!("../../c/include/slope_values.h");

/// What to build.
pub struct Request {
    /// `libNAME.so` or `libNAME.a`.
    pub output: PathBuf,
    /// The C prefix (default: `NAME` of the output file).
    pub name: Option<String>,
    /// The entries to export (default: all, in definition order).
    pub entries: Vec<String>,
    /// The header to write (default: `NAME.h` beside the output).
    pub header: Option<PathBuf>,
    /// `libslope_capi.a` (default: `SLOPE_CAPI_LIB`, else beside the `slope` executable).
    pub runtime: Option<PathBuf>,
}

/// What was built.
pub struct Built {
    pub library: PathBuf,
    pub header: PathBuf,
    /// The exported C functions.
    pub functions: Vec<String>,
}

/// Shared library or static archive, by the output's extension.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Shared,
    Static,
}

fn fail(code: Code, message: String) -> Failure {
    let d = Diagnostic::error(code, message, Span::default(), "");
    Failure { sources: Default::default(), diagnostics: vec![d] }
}

fn build_error(message: String) -> Failure {
    fail(Code::E0309, message)
}

/// Builds the library `request` asks for from `program`.
pub fn build(program: &Program, request: &Request) -> Result<Built, Failure> {
    let (kind, name) = kind_and_name(request)?;
    let runtime = find_runtime(request.runtime.as_deref())?;
    let names: Vec<String> = if request.entries.is_empty() {
        program.entries().into_iter().map(String::from).collect()
    } else {
        request.entries.clone()
    };
    if names.is_empty() {
        return Err(fail(Code::E0301, "the program has no `entry` definitions to export".into()));
    }
    let mut loops = program.native_loops()?;
    let mut funcs = Vec::with_capacity(names.len());
    for n in &names {
        program.entry_signature(n)?;
        let f = loops.funcs.iter().find(|f| &f.name == n).cloned();
        funcs.push(f.ok_or_else(|| fail(Code::E0900, format!("internal compiler error: no native code for `{n}`")))?);
    }
    // The entries these call, not exported (the library's functions after
    // the exported ones, Note [Entries called by entries] in ir/calls.rs).
    let mut k = 0;
    while k < funcs.len() {
        // Calls stand in a function's top-level block (`loops::verify`).
        let called: Vec<String> = funcs[k]
            .body
            .iter()
            .filter_map(|i| match i {
                crate::loops::Inst::Call { func, .. } => Some(func.clone()),
                _ => None,
            })
            .collect();
        for c in called {
            if !funcs.iter().any(|f| f.name == c) {
                let f = loops.funcs.iter().find(|f| f.name == c).cloned();
                funcs.push(
                    f.ok_or_else(|| fail(Code::E0900, format!("internal compiler error: no native code for `{c}`")))?,
                );
            }
        }
        k += 1;
    }
    loops.funcs = funcs;
    let entries = loops.funcs.iter().map(|f| describe(program, &f.name, f)).collect::<Result<_, _>>()?;
    let library = Library {
        name: name.clone(),
        while_limit: i64::try_from(program.options.while_limit).unwrap_or(i64::MAX),
        entries,
        segments: loops.segments.iter().map(|s| s.plan.clone()).collect(),
    };
    let exports = exports(&name, &names)?;
    let object = aot::object(&loops, &library, &exports)
        .map_err(|e| fail(Code::E0900, format!("internal compiler error: {e}")))?;
    let header_path = request.header.clone().unwrap_or_else(|| request.output.with_file_name(format!("{name}.h")));
    let header = header(program, &library, &exports);
    write(&header_path, header.as_bytes())?;
    link(kind, &object, &name, &runtime, &request.output, &exports)?;
    let functions = exports.all().into_iter().map(String::from).collect();
    Ok(Built { library: request.output.clone(), header: header_path, functions })
}

/// The kind of library the output path asks for, and the C prefix.
fn kind_and_name(request: &Request) -> Result<(Kind, String), Failure> {
    let file = request.output.file_name().and_then(|f| f.to_str()).unwrap_or("");
    let (kind, stem) = if let Some(stem) = file.strip_suffix(".so") {
        (Kind::Shared, stem)
    } else if let Some(stem) = file.strip_suffix(".a") {
        (Kind::Static, stem)
    } else {
        let message = format!("the library `{}` must end in .so (shared) or .a (static)", request.output.display());
        return Err(fail(Code::E0305, message));
    };
    let name = match &request.name {
        Some(n) => n.clone(),
        None => stem.strip_prefix("lib").unwrap_or(stem).to_string(),
    };
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        let message = format!("the library name `{name}` is not a C identifier (give one with --name)");
        return Err(fail(Code::E0305, message));
    }
    if name == "slope" || name.starts_with("slope_") {
        // Its functions would clash with the runtime's (`slope_call`, …).
        let message =
            format!("the library name `{name}` is reserved for Slope's own functions (give another with --name)");
        return Err(fail(Code::E0305, message));
    }
    Ok((kind, name))
}

/// `libslope_capi.a`: as asked, else `SLOPE_CAPI_LIB`, else beside the
/// running executable (where `cargo build` puts it).
fn find_runtime(asked: Option<&Path>) -> Result<PathBuf, Failure> {
    let candidate = match (asked, std::env::var_os("SLOPE_CAPI_LIB")) {
        (Some(p), _) => Some(p.to_path_buf()),
        (None, Some(p)) => Some(PathBuf::from(p)),
        (None, None) => std::env::current_exe().ok().and_then(|e| Some(e.parent()?.join("libslope_capi.a"))),
    };
    match candidate {
        Some(p) if p.is_file() => Ok(p),
        p => Err(build_error(format!(
            "cannot find the runtime library libslope_capi.a{}: build it with `cargo build --release` \
             (it goes beside the `slope` executable), or name it with --runtime or SLOPE_CAPI_LIB",
            p.map(|p| format!(" (looked for {})", p.display())).unwrap_or_default()
        ))),
    }
}

/// The description of entry `name`, compiled as `f`.
fn describe(program: &Program, name: &str, f: &crate::loops::Func) -> Result<Entry, Failure> {
    let sig = program.entry_signature(name)?;
    let params: Vec<(String, ValueType)> = sig.params.iter().map(|(n, t)| (n.clone(), value_type(t))).collect();
    if let Some((p, _)) = params.iter().find(|(_, t)| has_array_of_structures(t)) {
        return Err(build_error(format!(
            "entry `{name}` takes `{p}`, an array of tuples or records, which C callers cannot pass yet \
             (leave the entry out: name the others with --entry)"
        )));
    }
    let leaves = |ls: &[crate::loops::Leaf]| ls.iter().map(|l| (l.elem.elem_type(), l.rank)).collect::<Vec<_>>();
    let sites = f
        .sites
        .iter()
        .map(|s| {
            let e = RuntimeError { code: s.code, span: s.span, message: HOLE.into() };
            let d = Failure { sources: program.sources.clone(), diagnostics: vec![e.into()] };
            Site { code: s.code.as_str().into(), message: s.message.clone(), rendered: around_hole(&d) }
        })
        .collect();
    Ok(Entry {
        name: name.into(),
        params,
        result: value_type(&sig.ret),
        param_leaves: leaves(&f.param_leaves),
        result_leaves: leaves(&f.result_leaves),
        sites,
        input_error: around_hole(&program.invalid_input(name, HOLE.into())),
    })
}

/// The message of a diagnostic rendered at build time (Note [Diagnostics with a hole]).
const HOLE: &str = "\u{1}slope-message\u{1}";

fn around_hole(failure: &Failure) -> Rendered {
    let text = failure.render(RenderStyle::Short);
    match text.split_once(HOLE) {
        Some((before, after)) => Rendered { before: before.into(), after: after.replacen(HOLE, "", usize::MAX) },
        None => Rendered { before: format!("{}\n", text.trim_end()), after: String::new() },
    }
}

// Note [Diagnostics with a hole]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A run-time failure's message depends on values (`index 7 out of bounds
// for dimension 0 of size 5`), but its rendering — file, line and column,
// the code, the layout of a short diagnostic — is the compiler's and needs
// the source. So `slope build` renders each failure site's diagnostic once,
// with a placeholder message that cannot occur in source text, and stores
// the text before and after it; at run time the library's runtime renders
// the message (`slope_runtime::failure`, the same code the JIT uses) and
// puts it in the hole. An error from an ahead-of-time library therefore
// reads exactly as the same error from `slope run` or `libslope_c`, without
// the library carrying the source or a diagnostic renderer.

/// The C names of the library's functions.
fn exports(name: &str, entries: &[String]) -> Result<Exports, Failure> {
    let exports = Exports {
        context_new: format!("{name}_context_new"),
        context_free: format!("{name}_context_free"),
        set_threads: format!("{name}_context_set_threads"),
        call: format!("{name}_call"),
        entries: entries.iter().map(|e| format!("{name}_{}", c_identifier(e))).collect(),
    };
    let context_type = format!("{name}_context");
    let all: Vec<&str> = std::iter::once(context_type.as_str()).chain(exports.all()).collect();
    let own = all.len() - entries.len();
    let who = |k: usize| match k.checked_sub(own) {
        Some(e) => format!("entry `{}`", entries[e]),
        None => "the library's own function".to_string(),
    };
    let mut seen = crate::hash::HashMap::default();
    for (k, f) in all.iter().enumerate() {
        if let Some(other) = seen.insert(*f, k) {
            return Err(build_error(format!("{} and {} would both be the C function `{f}`", who(other), who(k))));
        }
    }
    Ok(exports)
}

/// `text` with every character outside `[A-Za-z0-9_]` replaced by `_`.
fn c_identifier(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// The header: values and errors, then the library's functions.
fn header(program: &Program, library: &Library, exports: &Exports) -> String {
    let name = &library.name;
    let guard = format!("SLOPE_LIBRARY_{name}_H");
    let mut out = format!(
        "/* {name}: a Slope program compiled ahead of time by `slope build`.\n \
         *\n \
         * Link with -l{name} (lib{name}.so), or with lib{name}.a and the runtime beside\n \
         * it: -l{name} -lslope_capi -lpthread -ldl -lm.\n \
         * Make a context, call entries with it, free it; docs/c.md has an example.\n \
         * A context runs one call at a time (calls on a shared context wait\n \
         * for each other); use a context per thread to call from several\n \
         * threads at once. Parallel loops inside a call use Slope's thread\n \
         * pool; results are bit-identical for every thread count.\n \
         */\n\
         #ifndef {guard}\n#define {guard}\n\n"
    );
    out.push_str(VALUES_HEADER);
    out.push_str(&format!(
        "\n#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n\
         typedef struct {name}_context {name}_context;\n\n\
         /* A context for calls; `threads` for parallel loops, 0 for the default\n \
         * (SLOPE_THREADS, else every core). NULL and an error (E0305) on failure. */\n\
         {name}_context *{}(int threads, slope_error **error);\n\n\
         /* Frees a context; no call on it may be running. */\n\
         void {}({name}_context *context);\n\n\
         /* Parallel loops use `threads` threads (1 to 65535) from the next call on. */\n\
         int {}({name}_context *context, int threads, slope_error **error);\n\n\
         /* Calls the entry named `entry` on `nargs` argument leaves in one array, as\n \
         * slope_call does in libslope_c (E0301 for an unknown name). */\n\
         int {}({name}_context *context, const char *entry, const slope_arg *args, size_t nargs,\n \
         slope_value **result, slope_error **error);\n",
        exports.context_new, exports.context_free, exports.set_threads, exports.call
    ));
    for (entry, c_name) in library.entries.iter().zip(&exports.entries) {
        out.push('\n');
        out.push_str(&entry_declaration(program, entry, c_name, name));
    }
    out.push_str(&format!("\n#ifdef __cplusplus\n}}\n#endif\n\n#endif /* {guard} */\n"));
    out
}

/// The comment and prototype of one entry's function.
fn entry_declaration(program: &Program, entry: &Entry, c_name: &str, name: &str) -> String {
    let sig = program.entry_signature(&entry.name).expect("described above");
    let params: Vec<String> = sig.params.iter().map(|(n, t)| format!("({n}: {t})")).collect();
    let mut leaves = Vec::new();
    for (n, ty) in &entry.params {
        leaf_names(&c_identifier(n), ty, &mut leaves);
    }
    let mut args = vec![format!("{name}_context *context")];
    let mut notes = Vec::new();
    assert_eq!(leaves.len(), entry.param_leaves.len(), "one C argument per leaf (arrays of structures are refused)");
    for (leaf, (elem, rank)) in leaves.iter().zip(&entry.param_leaves) {
        let mut arg = leaf.clone();
        while RESERVED.contains(&arg.as_str())
            || arg.starts_with("slope_")
            || arg.starts_with(&format!("{name}_"))
            || args.iter().any(|a| a.ends_with(&format!(" *{arg}")))
        {
            arg.push('_');
        }
        notes.push(format!(" *   {arg}: {} of rank {rank}", dtype_name(*elem)));
        args.push(format!("const slope_arg *{arg}"));
    }
    args.push("slope_value **result".into());
    args.push("slope_error **error".into());
    format!(
        "/* entry {} {} : {}\n * Arguments (one slope_arg per leaf; 0 returned on success, with *result\n * the caller's to free):\n{}{} */\nint {c_name}({});\n",
        entry.name,
        params.join(" "),
        sig.ret,
        notes.join("\n"),
        if notes.is_empty() { " *   (none)\n" } else { "\n" },
        args.join(", ")
    )
}

/// The C names of the leaves of a parameter `path` of type `ty`, in order.
fn leaf_names(path: &str, ty: &ValueType, out: &mut Vec<String>) {
    match ty {
        ValueType::Tuple(items) => {
            items.iter().enumerate().for_each(|(i, t)| leaf_names(&format!("{path}_{i}"), t, out))
        }
        ValueType::Record(fields) => {
            fields.iter().for_each(|(n, t)| leaf_names(&format!("{path}_{}", c_identifier(n)), t, out))
        }
        _ => out.push(path.to_string()),
    }
}

fn dtype_name(elem: slope_runtime::ElemType) -> &'static str {
    match elem {
        slope_runtime::ElemType::F64 => "SLOPE_F64",
        slope_runtime::ElemType::F32 => "SLOPE_F32",
        slope_runtime::ElemType::I64 => "SLOPE_I64",
        slope_runtime::ElemType::Bool => "SLOPE_BOOL",
    }
}

/// Whether `ty` contains an array of tuples or records (C callers pass
/// scalars and arrays of scalars only).
fn has_array_of_structures(ty: &ValueType) -> bool {
    match ty {
        ValueType::Scalar(_) => false,
        ValueType::Array { .. } => ty.scalar_leaf().is_none(),
        ValueType::Tuple(items) => items.iter().any(has_array_of_structures),
        ValueType::Record(fields) => fields.iter().any(|(_, t)| has_array_of_structures(t)),
    }
}

/// Names a header's arguments must not take: C and C++ keywords, and the
/// types and macros the header or its includes define.
const RESERVED: &[&str] = &[
    "context",
    "result",
    "error",
    "auto",
    "bool",
    "break",
    "case",
    "char",
    "class",
    "const",
    "continue",
    "default",
    "delete",
    "do",
    "double",
    "else",
    "enum",
    "explicit",
    "extern",
    "false",
    "float",
    "for",
    "friend",
    "goto",
    "if",
    "inline",
    "int",
    "long",
    "namespace",
    "new",
    "operator",
    "private",
    "protected",
    "public",
    "register",
    "restrict",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "struct",
    "switch",
    "template",
    "this",
    "throw",
    "true",
    "try",
    "typedef",
    "typename",
    "union",
    "unsigned",
    "using",
    "virtual",
    "void",
    "volatile",
    "while",
    "int8_t",
    "int16_t",
    "int32_t",
    "int64_t",
    "uint8_t",
    "uint16_t",
    "uint32_t",
    "uint64_t",
    "size_t",
    "NULL",
];

/// A fresh directory of this build's own (two builds at once never share one).
fn scratch_dir(name: &str) -> Result<PathBuf, Failure> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let base = std::env::temp_dir();
    let mut last = None;
    for _ in 0..100 {
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!("slope-build-{}-{k}-{nanos}-{name}", std::process::id()));
        // `create_dir`, not `create_dir_all`: a directory that exists is someone else's.
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) => last = Some(e),
        }
    }
    let why = last.map(|e| e.to_string()).unwrap_or_default();
    Err(build_error(format!("cannot make a directory in {}: {why}", base.display())))
}

/// The tool `var` names (its words: `CC="ccache cc"` works), else `default`.
fn tool(var: &str, default: &str) -> Command {
    let words = std::env::var(var).unwrap_or_else(|_| default.into());
    let mut words = words.split_whitespace();
    let mut c = Command::new(words.next().unwrap_or(default));
    c.args(words);
    c
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    std::fs::write(path, bytes).map_err(|e| fail(Code::E0307, format!("cannot write {}: {e}", path.display())))
}

/// The functions `slope_values.h` declares (the shared library exports them).
fn value_functions() -> Vec<&'static str> {
    // Every `slope_…(`: the identifier just before an opening parenthesis.
    let mut out: Vec<&str> = VALUES_HEADER
        .split('(')
        .filter_map(|before| before.rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next())
        .filter(|w| w.starts_with("slope_"))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Links the object into the library (Note [Linking a library]).
fn link(
    kind: Kind,
    object: &[u8],
    name: &str,
    runtime: &Path,
    output: &Path,
    exports: &Exports,
) -> Result<(), Failure> {
    let dir = scratch_dir(name)?;
    let result = link_in(&dir, kind, object, name, runtime, output, exports);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn link_in(
    dir: &Path,
    kind: Kind,
    object: &[u8],
    name: &str,
    runtime: &Path,
    output: &Path,
    exports: &Exports,
) -> Result<(), Failure> {
    let object_path = dir.join(format!("slope_library_{name}.o"));
    write(&object_path, object)?;
    let mut command = match kind {
        Kind::Static => {
            // The runtime goes beside the library, once for any number of
            // Slope libraries (Note [Linking a library]).
            let beside = output.with_file_name("libslope_capi.a");
            let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
            if !same(runtime, &beside) {
                std::fs::copy(runtime, &beside)
                    .map_err(|e| fail(Code::E0307, format!("cannot write {}: {e}", beside.display())))?;
            }
            let _ = std::fs::remove_file(output);
            let mut c = tool("AR", "ar");
            c.arg("rcs").arg(output).arg(&object_path);
            c
        }
        Kind::Shared => {
            let script = dir.join("exports.map");
            let globals: Vec<String> =
                exports.all().into_iter().chain(value_functions()).map(|f| format!("{f};")).collect();
            write(&script, format!("{{\n  global: {}\n  local: *;\n}};\n", globals.join(" ")).as_bytes())?;
            let mut c = tool("CC", "cc");
            c.arg("-shared").arg("-o").arg(output).arg(&object_path);
            for f in value_functions() {
                c.arg(format!("-Wl,--undefined={f}"));
            }
            c.arg(runtime);
            c.arg(format!("-Wl,--version-script={}", script.display()));
            // `-z defs`: a symbol left undefined (a runtime library of another
            // version) fails here, not when the library is loaded.
            c.args(["-Wl,--gc-sections", "-Wl,-z,defs", "-lpthread", "-ldl", "-lm", "-lc"]);
            c
        }
    };
    let run = command
        .output()
        .map_err(|e| build_error(format!("cannot run {:?} to link the library: {e}", command.get_program())))?;
    if !run.status.success() {
        return Err(build_error(format!(
            "linking {} failed ({:?}):\n{}",
            output.display(),
            command.get_program(),
            String::from_utf8_lossy(&run.stderr).trim_end()
        )));
    }
    Ok(())
}

// Note [Linking a library]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// The object file needs the runtime: the arena, failure recording, host
// math and the thread pool (`slope_runtime`, by the `#[no_mangle]` names
// generated code calls) and the library runtime (`slope_capi::aot`, which
// the exported functions call), all in `libslope_capi.a`, plus the C math
// library for `exp`, `log`, … . A shared library is linked by `cc -shared`
// with a version script that exports the header's functions and hides the
// rest, and `--undefined` for each function of `slope_values.h` (nothing in
// the object calls them, so the linker would otherwise leave them out of
// the archive). A static library `libNAME.a` holds the object alone and
// `libslope_capi.a` is copied beside it: the user links both
// (`-lNAME -lslope_capi -lpthread -ldl -lm`, the last three for the Rust
// standard library). Several Slope libraries in one program then share one
// runtime instead of each bringing its own (which would be duplicate
// symbols); and the runtime archive, written by rustc with its symbol
// index, is never rewritten — GNU `ar` rebuilding that index can lose
// symbols when a linker plugin misreads the embedded LLVM bitcode of Rust
// objects (seen with LLVMgold-14 on this project's build machine).
