//! Native code for the loop IR, with Cranelift.
//!
//! Input: a [`loops::Program`]. Output: a [`Native`] holding one JIT-compiled
//! function per [`loops::Func`], callable on interpreter [`Val`]s, or the
//! CLIF text of the functions ([`clif_text`], for `slope emit --stage clif`).
//! The same functions, built by the same `define_all`, go into an object
//! file for an ahead-of-time library in [`aot`] (`slope build`).
//!
//! Each function has the C ABI
//! `extern "C" fn(args: *const u64, results: *mut u64, ctx: *mut Ctx) -> i32`:
//! argument word `k` (at `args + 8k`) initialises `func.params[k]` and result
//! word `k` receives `func.results[k]`; a scalar sits in the low bytes of its
//! word (`f32` in the low 4, `bool` as 0/1 in the low byte). The function
//! returns 0, or 1 after a `Fail` recorded its site and arguments in the
//! [`Ctx`], or 2 when compiled to poll the interrupt flag and it was set.
//! Memory comes from the `Ctx` arena (`slope_runtime::native`), which
//! [`Native::call`] empties after every call.
//!
//! Invariants relied on (established by `loops::lower`): loads and stores are
//! in bounds (they are emitted as trusted, non-trapping accesses), integer
//! divisors are non-zero and exponents non-negative, and every variable is
//! assigned before it is read. Scalar operations compute exactly what
//! `ir::interp` computes: wrapping integer arithmetic (`i64::MIN / -1`
//! included), the interpreter's NaN rules for `min`/`max`, and the host's
//! math functions for everything Cranelift has no instruction for.

use crate::diagnostic::{Code, Span};
use crate::ir::{BinOp, Const, UnOp};
use crate::loops::opt::simd::{lane, Lane};
use crate::loops::{self, Inst, LVar, MTy, Operand, Rhs};
use crate::prims::Lowering;
use cranelift::codegen::ir::{
    BlockArg, ExtFuncData, ExternalName, FuncRef, Function, GlobalValueData, StackSlot, UserExternalName, UserFuncName,
};
use cranelift::codegen::FinalizedRelocTarget;
use cranelift::codegen::print_errors::pretty_error;
use cranelift::codegen::Context;
use cranelift::prelude::*;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{
    default_libcall_names, DataId, FuncId, Linkage, Module, ModuleDeclarations, ModuleReloc, ModuleRelocTarget,
};
use slope_runtime::failure::RuntimeError;
use slope_runtime::native::{self as rt, Ctx};
use slope_runtime::ElemType;
// A value as the caller holds it (`Value` here is Cranelift's SSA value).
use crate::hash::HashMap;
use slope_runtime::Value as HostValue;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Mutex;

pub mod aot;

/// The status a compiled function returns when polling found the interrupt
/// flag set (0 is success, 1 a recorded failure).
const INTERRUPTED: i64 = 2;

/// The most idle run-time contexts a program keeps between calls (Note
/// [Calls from several threads]); each may cache freed blocks.
const IDLE_CONTEXTS: usize = 4;

/// The C signature of a compiled function.
type Entry = unsafe extern "C" fn(*const u64, *mut u64, *mut Ctx) -> i32;

/// The compiled functions of a program, ready to call.
pub struct Native {
    /// `None` only while dropping. Nothing touches the module between
    /// finalisation and drop; the mutex only makes `Native` shareable
    /// between threads (a `JITModule` is `Send` but not `Sync`).
    module: Mutex<Option<JITModule>>,
    funcs: Vec<(loops::Func, Entry)>,
    /// The plans of the program's parallel segments: generated code holds
    /// their addresses, so they live (boxed, unmoved) as long as the code.
    _plans: Vec<Box<slope_runtime::parallel::Segment>>,
    /// Contexts no call is using (Note [Calls from several threads]).
    idle: Mutex<Vec<Ctx>>,
    /// Threads parallel loops may use, given to each call's context.
    threads: AtomicUsize,
    /// The chunk limit given to each call's context (`Ctx::chunk_limit`).
    chunk_limit: AtomicI64,
    /// The most arena bytes the last call to finish held at once.
    last_peak: AtomicUsize,
}

// Note [Calls from several threads]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A compiled program may be called from several threads at once (a Python
// user releases the GIL during a call; a server shares one program). The
// code itself is immutable after finalisation and the plans of its parallel
// segments hold only an atomic observation, so what needs care is the
// run-time context: its arena, failure record and limits belong to one call.
// Each call therefore takes a context from `idle` (or makes a new one when
// every context is busy), runs on it alone, resets it and gives it back.
// The lock is held only to take and return a context, never during a call,
// so concurrent calls do not wait on each other; a program called from one
// thread keeps reusing one context and its cache of freed blocks. At most
// `IDLE_CONTEXTS` stay idle: each may cache up to `CACHE_BYTES` of freed
// blocks, so more would keep memory a past burst of calls needed. Settings
// (`set_threads`, `set_chunk_limit`) are atomics copied into the context at
// the start of each call. Results do not depend on which context a call
// runs on: a fresh context and a reused one differ only in cached blocks,
// whose contents generated code never reads before writing.

impl Drop for Native {
    fn drop(&mut self) {
        if let Some(module) = self.module.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            // SAFETY: the code pointers die with `self`; nothing can call them now.
            unsafe { module.free_memory() };
        }
    }
}

/// Compiles every function of `program` into one JIT module. With
/// `poll_interrupt`, every loop iteration reads the runtime's interrupt flag
/// and the call fails with E0208 once it is set (the REPL's Ctrl-C; a load
/// and a branch per iteration, so only the REPL asks for it).
pub fn compile(program: &loops::Program, poll_interrupt: bool) -> Result<Native, String> {
    let mut module = new_module()?;
    let mut plans: Vec<Box<slope_runtime::parallel::Segment>> =
        program.segments.iter().map(|s| Box::new(s.plan.clone())).collect();
    let plan_refs: Vec<PlanRef> = plans.iter().map(|p| PlanRef::Address(&**p as *const _ as i64)).collect();
    let defined = define_all(&mut module, program, &plan_refs, poll_interrupt)
        .and_then(|ids| module.finalize_definitions().map(|()| ids).map_err(|e| e.to_string()));
    let (ids, segment_ids) = match defined {
        Ok(ids) => ids,
        Err(e) => {
            // SAFETY: no code of this module was handed out.
            unsafe { module.free_memory() };
            return Err(e);
        }
    };
    let funcs = program
        .funcs
        .iter()
        .zip(ids)
        .map(|(f, id)| {
            let code = module.get_finalized_function(id);
            // SAFETY: `build` gave the function exactly the `Entry` signature.
            (f.clone(), unsafe { std::mem::transmute::<*const u8, Entry>(code) })
        })
        .collect();
    // The plans name their code: generated code passes only the plan.
    for (plan, id) in plans.iter_mut().zip(segment_ids) {
        plan.code = module.get_finalized_function(id) as usize;
    }
    Ok(Native {
        module: Mutex::new(Some(module)),
        funcs,
        _plans: plans,
        idle: Mutex::new(vec![Ctx::new(0)]),
        threads: AtomicUsize::new(slope_runtime::parallel::default_threads()),
        chunk_limit: AtomicI64::new(0),
        last_peak: AtomicUsize::new(0),
    })
}

/// Defines every function of `program` in `module` (a JIT module, or an
/// object file for `slope build`). Entries first, then segments; returns
/// the entries' ids and the segments'.
fn define_all(
    module: &mut dyn Module,
    program: &loops::Program,
    plans: &[PlanRef],
    poll: bool,
) -> Result<(Vec<FuncId>, Vec<FuncId>), String> {
    let all: Vec<&loops::Func> = program.funcs.iter().chain(program.segments.iter().map(|s| &s.func)).collect();
    let signature = entry_signature(module);
    let mut ids: Vec<FuncId> =
        all.iter().map(|f| declare(module, f, &signature)).collect::<Result<_, _>>()?;
    let segments: Vec<SegmentRef> = ids[program.funcs.len()..]
        .iter()
        .zip(plans)
        .zip(&program.segments)
        .map(|((&id, plan), s)| SegmentRef::new(id, plan.clone(), s))
        .collect();
    let mut built: Vec<(&loops::Func, Context)> = all
        .iter()
        .map(|&f| {
            let mut ctx = module.make_context();
            ctx.func.signature = signature.clone();
            (f, ctx)
        })
        .collect();
    let functions: Vec<(String, FuncId)> =
        program.funcs.iter().zip(&ids).map(|(f, &id)| (f.name.clone(), id)).collect();
    let target = Target { config: module.target_config(), declarations: module.declarations(), functions: &functions };
    build_and_compile(module.isa(), target, &segments, poll, &mut built)?;
    // Runtime functions are declared as the code that calls them is
    // defined, in program order (Note [Functions compiled in parallel]).
    let mut imported: HashMap<String, FuncId> = HashMap::default();
    for ((_, ctx), &id) in built.iter().zip(&ids) {
        let dfg = &ctx.func.dfg;
        for (_, ext) in dfg.ext_funcs.iter() {
            if let Some(name) = runtime_name(&ext.name) {
                if !imported.contains_key(name) {
                    let declared = module.declare_function(name, Linkage::Import, &dfg.signatures[ext.signature]);
                    imported.insert(name.to_string(), declared.map_err(|e| e.to_string())?);
                }
            }
        }
        let code = ctx.compiled_code().expect("compiled above");
        let relocs: Vec<ModuleReloc> = code
            .buffer
            .relocs()
            .iter()
            .map(|r| {
                let runtime = match &r.target {
                    FinalizedRelocTarget::ExternalName(name) => runtime_name(name),
                    FinalizedRelocTarget::Func(_) => None,
                };
                match runtime {
                    Some(name) => {
                        let name = ModuleRelocTarget::user(0, imported[name].as_u32());
                        ModuleReloc { offset: r.offset, kind: r.kind, name, addend: r.addend }
                    }
                    None => ModuleReloc::from_mach_reloc(r, &ctx.func, id),
                }
            })
            .collect();
        module
            .define_function_bytes(id, code.buffer.alignment as u64, code.code_buffer(), &relocs)
            .map_err(|e| e.to_string())?;
    }
    let segments = ids.split_off(program.funcs.len());
    Ok((ids, segments))
}

/// Declares the function `f` (an entry or a segment) in `module` as
/// `slope:NAME`: that cannot clash with a runtime symbol (`slope_…`), and
/// names the code in profiles (under `perf record` cranelift-jit writes
/// /tmp/perf-PID.map).
fn declare(module: &mut dyn Module, f: &loops::Func, signature: &Signature) -> Result<FuncId, String> {
    module.declare_function(&format!("slope:{}", f.name), Linkage::Local, signature).map_err(|e| e.to_string())
}

/// The symbol of the runtime function `name` names, when it is one (a
/// built function imports those by name).
fn runtime_name(name: &ExternalName) -> Option<&str> {
    match name {
        ExternalName::TestCase(name) => Some(std::str::from_utf8(name.raw()).expect("runtime names are ASCII")),
        _ => None,
    }
}

/// Builds each function's CLIF into its context and compiles it to machine
/// code, several functions at a time (Note [Functions compiled in
/// parallel]). On failure: the error of the first function that failed, in
/// program order.
fn build_and_compile(
    isa: &dyn isa::TargetIsa,
    target: Target<'_>,
    segments: &[SegmentRef],
    poll: bool,
    built: &mut [(&loops::Func, Context)],
) -> Result<(), String> {
    let compiled = crate::threads::map_largest_first(
        built,
        |(f, _)| loops::size(&f.body),
        |(f, ctx)| {
            let mut fctx = FunctionBuilderContext::new();
            build(target, f, &mut ctx.func, &mut fctx, segments, poll)?;
            let mut plane = cranelift::codegen::control::ControlPlane::default();
            ctx.compile(isa, &mut plane)
                .map(|_| ())
                .map_err(|e| format!("cannot compile `{}`: {}", f.name, pretty_error(e.func, e.inner)))
        },
    );
    // The first failure in program order, whichever thread found it.
    compiled.into_iter().find_map(Result::err).map_or(Ok(()), Err)
}

// Note [Functions compiled in parallel]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Building a function's CLIF and compiling it to machine code (Cranelift's
// optimiser and register allocator, most of the time) need the target and
// the function, not the module: building reads the module's declarations
// (the segments it calls, an ahead-of-time library's plan slots) but
// declares nothing. A runtime function it calls is imported by its symbol
// name (`ExternalName::testcase`); only when the machine code
// is defined in the module, one function at a time in program order, is
// each such function declared and its relocations pointed at the
// declaration. So each function is built and compiled as one task, on as
// many threads as the machine has cores (`crate::threads`), each thread
// taking the largest function left (ht's jacobian has two segments far
// larger than the rest): the code is the same as a one-at-a-time
// compilation, only sooner for a program with several functions. A failure
// reports the first failing function in program order, whichever thread
// found it. Lowering and the loop optimiser also treat each function on its
// own, and run the same way (the loop passes' `--timings` are then summed
// over the threads); outlining does not (Note [Outlining one function at a
// time] in loops/parallel.rs).

/// The CLIF of every function of `program` (or only of the function
/// `only`), as built (before Cranelift optimises it), then of the segments
/// they call.
pub fn clif_text(program: &loops::Program, only: Option<&str>) -> Result<String, String> {
    let mut out = String::new();
    each_built(program, only, |_, func| {
        out.push_str(&func.display().to_string());
        out.push('\n');
        Ok(())
    })?;
    Ok(out)
}

/// The machine code of the same functions as [`clif_text`]: each one
/// compiled as the JIT compiles it (Cranelift's optimiser, register
/// allocation) and listed by Cranelift's disassembler, after a header line
/// naming it. Calls to segments and the runtime are unresolved relocations.
pub fn machine_code_text(program: &loops::Program, only: Option<&str>) -> Result<String, String> {
    let module = new_module()?;
    let isa = module.isa();
    let mut out = String::new();
    each_built(program, only, |name, func| {
        let mut ctx = Context::for_function(func);
        ctx.set_disasm(true);
        let mut plane = cranelift::codegen::control::ControlPlane::default();
        let compiled = ctx
            .compile(isa, &mut plane)
            .map_err(|e| format!("cannot compile `{name}`: {}", pretty_error(e.func, e.inner)))?;
        let listing = compiled.vcode.as_deref().unwrap_or("(no disassembly)\n");
        out.push_str(&format!("; {name}: {} bytes\n{listing}\n", compiled.code_buffer().len()));
        Ok(())
    })?;
    Ok(out)
}

/// Builds the CLIF of every function of `program` (or only of `only`), then
/// of the segments they call, and hands each to `each` with its name.
fn each_built(
    program: &loops::Program,
    only: Option<&str>,
    mut each: impl FnMut(&str, Function) -> Result<(), String>,
) -> Result<(), String> {
    let mut module = new_module()?;
    let mut fctx = FunctionBuilderContext::new();
    // Segments are named by import, their plans by index (no code runs).
    let signature = entry_signature(&module);
    let segments: Vec<SegmentRef> = program
        .segments
        .iter()
        .enumerate()
        .map(|(k, s)| declare(&mut module, &s.func, &signature).map(|id| SegmentRef::new(id, PlanRef::Address(k as i64), s)))
        .collect::<Result<_, _>>()?;
    let shown: Vec<&loops::Func> = program.funcs.iter().filter(|f| only.is_none_or(|n| f.name == n)).collect();
    let mut called = std::collections::BTreeSet::new();
    for f in &shown {
        loops::for_each_inst(&f.body, &mut |i| {
            if let Inst::Parallel { segment, .. } = i {
                called.insert(*segment as usize);
            }
        });
    }
    let called = called.into_iter().map(|k| &program.segments[k].func);
    let functions: Vec<(String, FuncId)> = program
        .funcs
        .iter()
        .map(|f| declare(&mut module, f, &signature).map(|id| (f.name.clone(), id)))
        .collect::<Result<_, _>>()?;
    let target = Target { config: module.target_config(), declarations: module.declarations(), functions: &functions };
    for f in shown.into_iter().chain(called) {
        let mut func = Function::with_name_signature(UserFuncName::testcase(&f.name), signature.clone());
        build(target, f, &mut func, &mut fctx, &segments, false)?;
        each(&f.name, func)?;
    }
    Ok(())
}

// Note [Functions aligned to 64 bytes]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Cranelift does not align loop headers, so where a hot inner loop falls
// relative to the 64-byte lines of the instruction fetch depends on where its
// function starts. Left to the JIT's packing, that moved with every unrelated
// change to the program: on the same machine, identical CLIF for gmm's
// objective (its triangular `qtimesv` loop) ran 43.5 ms in one build and
// 57.7 ms in another whose only change was in the derivative's code, compiled
// into the same module (`objective` at d = 64, k = 25, n = 1000, one thread).
// Starting every function on a 64-byte boundary makes a loop's placement a
// property of its own function's code alone: both builds then ran it in
// 38.7 ms. The cost is at most 63 bytes of padding per function.

/// Code generation settings of every native back end (the JIT and the
/// object files of `slope build`), apart from the verifier.
pub(crate) const CODEGEN_FLAGS: [(&str, &str); 2] = [
    ("opt_level", "speed"),
    // Note [Functions aligned to 64 bytes].
    ("log2_min_function_alignment", "6"),
];

/// Whether Cranelift's verifier checks every function (debug builds).
pub(crate) fn verifier() -> &'static str {
    if cfg!(debug_assertions) {
        "true"
    } else {
        "false"
    }
}

/// A JIT module that can call the runtime's functions.
fn new_module() -> Result<JITModule, String> {
    let mut flags = CODEGEN_FLAGS.to_vec();
    flags.push(("enable_verifier", verifier()));
    let mut jb = JITBuilder::with_flags(&flags, default_libcall_names()).map_err(|e| e.to_string())?;
    for (name, ptr) in rt::symbols() {
        jb.symbol(name, ptr);
    }
    let module = JITModule::new(jb);
    if module.target_config().pointer_type() != types::I64 {
        return Err("native code needs a 64-bit target".into());
    }
    Ok(module)
}

/// `(args, results, ctx) -> status`, all pointers 64-bit.
fn entry_signature(module: &dyn Module) -> Signature {
    let mut sig = module.make_signature();
    sig.params.extend([AbiParam::new(types::I64); 3]);
    sig.returns.push(AbiParam::new(types::I32));
    sig
}

/// What building a function reads of the module it goes into: the target,
/// and the functions and data declared so far (segments, plan slots), and
/// the program's functions by name, in program order (what a `Call` calls).
/// Building declares nothing (Note [Functions compiled in parallel]).
#[derive(Clone, Copy)]
struct Target<'a> {
    config: isa::TargetFrontendConfig,
    declarations: &'a ModuleDeclarations,
    functions: &'a [(String, FuncId)],
}

fn cl_type(t: MTy) -> Type {
    match t {
        MTy::F64 => types::F64,
        MTy::F32 => types::F32,
        MTy::I64 => types::I64,
        MTy::Bool => types::I8,
    }
}

/// The integer parameters of `f` its body never assigns, by argument word.
fn constant_params(f: &loops::Func) -> HashMap<LVar, usize> {
    let assigned = loops::assigned_in(&f.body);
    f.params
        .iter()
        .enumerate()
        .filter(|&(_, &p)| f.ty(p) == MTy::I64 && !assigned.contains(&p))
        .map(|(k, &p)| (p, k))
        .collect()
}

/// Builds the CLIF of `f` into `func`, whose signature is already the
/// entry signature.
fn build(
    target: Target<'_>,
    f: &loops::Func,
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    segments: &[SegmentRef],
    poll: bool,
) -> Result<(), String> {
    let mut b = FunctionBuilder::new(func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let params = b.block_params(entry).to_vec();
    let (args, results, ctx) = (params[0], params[1], params[2]);
    let vars = f.vars.iter().map(|&(_, t)| b.declare_var(cl_type(t))).collect();
    let mut g = Gen {
        b,
        target,
        refs: HashMap::default(),
        f,
        vars,
        ctx,
        args,
        constant_params: constant_params(f),
        fail_exit: None,
        fail_shared: None,
        poll,
        interrupted: None,
        segments,
        status_exit: None,
    };

    // Each parameter is loaded just before the first top-level instruction
    // that reads or assigns it: loaded all at entry, a function with
    // thousands of parameters (one per dimension of a deep array) keeps
    // them all live at once, and register allocation grows quadratically.
    let mut unloaded: HashMap<LVar, usize> = f.params.iter().enumerate().map(|(k, &p)| (p, k)).collect();
    for inst in &f.body {
        if !unloaded.is_empty() {
            let mut touched = Vec::new();
            loops::for_each_inst(std::slice::from_ref(inst), &mut |i| {
                touched.extend(i.operands().into_iter().filter_map(loops::Operand::var).chain(i.defs()))
            });
            for p in touched {
                if let Some(k) = unloaded.remove(&p) {
                    g.load_param(p, k);
                }
            }
        }
        g.inst(inst)?;
    }
    let mut rest: Vec<(LVar, usize)> = unloaded.into_iter().collect();
    rest.sort_by_key(|&(_, k)| k);
    for (p, k) in rest {
        g.load_param(p, k);
    }
    for (k, &r) in f.results.iter().enumerate() {
        let v = g.operand(r);
        g.b.ins().store(MemFlagsData::trusted(), v, results, 8 * k as i32);
    }
    let ok = g.b.ins().iconst(types::I32, 0);
    g.b.ins().return_(&[ok]);

    if let Some(shared) = g.fail_shared {
        g.b.switch_to_block(shared);
        g.b.seal_block(shared);
        g.b.set_cold_block(shared);
        let mut call_args = vec![g.ctx];
        call_args.extend(g.b.block_params(shared).to_vec());
        g.call_void("slope_fail_with", &[types::I64; 3 + SHARED_FAIL_ARGS], &call_args);
        let exit = *g.fail_exit.get_or_insert_with(|| g.b.create_block());
        g.b.ins().jump(exit, &[]);
    }
    if let Some(fail_exit) = g.fail_exit {
        g.b.switch_to_block(fail_exit);
        g.b.seal_block(fail_exit);
        g.b.set_cold_block(fail_exit);
        let failed = g.b.ins().iconst(types::I32, 1);
        g.b.ins().return_(&[failed]);
    }
    if let Some(exit) = g.status_exit {
        g.b.switch_to_block(exit);
        g.b.seal_block(exit);
        g.b.set_cold_block(exit);
        let status = g.b.block_params(exit)[0];
        g.b.ins().return_(&[status]);
    }
    if let Some(interrupted) = g.interrupted {
        g.b.switch_to_block(interrupted);
        g.b.seal_block(interrupted);
        g.b.set_cold_block(interrupted);
        let status = g.b.ins().iconst(types::I32, INTERRUPTED);
        g.b.ins().return_(&[status]);
    }
    g.b.finalize(target.config);
    Ok(())
}

/// Where generated code finds a parallel segment's plan
/// (`slope_runtime::parallel::Segment`).
#[derive(Clone)]
enum PlanRef {
    /// At this address (the JIT: the plan lives as long as the code).
    Address(i64),
    /// In the 8-byte slot at this offset of this data object (an
    /// ahead-of-time library: the plan is built at load, Note [Loading a
    /// library] in `slope_capi::aot`).
    Slot(cranelift_module::DataId, i32),
}

// Note [Small copies]
// ~~~~~~~~~~~~~~~~~~~~
// A `Copy` of a constant count of at most INLINE_COPY_BYTES bytes is
// emitted as loads followed by stores (16-byte vectors, then a tail), not a
// call of the runtime's `slope_copy` (`memmove`). Such copies are rows of a
// few elements — ba's two-element residual written into its result row per
// observation — and the call, with `memmove`'s dispatch, cost more than the
// copy: a fifth of ba's objective on the pool's threads was `memmove`
// (`perf record`, 2026-12-03), and inline copies took GradBench's ba from
// 533.7 / 348.0 ms (one thread / two) to 465.1 / 293.5 ms. Loading
// everything before storing keeps `memmove`'s meaning when the ranges
// overlap. The limit is 64 bytes: 256 (ba's 15-element block rows, ht's
// rows of 26) gained nothing measurable in GradBench's runner and cost ht
// 3.3% more compile-time instructions (callgrind, 1,333 M → 1,373 M).

/// The most bytes a constant-count `Copy` copies without a call.
const INLINE_COPY_BYTES: i64 = 64;

/// What a function calling a parallel segment needs to know of it.
struct SegmentRef {
    /// The segment's function, which an `inline` segment calls directly.
    id: FuncId,
    plan: PlanRef,
    /// The argument word of each result (reductions, then first-iteration
    /// variables), where its value comes back.
    result_words: Vec<usize>,
}

impl SegmentRef {
    fn new(id: FuncId, plan: PlanRef, s: &loops::Segment) -> SegmentRef {
        let words = s.plan.reductions.iter().map(|r| r.word).chain(s.plan.firsts.iter().copied());
        SegmentRef { id, plan, result_words: words.collect() }
    }
}

/// The state of building one function.
struct Gen<'a, 'm> {
    b: FunctionBuilder<'a>,
    target: Target<'m>,
    /// Runtime functions imported into this function so far, by name.
    refs: HashMap<String, FuncRef>,
    f: &'m loops::Func,
    vars: Vec<Variable>,
    /// The `*mut Ctx` parameter.
    ctx: Value,
    /// The arguments' words, and the word of each integer parameter the
    /// body never assigns: a failure reads those again (Note [Failure
    /// arguments from memory]).
    args: Value,
    constant_params: HashMap<LVar, usize>,
    /// Returns 1; every `Fail` jumps here (created by the first one).
    fail_exit: Option<Block>,
    /// Records a failure (block parameters: site, argument count, six
    /// arguments) and returns 1: one call for all the function's checks.
    fail_shared: Option<Block>,
    /// Poll the interrupt flag once per loop iteration.
    poll: bool,
    /// Returns [`INTERRUPTED`] (created by the first poll).
    interrupted: Option<Block>,
    segments: &'m [SegmentRef],
    /// Returns its block parameter (a parallel segment's failure status).
    status_exit: Option<Block>,
}

/// Memory flags of vector loads and stores: in bounds, not necessarily
/// aligned to 16 bytes, lanes in little-endian order.
fn vector_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap().with_endianness(cranelift::codegen::ir::Endianness::Little)
}

/// The flags of a lane-preserving `bitcast` between vector types.
fn lane_order() -> MemFlagsData {
    MemFlagsData::new().with_endianness(cranelift::codegen::ir::Endianness::Little)
}

/// Arguments a `Fail` can pass to the shared failure block.
const SHARED_FAIL_ARGS: usize = 6;

impl Gen<'_, '_> {
    fn block(&mut self, insts: &[Inst]) -> Result<(), String> {
        insts.iter().try_for_each(|i| self.inst(i))
    }

    fn var(&self, v: LVar) -> Variable {
        self.vars[v.0 as usize]
    }

    fn ty(&self, o: Operand) -> MTy {
        self.f.operand_type(o)
    }

    fn inst(&mut self, inst: &Inst) -> Result<(), String> {
        match inst {
            Inst::Let(v, rhs) => {
                let val = self.rhs(rhs, self.f.ty(*v))?;
                self.b.def_var(self.var(*v), val);
            }
            Inst::Store { elem, base, index, value } => {
                let addr = self.address(*elem, *base, *index);
                let v = self.operand(*value);
                self.b.ins().store(MemFlagsData::trusted(), v, addr, 0);
            }
            Inst::Copy { elem, dst, src, count } => {
                let (dst, src) = (self.operand(*dst), self.operand(*src));
                match count.as_i64().map(|n| n.saturating_mul(elem.size())) {
                    Some(bytes @ 0..=INLINE_COPY_BYTES) => self.copy_inline(dst, src, bytes as i32),
                    _ => {
                        let bytes = self.bytes(*elem, *count);
                        let ctx = self.ctx;
                        self.call_void("slope_copy", &[types::I64; 4], &[ctx, dst, src, bytes]);
                    }
                }
            }
            Inst::Argsort { elem, keys, count, perm, descending } => {
                if *elem == MTy::Bool {
                    return Err("argsort of booleans".to_string());
                }
                let args = [self.operand(*keys), self.operand(*count), self.operand(*perm)];
                let descending = self.b.ins().iconst(types::I64, *descending as i64);
                let host = format!("slope_argsort_{}", elem.name());
                self.call_void(&host, &[types::I64; 4], &[args[0], args[1], args[2], descending]);
            }
            Inst::For { index, start, bound, body, lanes, .. } if *lanes > 1 => {
                let start = self.operand(*start);
                let bound = self.operand(*bound);
                let classes = crate::loops::opt::simd::classify(self.f, *index, body)
                    .ok_or("internal error: a vector loop whose body has no lane-wise form")?;
                // The vector loop runs up to the last multiple of `lanes` past
                // `start`, the scalar loop the rest.
                let count = self.b.ins().isub(bound, start);
                let zero = self.b.ins().iconst(types::I64, 0);
                let count = self.b.ins().smax(count, zero);
                let whole = self.b.ins().band_imm_s(count, -(*lanes as i64));
                let split = self.b.ins().iadd(start, whole);
                self.counted_loop(*index, start, split, *lanes as i64, |g| g.vector_body(body, &classes))?;
                self.counted_loop(*index, split, bound, 1, |g| g.block(body))?;
            }
            Inst::For { index, start, bound, body, .. } => {
                let start = self.operand(*start);
                let bound = self.operand(*bound);
                self.counted_loop(*index, start, bound, 1, |g| g.block(body))?;
            }
            Inst::While { cond, test, body } => {
                let (header, body_blk, exit) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
                self.b.ins().jump(header, &[]);
                self.b.switch_to_block(header);
                self.poll_interrupt();
                self.block(cond)?;
                let t = self.operand(*test);
                self.branch_unless(t, body_blk, exit);
                self.b.switch_to_block(body_blk);
                self.b.seal_block(body_blk);
                self.block(body)?;
                self.continue_to(header);
                self.b.seal_block(header);
                self.b.switch_to_block(exit);
                self.b.seal_block(exit);
            }
            Inst::If { cond, then, els } => {
                let c = self.operand(*cond);
                let (then_blk, merge) = (self.b.create_block(), self.b.create_block());
                let else_blk = if els.is_empty() { merge } else { self.b.create_block() };
                // A check's failure leaves every loop (Note [Exits first]).
                if matches!(els.last(), Some(Inst::Fail { .. })) {
                    self.b.set_cold_block(else_blk);
                    self.branch_unless(c, then_blk, else_blk);
                } else {
                    self.b.ins().brif(c, then_blk, &[], else_blk, &[]);
                }
                self.b.switch_to_block(then_blk);
                self.b.seal_block(then_blk);
                self.block(then)?;
                self.continue_to(merge);
                if !els.is_empty() {
                    self.b.switch_to_block(else_blk);
                    self.b.seal_block(else_blk);
                    self.block(els)?;
                    self.continue_to(merge);
                }
                self.b.switch_to_block(merge);
                self.b.seal_block(merge);
            }
            Inst::Fail { site, args } => {
                self.fail(*site, args);
                // Whatever follows is unreachable; give it a block of its own.
                let dead = self.b.create_block();
                self.b.switch_to_block(dead);
                self.b.seal_block(dead);
            }
            Inst::Release { mark, keep } => {
                let ctx = self.ctx;
                for &k in keep {
                    let p = self.operand(k);
                    self.call_void("slope_keep", &[types::I64; 2], &[ctx, p]);
                }
                let mark = self.operand(*mark);
                self.call_void("slope_release", &[types::I64; 2], &[ctx, mark]);
            }
            Inst::Parallel { segment, inline, start, bound, args, results } => {
                self.segment(*segment, *inline, *start, *bound, args, results)?
            }
            Inst::Call { func, args, results } => self.call_function(func, args, results)?,
        }
        Ok(())
    }

    /// Calls the program's function `name` through its entry signature:
    /// the argument and result words in stack blocks of their own. When it
    /// fails, records which function failed (`slope_failed_in`: its sites
    /// are not this function's) and returns its status.
    fn call_function(&mut self, name: &str, args: &[Operand], results: &[LVar]) -> Result<(), String> {
        let functions = self.target.functions;
        let k = functions.iter().position(|(n, _)| n == name).ok_or_else(|| format!("a call of unknown `{name}`"))?;
        let (status, result_slot) = self.call_direct(functions[k].1, args, results.len());
        let (failed, go_on) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(status, failed, &[], go_on, &[]);
        self.b.switch_to_block(failed);
        self.b.seal_block(failed);
        self.b.set_cold_block(failed);
        let index = self.b.ins().iconst(types::I64, k as i64);
        let ctx = self.ctx;
        self.call_void("slope_failed_in", &[types::I64; 2], &[ctx, index]);
        let exit = self.status_exit();
        self.b.ins().jump(exit, &[BlockArg::Value(status)]);
        self.b.switch_to_block(go_on);
        self.b.seal_block(go_on);
        self.load_results(result_slot, results, 0..results.len());
        Ok(())
    }

    /// Runs segment `k` over `start..bound`: through the runtime's
    /// `slope_parallel_for` — its arguments in a stack block whose words 0
    /// and 1 the runtime fills with each chunk's `lo` and `hi`, the
    /// reductions' totals read back from their words — or, `inline`, by one
    /// direct call of the segment's function over the whole range (Note
    /// [Loops called inline] in `loops/parallel.rs`), its results
    /// (reductions' totals, then first-iteration variables) in a block of
    /// their own. A failure's status is returned as it is.
    fn segment(
        &mut self,
        k: u32,
        inline: bool,
        start: Operand,
        bound: Operand,
        args: &[Operand],
        results: &[LVar],
    ) -> Result<(), String> {
        let seg = self.segments.get(k as usize).ok_or("internal error: unknown parallel segment")?;
        let (id, plan, result_words) = (seg.id, seg.plan.clone(), seg.result_words.clone());
        let (status, slot, words) = if inline {
            let inputs: Vec<Operand> = [start, bound].into_iter().chain(args.iter().copied()).collect();
            let (status, slot) = self.call_direct(id, &inputs, results.len());
            (status, slot, (0..results.len()).collect())
        } else {
            let slot = self.word_block(2 + args.len(), 2, args);
            let block = self.b.ins().stack_addr(types::I64, slot, 0);
            let plan = match plan {
                PlanRef::Address(address) => self.b.ins().iconst(types::I64, address),
                PlanRef::Slot(data, offset) => {
                    let slots = self.declared_data(data);
                    let slots = self.b.ins().symbol_value(types::I64, slots);
                    self.b.ins().load(types::I64, MemFlagsData::trusted(), slots, offset)
                }
            };
            let (start, bound) = (self.operand(start), self.operand(bound));
            let ctx = self.ctx;
            let args = [ctx, plan, block, start, bound];
            (self.call("slope_parallel_for", &[types::I64; 5], types::I32, &args), slot, result_words)
        };
        self.exit_on_status(status);
        self.load_results(slot, results, words);
        Ok(())
    }

    /// Calls the module's function `id` through the entry signature: the
    /// argument words in a stack block, and a stack block of `results`
    /// words for what it returns. Its status, and the result block.
    fn call_direct(&mut self, id: FuncId, args: &[Operand], results: usize) -> (Value, StackSlot) {
        let arg_slot = self.word_block(args.len(), 0, args);
        let result_slot = self.word_block(results, 0, &[]);
        let arg_block = self.b.ins().stack_addr(types::I64, arg_slot, 0);
        let result_block = self.b.ins().stack_addr(types::I64, result_slot, 0);
        let callee = self.declared_func(id);
        let call = self.b.ins().call(callee, &[arg_block, result_block, self.ctx]);
        (self.b.inst_results(call)[0], result_slot)
    }

    /// Assigns `results[k]` from word `words[k]` of the stack block `slot`.
    fn load_results(&mut self, slot: StackSlot, results: &[LVar], words: impl IntoIterator<Item = usize>) {
        for (&r, w) in results.iter().zip(words) {
            let v = self.b.ins().stack_load(types::I64, cl_type(self.f.ty(r)), slot, 8 * w as i32);
            self.b.def_var(self.var(r), v);
        }
    }

    /// A stack block of `words` 8-byte words (at least one), 8-aligned,
    /// holding `values` from word `first` on.
    fn word_block(&mut self, words: usize, first: usize, values: &[Operand]) -> StackSlot {
        let data = StackSlotData::new(StackSlotKind::ExplicitSlot, 8 * words.max(1) as u32, 3);
        let slot = self.b.create_sized_stack_slot(data);
        for (w, &a) in values.iter().enumerate() {
            let v = self.operand(a);
            self.b.ins().stack_store(types::I64, v, slot, 8 * (first + w) as i32);
        }
        slot
    }

    /// The block that returns its parameter as the function's status.
    fn status_exit(&mut self) -> Block {
        *self.status_exit.get_or_insert_with(|| {
            let b = self.b.create_block();
            self.b.append_block_param(b, types::I32);
            b
        })
    }

    /// Leaves the function with `status` when it is not 0.
    fn exit_on_status(&mut self, status: Value) {
        let exit = self.status_exit();
        let go_on = self.b.create_block();
        self.b.ins().brif(status, exit, &[BlockArg::Value(status)], go_on, &[]);
        self.b.switch_to_block(go_on);
        self.b.seal_block(go_on);
    }

    /// Parameter `p`, the `k`th word of the argument block.
    fn load_param(&mut self, p: LVar, k: usize) {
        let v = self.arg_word(cl_type(self.f.ty(p)), k);
        self.b.def_var(self.var(p), v);
    }

    /// Argument word `k` of the function, read as a `ty`.
    fn arg_word(&mut self, ty: Type, k: usize) -> Value {
        self.b.ins().load(ty, MemFlagsData::trusted(), self.args, 8 * k as i32)
    }

    // Note [Exits first]
    // ~~~~~~~~~~~~~~~~~~
    // Cranelift's optimiser places each pure instruction anew (its
    // elaboration), walking the dominator tree and hoisting an instruction
    // out of the loops on a stack it keeps on the way: entering a block that
    // is not in the innermost loop pops that loop, and only a loop's header
    // pushes it again. It visits a block's children in reverse post-order,
    // which puts the *second* target of a `brif` first. A check in a loop,
    // `brif ok, go_on, fail`, so had its failure block (outside every loop)
    // visited before the rest of the loop's body, which then had no loop on
    // the stack and nothing hoisted: gmm's jacobian computed a row's address
    // (a multiplication) in every iteration of the loop over its columns.
    // The same held for a `while` loop's exit. So a branch to a block that
    // leaves the loops goes as the first target, on the negated condition
    // (`branch_unless`), and a check's failure block is cold (placed last).
    // Measured on 2026-12-05 (`slope --threads 1 bench FILE --input X`,
    // GradBench's largest inputs): gmm's jacobian 704–784 → 600–623 ms (its
    // objective went 162 → 182 ms: a register was spilled around the
    // inner loop's failure edge — Note [Failure arguments from memory]),
    // ht's objective 4.8–5.0 → 2.9 ms, ba's jacobian 84.8 → 78–81 ms, lse
    // unchanged.

    // Note [Failure arguments from memory]
    // ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    // A check's failure reports its operands: an index and, most often, a
    // length — a parameter of the function (an array's dimension). Passed
    // as a value, the length is live on the failure edge of every check in
    // a loop, and Cranelift's register allocator split it there: in gmm's
    // objective it kept the length in a register for the comparison but
    // stored it to its stack slot before every branch to the failure and
    // loaded it back on the loop's back edge — a store and a load through
    // memory in the chain of every iteration of the innermost loop, which
    // cost more than the dot product's additions. A parameter the body
    // never assigns has the value of its argument word throughout, so the
    // failure path loads it from the arguments again (`fail_word`) and the
    // loop keeps it in a register alone. Measured on 2026-12-05 (`slope
    // --threads 1 bench examples/gradbench/gmm.slope --input X --entry
    // objective --derivative jacobian`, d = 64, k = 100, n = 1000): the
    // objective 181–186 → 145–146 ms, the jacobian 630–696 → 600–616 ms.

    /// Goes on to `stay` when `c` is non-zero, else to `leave` — a block
    /// that leaves the loops around it (a failure, a `while` loop's exit),
    /// given as the branch's first target (Note [Exits first]).
    fn branch_unless(&mut self, c: Value, stay: Block, leave: Block) {
        let not_c = self.b.ins().icmp_imm_s(IntCC::Equal, c, 0);
        self.b.ins().brif(not_c, leave, &[], stay, &[]);
    }

    /// Ends the current block with a jump to `to` — unless the block is
    /// the unreachable one that follows a `Fail` (see `ends_unreachable`).
    fn continue_to(&mut self, to: Block) {
        if !self.ends_unreachable() {
            self.b.ins().jump(to, &[]);
        }
    }

    /// Whether the current block is unreachable (it follows a `Fail`), and
    /// if so ends it with a trap. Such a block must not jump anywhere: it
    /// would be a predecessor of the join, and every variable read after
    /// the join would get a block parameter fed by a zero from it — a check
    /// per entry dimension then cost a parameter per earlier dimension,
    /// quadratic code for a program with many checks.
    fn ends_unreachable(&mut self) -> bool {
        if !self.b.is_unreachable() {
            return false;
        }
        self.b.ins().trap(TrapCode::unwrap_user(1));
        true
    }

    /// `for index in start..end` by `step` (rotated: one compare-and-branch
    /// per iteration at the bottom), with `body` emitting the body.
    /// With polling on: leaves the function with [`INTERRUPTED`] when the
    /// runtime's interrupt flag is set. The load is atomic so that Cranelift
    /// never merges it with an earlier one (an inner loop must see the flag
    /// change while it runs).
    fn poll_interrupt(&mut self) {
        if !self.poll {
            return;
        }
        let flag = self.b.ins().iconst(types::I64, rt::interrupt_flag() as i64);
        let set = self.b.ins().atomic_load(types::I8, MemFlagsData::trusted(), flag);
        let interrupted = *self.interrupted.get_or_insert_with(|| self.b.create_block());
        let go_on = self.b.create_block();
        self.b.ins().brif(set, interrupted, &[], go_on, &[]);
        self.b.switch_to_block(go_on);
        self.b.seal_block(go_on);
    }

    /// A loop running `body` for `index` from `start` while below `end`, by
    /// `step`, on a counter of its own (the body cannot change the trip
    /// count). Rotated: one test before the first iteration, then one
    /// compare-and-branch per iteration at the bottom.
    fn counted_loop(
        &mut self,
        index: LVar,
        start: Value,
        end: Value,
        step: i64,
        body: impl FnOnce(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        let counter = self.b.declare_var(types::I64);
        self.b.def_var(counter, start);
        let (body_blk, exit) = (self.b.create_block(), self.b.create_block());
        let any = self.b.ins().icmp(IntCC::SignedLessThan, start, end);
        self.b.ins().brif(any, body_blk, &[], exit, &[]);
        self.b.switch_to_block(body_blk);
        let i = self.b.use_var(counter);
        self.b.def_var(self.var(index), i);
        body(self)?;
        if !self.ends_unreachable() {
            self.poll_interrupt();
            let next = self.b.ins().iadd_imm_s(i, step);
            self.b.def_var(counter, next);
            let more = self.b.ins().icmp(IntCC::SignedLessThan, next, end);
            self.b.ins().brif(more, body_blk, &[], exit, &[]);
        }
        self.b.seal_block(body_blk);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        Ok(())
    }

    /// The body of a vector loop (Note [Vector loops] in loops/opt/simd.rs):
    /// varying variables in vector registers, the others as in scalar code
    /// (integers hold lane 0's value).
    fn vector_body(&mut self, body: &[Inst], classes: &HashMap<LVar, Lane>) -> Result<(), String> {
        let mut vregs: HashMap<LVar, Value> = HashMap::default();
        for inst in body {
            match inst {
                Inst::Let(v, rhs) if classes.get(v) == Some(&Lane::Varying) => {
                    let val = self.vector_rhs(rhs, classes, &vregs)?;
                    vregs.insert(*v, val);
                }
                Inst::Store { elem: MTy::F64, base, index, value } => {
                    let addr = self.address(MTy::F64, *base, *index);
                    let v = self.vector_operand(*value, classes, &vregs);
                    self.b.ins().store(vector_flags(), v, addr, 0);
                }
                i => self.inst(i)?,
            }
        }
        Ok(())
    }

    /// `o` in a vector register: its own, or a scalar splat to every lane.
    fn vector_operand(&mut self, o: Operand, classes: &HashMap<LVar, Lane>, vregs: &HashMap<LVar, Value>) -> Value {
        if let Operand::Var(v) = o {
            if let Some(&r) = vregs.get(&v) {
                return r;
            }
        }
        debug_assert!(!matches!(lane(classes, o), Lane::Stride(_)), "an index used as a vector value");
        let x = self.operand(o);
        let ty = if self.ty(o) == MTy::Bool { types::I64X2 } else { types::F64X2 };
        if self.ty(o) == MTy::Bool {
            // A uniform condition as a mask: all ones or all zeros.
            let wide = self.b.ins().uextend(types::I64, x);
            let mask = self.b.ins().ineg(wide);
            return self.b.ins().splat(ty, mask);
        }
        self.b.ins().splat(ty, x)
    }

    fn vector_rhs(
        &mut self,
        rhs: &Rhs,
        classes: &HashMap<LVar, Lane>,
        vregs: &HashMap<LVar, Value>,
    ) -> Result<Value, String> {
        let op = |g: &mut Self, o: Operand| g.vector_operand(o, classes, vregs);
        Ok(match rhs {
            Rhs::Use(o) => op(self, *o),
            Rhs::Load { elem: MTy::F64, base, index } => {
                let addr = self.address(MTy::F64, *base, *index);
                self.b.ins().load(types::F64X2, vector_flags(), addr, 0)
            }
            Rhs::Unary(UnOp::Neg, a) => {
                let a = op(self, *a);
                self.b.ins().fneg(a)
            }
            Rhs::Unary(UnOp::Abs, a) => {
                let a = op(self, *a);
                self.b.ins().fabs(a)
            }
            Rhs::Unary(UnOp::Sqrt, a) => {
                let a = op(self, *a);
                self.b.ins().sqrt(a)
            }
            Rhs::Binary(bop, x, y) => {
                let (a, b) = (op(self, *x), op(self, *y));
                match bop {
                    BinOp::Add => self.b.ins().fadd(a, b),
                    BinOp::Sub => self.b.ins().fsub(a, b),
                    BinOp::Mul => self.b.ins().fmul(a, b),
                    BinOp::Div => self.b.ins().fdiv(a, b),
                    // The scalar NaN rules, lane by lane (see `binary`).
                    BinOp::Min | BinOp::Max => {
                        let cc = if *bop == BinOp::Min { FloatCC::LessThan } else { FloatCC::GreaterThan };
                        let wins = self.float_mask(cc, b, a);
                        let a_nan = self.float_mask(FloatCC::Unordered, a, a);
                        let b_nan = self.float_mask(FloatCC::Unordered, b, b);
                        let r = self.b.ins().bitselect(wins, b, a);
                        let r = self.b.ins().bitselect(b_nan, b, r);
                        self.b.ins().bitselect(a_nan, a, r)
                    }
                    cmp if cmp.is_comparison() => {
                        let cc = match cmp {
                            BinOp::Eq => FloatCC::Equal,
                            BinOp::Ne => FloatCC::NotEqual,
                            BinOp::Lt => FloatCC::LessThan,
                            BinOp::Le => FloatCC::LessThanOrEqual,
                            BinOp::Gt => FloatCC::GreaterThan,
                            _ => FloatCC::GreaterThanOrEqual,
                        };
                        self.b.ins().fcmp(cc, a, b)
                    }
                    _ => return Err(format!("internal error: `{}` in a vector loop", bop.symbol())),
                }
            }
            Rhs::Select(c, x, y) => {
                let (a, b) = (op(self, *x), op(self, *y));
                let mask = op(self, *c);
                let mask = self.b.ins().bitcast(types::F64X2, lane_order(), mask);
                self.b.ins().bitselect(mask, a, b)
            }
            Rhs::Convert(MTy::F64, o) => {
                // Lane l is `f64 (o + stride·l)`.
                let k = match lane(classes, *o) {
                    Lane::Stride(k) => k,
                    _ => 0,
                };
                let first = self.operand(*o);
                let second = self.b.ins().iadd_imm_s(first, k);
                let (x0, x1) =
                    (self.b.ins().fcvt_from_sint(types::F64, first), self.b.ins().fcvt_from_sint(types::F64, second));
                let v = self.b.ins().splat(types::F64X2, x0);
                self.b.ins().insertlane(v, x1, 1)
            }
            r => return Err(format!("internal error: `{r:?}` in a vector loop")),
        })
    }

    /// A lane mask of `cc` on two `f64x2` values, as `f64x2` bits.
    fn float_mask(&mut self, cc: FloatCC, a: Value, b: Value) -> Value {
        let m = self.b.ins().fcmp(cc, a, b);
        self.b.ins().bitcast(types::F64X2, lane_order(), m)
    }

    /// The value of `rhs`, assigned to a variable of type `to`.
    fn rhs(&mut self, rhs: &Rhs, to: MTy) -> Result<Value, String> {
        Ok(match rhs {
            Rhs::Use(o) => self.operand(*o),
            Rhs::Unary(op, x) => self.unary(*op, *x)?,
            Rhs::Binary(op, x, y) => self.binary(*op, *x, *y)?,
            Rhs::Convert(t, x) => self.convert(*t, *x),
            Rhs::Select(c, x, y) => {
                let (c, x, y) = (self.operand(*c), self.operand(*x), self.operand(*y));
                self.b.ins().select(c, x, y)
            }
            Rhs::Load { elem, base, index } => {
                let addr = self.address(*elem, *base, *index);
                self.b.ins().load(cl_type(*elem), MemFlagsData::trusted(), addr, 0)
            }
            Rhs::Offset { elem, base, index } => self.address(*elem, *base, *index),
            Rhs::Alloc { elem, count, site, hoisted } => {
                let n = self.operand(*count);
                let size = self.b.ins().iconst(types::I64, elem.size());
                let ctx = self.ctx;
                let ptr = self.call("slope_alloc", &[types::I64; 3], types::I64, &[ctx, n, size]);
                // A null buffer: the memory could not be had (E0207). A hoisted
                // allocation is checked where it came from (Note [Hoisted buffers]).
                if !*hoisted {
                    let ok = self.b.create_block();
                    let failed = self.b.create_block();
                    self.b.set_cold_block(failed);
                    self.branch_unless(ptr, ok, failed);
                    self.b.seal_block(failed);
                    self.b.switch_to_block(failed);
                    self.fail(*site, &[*count]);
                    self.b.seal_block(ok);
                    self.b.switch_to_block(ok);
                }
                ptr
            }
            Rhs::Mark => {
                let ctx = self.ctx;
                self.call("slope_mark", &[types::I64], types::I64, &[ctx])
            }
            Rhs::WhileLimit => self.b.ins().load(types::I64, MemFlagsData::trusted(), self.ctx, 0),
            Rhs::InRange { index, bound } => {
                // The bound is a size (>= 0): a negative index is a huge unsigned one.
                let (i, n) = (self.operand(*index), self.operand(*bound));
                self.b.ins().icmp(IntCC::UnsignedLessThan, i, n)
            }
        })
        .and_then(|v| {
            let got = self.b.func.dfg.value_type(v);
            if got == cl_type(to) {
                Ok(v)
            } else {
                Err(format!("internal error: `{rhs:?}` gives a {got}, assigned to a {}", to.name()))
            }
        })
    }

    fn operand(&mut self, o: Operand) -> Value {
        match o {
            Operand::Var(v) => self.b.use_var(self.var(v)),
            Operand::Const(c) => match c {
                Const::F64(x) => self.b.ins().f64const(x),
                Const::F32(x) => self.b.ins().f32const(x),
                Const::I64(x) => self.b.ins().iconst(types::I64, x),
                Const::Bool(x) => self.b.ins().iconst(types::I8, i64::from(x)),
            },
        }
    }

    /// `o` as the i64 word a failure message is rendered from.
    fn word(&mut self, o: Operand) -> Value {
        let v = self.operand(o);
        match self.ty(o) {
            MTy::I64 => v,
            MTy::Bool => self.b.ins().uextend(types::I64, v),
            MTy::F64 => self.b.ins().bitcast(types::I64, MemFlagsData::new(), v),
            MTy::F32 => {
                let bits = self.b.ins().bitcast(types::I32, MemFlagsData::new(), v);
                self.b.ins().uextend(types::I64, bits)
            }
        }
    }

    /// `base + index * size(elem)`.
    fn address(&mut self, elem: MTy, base: Operand, index: Operand) -> Value {
        let base = self.operand(base);
        let offset = self.bytes(elem, index);
        self.b.ins().iadd(base, offset)
    }

    /// A failure's argument as a word: a parameter that never changes read
    /// from the arguments again (Note [Failure arguments from memory]).
    fn fail_word(&mut self, a: Operand) -> Value {
        match a.var().and_then(|v| self.constant_params.get(&v)) {
            Some(&k) => self.arg_word(types::I64, k),
            None => self.word(a),
        }
    }

    /// Records the failure of `site` with `args` and leaves the function.
    fn fail(&mut self, site: u32, args: &[Operand]) {
        if args.len() <= SHARED_FAIL_ARGS {
            // Jump to the shared failure block: a check costs a branch, not calls.
            let shared = *self.fail_shared.get_or_insert_with(|| {
                let blk = self.b.create_block();
                for _ in 0..2 + SHARED_FAIL_ARGS {
                    self.b.append_block_param(blk, types::I64);
                }
                blk
            });
            let mut vals = vec![
                self.b.ins().iconst(types::I64, i64::from(site)),
                self.b.ins().iconst(types::I64, args.len() as i64),
            ];
            for &a in args {
                vals.push(self.fail_word(a));
            }
            let zero = self.b.ins().iconst(types::I64, 0);
            vals.resize(2 + SHARED_FAIL_ARGS, zero);
            let block_args: Vec<BlockArg> = vals.into_iter().map(BlockArg::from).collect();
            self.b.ins().jump(shared, &block_args);
            return;
        }
        for &a in args {
            let w = self.fail_word(a);
            let ctx = self.ctx;
            self.call_void("slope_fail_arg", &[types::I64; 2], &[ctx, w]);
        }
        let site = self.b.ins().iconst(types::I64, i64::from(site));
        let ctx = self.ctx;
        self.call_void("slope_fail", &[types::I64; 2], &[ctx, site]);
        let exit = *self.fail_exit.get_or_insert_with(|| self.b.create_block());
        self.b.ins().jump(exit, &[]);
    }

    /// A copy of a few `bytes` as loads and stores — 16 bytes at a time,
    /// then 8, 4, 2 and 1 — every load before the first store, so that
    /// overlapping ranges copy as `memmove` does (Note [Small copies]).
    fn copy_inline(&mut self, dst: Value, src: Value, bytes: i32) {
        let mut pieces = Vec::new();
        let mut at = 0;
        for (ty, size) in [(types::I64X2, 16), (types::I64, 8), (types::I32, 4), (types::I16, 2), (types::I8, 1)] {
            while bytes - at >= size {
                pieces.push((ty, at));
                at += size;
            }
        }
        let values: Vec<Value> =
            pieces.iter().map(|&(ty, at)| self.b.ins().load(ty, vector_flags(), src, at)).collect();
        for (v, &(_, at)) in values.into_iter().zip(&pieces) {
            self.b.ins().store(vector_flags(), v, dst, at);
        }
    }

    fn bytes(&mut self, elem: MTy, count: Operand) -> Value {
        if let Some(n) = count.as_i64() {
            return self.b.ins().iconst(types::I64, n.wrapping_mul(elem.size()));
        }
        let n = self.operand(count);
        match elem.size() {
            1 => n,
            size => self.b.ins().ishl_imm_u(n, i64::from(size.trailing_zeros())),
        }
    }

    /// The runtime function `name` with parameters `params` (and result
    /// `ret`), imported by name (Note [Functions compiled in parallel]).
    fn import(&mut self, name: &str, params: &[Type], ret: Option<Type>) -> FuncRef {
        if let Some(&r) = self.refs.get(name) {
            return r;
        }
        let mut sig = Signature::new(self.target.config.default_call_conv);
        sig.params.extend(params.iter().map(|&t| AbiParam::new(t)));
        sig.returns.extend(ret.map(AbiParam::new));
        let signature = self.b.import_signature(sig);
        let r = self.b.import_function(ExtFuncData {
            name: ExternalName::testcase(name),
            signature,
            colocated: false,
            patchable: false,
        });
        self.refs.insert(name.to_string(), r);
        r
    }

    /// The function `id` of the module (a segment), as
    /// `Module::declare_func_in_func` imports it, but not colocated: the JIT
    /// maps functions wherever memory is free, possibly more than 2 GiB
    /// apart, so the call is not pc-relative.
    fn declared_func(&mut self, id: FuncId) -> FuncRef {
        let decl = self.target.declarations.get_function_decl(id);
        let signature = self.b.import_signature(decl.signature.clone());
        let name = self.b.func.declare_imported_user_function(UserExternalName::new(0, id.as_u32()));
        self.b.import_function(ExtFuncData {
            name: ExternalName::user(name),
            signature,
            colocated: false,
            patchable: false,
        })
    }

    /// The data object `data` of the module, as
    /// `Module::declare_data_in_func` makes it.
    fn declared_data(&mut self, data: DataId) -> cranelift::codegen::ir::GlobalValue {
        let decl = self.target.declarations.get_data_decl(data);
        let name = self.b.func.declare_imported_user_function(UserExternalName::new(1, data.as_u32()));
        self.b.create_global_value(GlobalValueData::Symbol {
            name: ExternalName::user(name),
            offset: 0.into(),
            colocated: decl.linkage.is_final(),
            tls: decl.tls,
        })
    }

    /// Calls the runtime function `name`, which returns nothing.
    fn call_void(&mut self, name: &str, params: &[Type], args: &[Value]) {
        let r = self.import(name, params, None);
        self.b.ins().call(r, args);
    }

    /// Calls the runtime function `name`, which returns a `ret`.
    fn call(&mut self, name: &str, params: &[Type], ret: Type, args: &[Value]) -> Value {
        let r = self.import(name, params, Some(ret));
        let inst = self.b.ins().call(r, args);
        self.b.inst_results(inst)[0]
    }

    /// Calls the host's `slope_{name}_{f64|f32}` on float arguments.
    fn host_float(&mut self, name: &str, t: MTy, args: &[Value]) -> Value {
        let ty = cl_type(t);
        let params = vec![ty; args.len()];
        self.call(&format!("slope_{name}_{}", t.name()), &params, ty, args)
    }

    fn float_const(&mut self, t: MTy, x: f64) -> Value {
        match t {
            MTy::F32 => self.b.ins().f32const(x as f32),
            _ => self.b.ins().f64const(x),
        }
    }

    /// A unary primitive: a host call or the instructions its row in
    /// `prims` says are written here (Note [Adding a primitive]).
    fn unary(&mut self, op: UnOp, xo: Operand) -> Result<Value, String> {
        let t = self.ty(xo);
        let x = self.operand(xo);
        let bad = || Err(format!("internal error: `{}` applied to a {}", op.name(), t.name()));
        if op == UnOp::StopGradient {
            return Ok(x);
        }
        let float = matches!(t, MTy::F64 | MTy::F32);
        if let (Lowering::Host(name), true) = (op.prim().lowering, float) {
            return Ok(self.host_float(name, t, &[x]));
        }
        Ok(match t {
            MTy::F64 | MTy::F32 => match op {
                UnOp::Neg => self.b.ins().fneg(x),
                UnOp::Abs => self.b.ins().fabs(x),
                UnOp::Sqrt => self.b.ins().sqrt(x),
                UnOp::Sigmoid => {
                    // 1 / (1 + exp(-x)), in the interpreter's order.
                    let neg = self.b.ins().fneg(x);
                    let e = self.host_float("exp", t, &[neg]);
                    let one = self.float_const(t, 1.0);
                    let d = self.b.ins().fadd(one, e);
                    self.b.ins().fdiv(one, d)
                }
                UnOp::Sign => {
                    // ±1 by the sign; zeros and NaN as they are.
                    let zero = self.float_const(t, 0.0);
                    let one = self.float_const(t, 1.0);
                    let pos = self.b.ins().fcmp(FloatCC::GreaterThan, x, zero);
                    let neg = self.b.ins().fcmp(FloatCC::LessThan, x, zero);
                    let minus = self.b.ins().fneg(one);
                    let r = self.b.ins().select(neg, minus, x);
                    self.b.ins().select(pos, one, r)
                }
                UnOp::IsNan => self.b.ins().fcmp(FloatCC::Unordered, x, x),
                UnOp::IsInf => {
                    let a = self.b.ins().fabs(x);
                    let inf = self.float_const(t, f64::INFINITY);
                    self.b.ins().fcmp(FloatCC::Equal, a, inf)
                }
                _ => return bad(),
            },
            MTy::I64 => match op {
                UnOp::Neg => self.b.ins().ineg(x),
                UnOp::Abs => self.b.ins().iabs(x),
                UnOp::Sign => {
                    // (x > 0) - (x < 0)
                    let pos = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, x, 0);
                    let neg = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, x, 0);
                    let pos = self.b.ins().uextend(types::I64, pos);
                    let neg = self.b.ins().uextend(types::I64, neg);
                    self.b.ins().isub(pos, neg)
                }
                _ => return bad(),
            },
            MTy::Bool => match op {
                UnOp::Not => self.b.ins().bxor_imm_u(x, 1),
                _ => return bad(),
            },
        })
    }

    fn binary(&mut self, op: BinOp, xo: Operand, yo: Operand) -> Result<Value, String> {
        let (t, u) = (self.ty(xo), self.ty(yo));
        if u != t {
            return Err(format!("internal error: `{}` applied to a {} and a {}", op.symbol(), t.name(), u.name()));
        }
        let (a, b) = (self.operand(xo), self.operand(yo));
        let bad = || Err(format!("internal error: `{}` applied to {}s", op.symbol(), t.name()));
        Ok(match t {
            MTy::F64 | MTy::F32 => match op {
                BinOp::Add => self.b.ins().fadd(a, b),
                BinOp::Sub => self.b.ins().fsub(a, b),
                BinOp::Mul => self.b.ins().fmul(a, b),
                BinOp::Div => self.b.ins().fdiv(a, b),
                BinOp::Rem => self.host_float("fmod", t, &[a, b]),
                BinOp::Pow => self.host_float("pow", t, &[a, b]),
                BinOp::Copysign => self.b.ins().fcopysign(a, b),
                BinOp::Atan2 | BinOp::Hypot => match crate::prims::binary(op).map(|r| r.lowering) {
                    Some(Lowering::Host(name)) => self.host_float(name, t, &[a, b]),
                    _ => return bad(),
                },
                // NaN in a gives a; else NaN in b gives b; else b if it wins, else a.
                BinOp::Min | BinOp::Max => {
                    let cc = if op == BinOp::Min { FloatCC::LessThan } else { FloatCC::GreaterThan };
                    let wins = self.b.ins().fcmp(cc, b, a);
                    let a_nan = self.b.ins().fcmp(FloatCC::Unordered, a, a);
                    let b_nan = self.b.ins().fcmp(FloatCC::Unordered, b, b);
                    let r = self.b.ins().select(wins, b, a);
                    let r = self.b.ins().select(b_nan, b, r);
                    self.b.ins().select(a_nan, a, r)
                }
                BinOp::Eq => self.b.ins().fcmp(FloatCC::Equal, a, b),
                BinOp::Ne => self.b.ins().fcmp(FloatCC::NotEqual, a, b),
                BinOp::Lt => self.b.ins().fcmp(FloatCC::LessThan, a, b),
                BinOp::Le => self.b.ins().fcmp(FloatCC::LessThanOrEqual, a, b),
                BinOp::Gt => self.b.ins().fcmp(FloatCC::GreaterThan, a, b),
                BinOp::Ge => self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, a, b),
                BinOp::And | BinOp::Or => return bad(),
                BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor | BinOp::Shl | BinOp::Shr => return bad(),
            },
            MTy::I64 => match op {
                BinOp::Add => self.b.ins().iadd(a, b),
                BinOp::Sub => self.b.ins().isub(a, b),
                BinOp::Mul => self.b.ins().imul(a, b),
                // A constant divisor other than 0 and -1 needs no guard
                // (Cranelift turns it into multiplications and shifts).
                BinOp::Div | BinOp::Rem if matches!(yo, Operand::Const(Const::I64(d)) if d != 0 && d != -1) => {
                    if op == BinOp::Div {
                        self.b.ins().sdiv(a, b)
                    } else {
                        self.b.ins().srem(a, b)
                    }
                }
                BinOp::Div | BinOp::Rem => {
                    // i64::MIN / -1 traps in hardware: divide by 1 instead and
                    // fix the result up (a / -1 = -a wrapping, a % -1 = 0).
                    let minus_one = self.b.ins().icmp_imm_s(IntCC::Equal, b, -1);
                    let one = self.b.ins().iconst(types::I64, 1);
                    let safe = self.b.ins().select(minus_one, one, b);
                    if op == BinOp::Div {
                        let q = self.b.ins().sdiv(a, safe);
                        let neg = self.b.ins().ineg(a);
                        self.b.ins().select(minus_one, neg, q)
                    } else {
                        let r = self.b.ins().srem(a, safe);
                        let zero = self.b.ins().iconst(types::I64, 0);
                        self.b.ins().select(minus_one, zero, r)
                    }
                }
                BinOp::Pow => self.call("slope_ipow", &[types::I64; 2], types::I64, &[a, b]),
                BinOp::Min => self.b.ins().smin(a, b),
                BinOp::Max => self.b.ins().smax(a, b),
                BinOp::Eq => self.b.ins().icmp(IntCC::Equal, a, b),
                BinOp::Ne => self.b.ins().icmp(IntCC::NotEqual, a, b),
                BinOp::Lt => self.b.ins().icmp(IntCC::SignedLessThan, a, b),
                BinOp::Le => self.b.ins().icmp(IntCC::SignedLessThanOrEqual, a, b),
                BinOp::Gt => self.b.ins().icmp(IntCC::SignedGreaterThan, a, b),
                BinOp::Ge => self.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, a, b),
                BinOp::BitAnd => self.b.ins().band(a, b),
                BinOp::BitOr => self.b.ins().bor(a, b),
                BinOp::BitXor => self.b.ins().bxor(a, b),
                // Cranelift takes the amount modulo the width, as the interpreter.
                BinOp::Shl => self.b.ins().ishl(a, b),
                BinOp::Shr => self.b.ins().ushr(a, b),
                BinOp::And | BinOp::Or | BinOp::Atan2 | BinOp::Hypot | BinOp::Copysign => return bad(),
            },
            // On 0/1 bytes, the unsigned comparisons are the bool orderings (false < true).
            MTy::Bool => match op {
                BinOp::And | BinOp::Min => self.b.ins().band(a, b),
                BinOp::Or | BinOp::Max => self.b.ins().bor(a, b),
                BinOp::Eq => self.b.ins().icmp(IntCC::Equal, a, b),
                BinOp::Ne => self.b.ins().icmp(IntCC::NotEqual, a, b),
                BinOp::Lt => self.b.ins().icmp(IntCC::UnsignedLessThan, a, b),
                BinOp::Le => self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, a, b),
                BinOp::Gt => self.b.ins().icmp(IntCC::UnsignedGreaterThan, a, b),
                BinOp::Ge => self.b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, a, b),
                _ => return bad(),
            },
        })
    }

    /// Rust `as` semantics (float to int truncates, saturates, NaN → 0); to bool is `x != 0`.
    fn convert(&mut self, to: MTy, xo: Operand) -> Value {
        let from = self.ty(xo);
        let x = self.operand(xo);
        match (from, to) {
            _ if from == to => x,
            (MTy::F32, MTy::F64) => self.b.ins().fpromote(types::F64, x),
            (MTy::F64, MTy::F32) => self.b.ins().fdemote(types::F32, x),
            (MTy::I64, MTy::F64 | MTy::F32) => self.b.ins().fcvt_from_sint(cl_type(to), x),
            (MTy::Bool, MTy::F64 | MTy::F32) => {
                let wide = self.b.ins().uextend(types::I64, x);
                self.b.ins().fcvt_from_sint(cl_type(to), wide)
            }
            (MTy::F64 | MTy::F32, MTy::I64) => self.b.ins().fcvt_to_sint_sat(types::I64, x),
            (MTy::Bool, MTy::I64) => self.b.ins().uextend(types::I64, x),
            (MTy::F64 | MTy::F32, MTy::Bool) => {
                // NaN != 0 is true, as in Rust.
                let zero = self.float_const(from, 0.0);
                self.b.ins().fcmp(FloatCC::NotEqual, x, zero)
            }
            (MTy::I64, MTy::Bool) => self.b.ins().icmp_imm_s(IntCC::NotEqual, x, 0),
            _ => unreachable!("every pair of machine types is covered"),
        }
    }
}

impl Native {
    /// The compiled function `name`.
    fn func(&self, name: &str) -> Option<&(loops::Func, Entry)> {
        self.funcs.iter().find(|(f, _)| f.name == name)
    }

    /// Runs `name` on `args` (one value per parameter leaf), failing `while`
    /// loops after `while_limit` iterations. Errors are the interpreter's.
    pub fn call(&self, name: &str, args: &[HostValue], while_limit: u64) -> Result<Vec<HostValue>, RuntimeError> {
        self.call_timed(name, args, while_limit, &mut || 0).map(|(results, _)| results)
    }

    /// [`Self::call`], also returning how long the native code alone ran as
    /// `clock` (nanoseconds) measures it: not passing the arguments in nor
    /// copying the results out of the arena.
    pub fn call_timed(
        &self,
        name: &str,
        args: &[HostValue],
        while_limit: u64,
        clock: &mut dyn FnMut() -> u64,
    ) -> Result<(Vec<HostValue>, u64), RuntimeError> {
        let Some((f, code)) = self.func(name) else {
            return Err(error(Code::E0301, format!("no function named `{name}`")));
        };
        let words = arg_words(f, args)?;
        let n_results: usize = f.result_leaves.iter().map(|l| l.words()).sum();
        let mut results = vec![0u64; n_results];
        let mut ctx = self.take_ctx();
        ctx.reset();
        ctx.reset_peak();
        ctx.while_limit = i64::try_from(while_limit).unwrap_or(i64::MAX);
        ctx.threads = self.threads.load(Ordering::Relaxed).max(1);
        ctx.chunk_limit = self.chunk_limit.load(Ordering::Relaxed);
        // SAFETY: `words` holds a word per parameter of `f` and the arrays
        // behind its pointers outlive the call; `results` has a word per result.
        let start = clock();
        let status = unsafe { code(words.as_ptr(), results.as_mut_ptr(), &mut ctx) };
        let nanoseconds = clock().saturating_sub(start);
        let out = match status {
            // SAFETY: on success the result pointers point to live buffers of
            // the dimensions next to them (the arena is not reset yet).
            0 => Ok((unsafe { result_vals(f, &results, ctx.threads) }, nanoseconds)),
            s if i64::from(s) == INTERRUPTED => Err(error(Code::E0208, "interrupted".into())),
            _ => Err(match ctx.take_failure() {
                Some(failure) => match self.failing_function(f, failure.function) {
                    Some(f) if (failure.site as usize) < f.sites.len() => {
                        let s = &f.sites[failure.site as usize];
                        RuntimeError { code: s.code, span: s.span, message: s.message.render(&failure.args) }
                    }
                    _ => error(Code::E0900, format!("internal compiler error: native code failed with {failure:?}")),
                },
                None => error(Code::E0900, format!("internal compiler error: native code failed with status {status}")),
            }),
        };
        self.last_peak.store(ctx.peak_bytes(), Ordering::Relaxed);
        ctx.reset();
        self.give_back(ctx);
        out
    }

    /// The function whose sites a failure of a call of `called` names: its
    /// own, or those of the entry `failed_in` (by program index) that a
    /// call inside it failed in.
    fn failing_function<'f>(&'f self, called: &'f loops::Func, failed_in: Option<u32>) -> Option<&'f loops::Func> {
        match failed_in {
            None => Some(called),
            Some(k) => self.funcs.get(k as usize).map(|(f, _)| f),
        }
    }

    /// A context for one call: an idle one, else a new one (Note [Calls
    /// from several threads]).
    fn take_ctx(&self) -> Ctx {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_else(|| Ctx::new(0))
    }

    /// Returns a context to the idle list; beyond [`IDLE_CONTEXTS`] it is
    /// dropped with its cache (a burst of concurrent calls does not keep a
    /// cache per call forever).
    fn give_back(&self, ctx: Ctx) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_CONTEXTS {
            idle.push(ctx);
        }
    }

    /// Runs parallel loops on `n` threads (at least 1) from the next call on.
    /// Results are the same for every count (Note [Deterministic chunks] in
    /// `slope_runtime::parallel`).
    pub fn set_threads(&self, n: usize) {
        self.threads.store(n.max(1), Ordering::Relaxed);
    }

    /// Cuts parallel loops into chunks of at most `k` iterations (0: the
    /// compiler's chunk sizes). For tests: chunking then shows on small inputs.
    pub fn set_chunk_limit(&self, k: i64) {
        self.chunk_limit.store(k.max(0), Ordering::Relaxed);
    }

    /// The most arena bytes the last call to finish held at once.
    pub fn peak_bytes(&self) -> usize {
        self.last_peak.load(Ordering::Relaxed)
    }

    /// Arena bytes held by contexts no call is using: zero between calls
    /// (nothing leaks from a call).
    pub fn held_bytes(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).iter().map(Ctx::bytes_held).sum()
    }
}

fn error(code: Code, message: String) -> RuntimeError {
    RuntimeError { code, message, span: Span::default() }
}

/// The element type and rank of a leaf value (a scalar or an array); none
/// for a tuple or a record, which no parameter leaf takes.
fn leaf_type(v: &HostValue) -> Option<(ElemType, usize)> {
    match v {
        HostValue::Scalar(s) => Some((s.elem_type(), 0)),
        HostValue::Array(a) => Some((a.elem_type(), a.rank())),
        HostValue::Tuple(_) | HostValue::Record(_) => None,
    }
}

/// A leaf type as the IR writes it: `f64`, `[][]i64`.
fn type_text(elem: ElemType, rank: usize) -> String {
    format!("{}{}", "[]".repeat(rank), elem.name())
}

/// The argument words of `f` for `args`, checked against its parameter leaves.
fn arg_words(f: &loops::Func, args: &[HostValue]) -> Result<Vec<u64>, RuntimeError> {
    if args.len() != f.param_leaves.len() {
        let message = format!("`{}` takes {} arguments but was given {}", f.name, f.param_leaves.len(), args.len());
        return Err(error(Code::E0302, message));
    }
    let mut words = Vec::with_capacity(f.params.len());
    for (i, (leaf, a)) in f.param_leaves.iter().zip(args).enumerate() {
        let got = leaf_type(a);
        if got != Some((leaf.elem.elem_type(), leaf.rank as usize)) {
            let name = f.params.get(words.len()).map_or("?", |&p| f.vars[p.0 as usize].0.as_str());
            let want = type_text(leaf.elem.elem_type(), leaf.rank as usize);
            let got = got.map_or("a tuple or record".to_string(), |(elem, rank)| type_text(elem, rank));
            let message =
                format!("argument {} of `{}` (`{name}`) must be {want}, but the value is {got}", i + 1, f.name);
            return Err(error(Code::E0302, message));
        }
        // (An array's value shares `a`'s buffer, which outlives the call.)
        slope_runtime::words::push_words(a, &mut words);
    }
    debug_assert_eq!(words.len(), f.params.len(), "parameter leaves and words disagree");
    Ok(words)
}

/// The results of `f` from its result words.
///
/// # Safety
/// Every array leaf's pointer must point to `product(dims)` live elements.
unsafe fn result_vals(f: &loops::Func, words: &[u64], threads: usize) -> Vec<HostValue> {
    let leaves = f.result_leaves.iter().map(|l| (l.elem.elem_type(), l.rank));
    // SAFETY: the caller's promise.
    unsafe { slope_runtime::words::read_results(leaves, words, threads) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::FileId;
    use crate::ir::interp;
    use crate::ir::interp::Val;

    /// `Native::call` on interpreter values, so that results compare with
    /// the interpreter's directly.
    trait CallVals {
        fn call_vals(&self, name: &str, args: &[Val], while_limit: u64) -> Result<Vec<Val>, RuntimeError>;
    }

    impl CallVals for Native {
        fn call_vals(&self, name: &str, args: &[Val], while_limit: u64) -> Result<Vec<Val>, RuntimeError> {
            let args: Vec<HostValue> = args.iter().map(Val::to_value).collect();
            let results = self.call(name, &args, while_limit)?;
            Ok(results.iter().map(|v| Val::from_value(v).expect("result leaves")).collect())
        }
    }
    use crate::loops::Leaf;
    use crate::loops::{Message, Site};
    use crate::types::ScalarType;
    use slope_runtime::{Array, ArrayData};
    use std::rc::Rc;

    /// Builds a `loops::Func` by hand.
    struct Fb(loops::Func);

    impl Fb {
        fn new(name: &str) -> Fb {
            Fb(loops::Func {
                name: name.into(),
                vars: vec![],
                params: vec![],
                param_leaves: vec![],
                body: vec![],
                results: vec![],
                result_leaves: vec![],
                // Site 0: allocation failure (every `Alloc` below names it).
                sites: vec![Site {
                    code: Code::E0207,
                    span: Span::new(FileId(0), 0, 3),
                    message: Message::OutOfMemory,
                }],
                dims: vec![],
                loop_facts: vec![],
            })
        }
        fn var(&mut self, name: &str, t: MTy) -> LVar {
            self.0.vars.push((name.into(), t));
            LVar(self.0.vars.len() as u32 - 1)
        }
        /// A parameter leaf: its scalar, or its pointer then its dims.
        fn param(&mut self, name: &str, elem: MTy, rank: u32) -> Vec<LVar> {
            self.0.param_leaves.push(Leaf { elem, rank });
            let words: Vec<LVar> = if rank == 0 {
                vec![self.var(name, elem)]
            } else {
                (0..=rank).map(|_| self.var(name, MTy::I64)).collect()
            };
            self.0.params.extend(&words);
            words
        }
        fn result(&mut self, elem: MTy, words: &[Operand]) {
            self.0.result_leaves.push(Leaf { elem, rank: words.len() as u32 - 1 });
            self.0.results.extend(words);
        }
        fn site(&mut self, code: Code, message: Message) -> u32 {
            self.0.sites.push(Site { code, span: Span::new(FileId(0), 4, 7), message });
            self.0.sites.len() as u32 - 1
        }
    }

    fn v(x: LVar) -> Operand {
        Operand::Var(x)
    }
    fn f64c(x: f64) -> Operand {
        Operand::Const(Const::F64(x))
    }
    fn i64c(x: i64) -> Operand {
        Operand::i64(x)
    }
    fn let_(x: LVar, rhs: Rhs) -> Inst {
        Inst::Let(x, rhs)
    }
    fn bin(op: BinOp, a: Operand, b: Operand) -> Rhs {
        Rhs::Binary(op, a, b)
    }
    fn f64s(xs: &[f64]) -> Val {
        Val::Arr(Rc::new(Array::new(vec![xs.len()], ArrayData::F64(xs.to_vec()))))
    }

    fn native(funcs: Vec<Fb>) -> Native {
        let program = loops::Program { funcs: funcs.into_iter().map(|f| f.0).collect(), segments: Vec::new() };
        compile(&program, false).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `sum(xs: []f64) -> f64`.
    fn sum_func() -> Fb {
        let mut f = Fb::new("sum");
        let xs = f.param("xs", MTy::F64, 1);
        let (acc, i, x) = (f.var("acc", MTy::F64), f.var("i", MTy::I64), f.var("x", MTy::F64));
        f.0.body = vec![
            let_(acc, Rhs::Use(f64c(0.0))),
            Inst::For {
                lanes: 1,
                parallel: false,
                start: i64c(0),
                index: i,
                bound: v(xs[1]),
                body: vec![
                    let_(x, Rhs::Load { elem: MTy::F64, base: v(xs[0]), index: v(i) }),
                    let_(acc, bin(BinOp::Add, v(acc), v(x))),
                ],
            },
        ];
        f.result(MTy::F64, &[v(acc)]);
        f
    }

    #[test]
    fn sum_loop_over_an_array() {
        let n = native(vec![sum_func()]);
        assert_eq!(n.call_vals("sum", &[f64s(&[1.0, 2.0, 3.5])], 10), Ok(vec![Val::F64(6.5)]));
        assert_eq!(n.call_vals("sum", &[f64s(&[])], 10), Ok(vec![Val::F64(0.0)]));
        let e = n.call_vals("sum", &[Val::F64(1.0)], 10).unwrap_err();
        assert_eq!(e.code, Code::E0302);
        assert_eq!(e.message, "argument 1 of `sum` (`xs`) must be []f64, but the value is f64");
        let e = n.call_vals("sum", &[], 10).unwrap_err();
        assert_eq!(e.message, "`sum` takes 1 arguments but was given 0");
        assert_eq!(n.call_vals("nope", &[], 10).unwrap_err().code, Code::E0301);
    }

    /// Note [Functions aligned to 64 bytes]: however many functions the
    /// module holds, and however long each is, every one starts on a line.
    #[test]
    fn every_function_starts_on_a_64_byte_line() {
        let funcs: Vec<Fb> = (0..5)
            .map(|k| {
                let mut f = sum_func();
                f.0.name = format!("sum{k}");
                f
            })
            .collect();
        let n = native(funcs);
        assert_eq!(n.funcs.len(), 5);
        for (f, code) in &n.funcs {
            assert_eq!(*code as usize % 64, 0, "`{}` starts at {:p}", f.name, *code as *const u8);
        }
    }

    #[test]
    fn alloc_and_store_return_an_array() {
        let mut f = Fb::new("squares");
        let n = f.param("n", MTy::I64, 0)[0];
        let (buf, i, x, y) = (f.var("buf", MTy::I64), f.var("i", MTy::I64), f.var("x", MTy::F64), f.var("y", MTy::F64));
        f.0.body = vec![
            let_(buf, Rhs::Alloc { elem: MTy::F64, count: v(n), site: 0, hoisted: false }),
            Inst::For {
                lanes: 1,
                parallel: false,
                start: i64c(0),
                index: i,
                bound: v(n),
                body: vec![
                    let_(x, Rhs::Convert(MTy::F64, v(i))),
                    let_(y, bin(BinOp::Mul, v(x), v(x))),
                    Inst::Store { elem: MTy::F64, base: v(buf), index: v(i), value: v(y) },
                ],
            },
        ];
        f.result(MTy::F64, &[v(buf), v(n)]);
        let native = native(vec![f]);
        assert_eq!(native.call_vals("squares", &[Val::I64(4)], 10), Ok(vec![f64s(&[0.0, 1.0, 4.0, 9.0])]));
        assert!(native.peak_bytes() >= 32);
        assert_eq!(native.call_vals("squares", &[Val::I64(0)], 10), Ok(vec![f64s(&[])]));
        assert_eq!(native.held_bytes(), 0, "the arena is emptied after every call");
        // A buffer beyond the runtime's limit is the allocation's failure site.
        let e = native.call_vals("squares", &[Val::I64(1 << 50)], 10).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (Code::E0207, "cannot allocate an array of 1125899906842624 elements")
        );
    }

    #[test]
    fn fail_reports_the_site_with_its_message() {
        let mut f = Fb::new("at");
        let xs = f.param("xs", MTy::F64, 1);
        let i = f.param("i", MTy::I64, 0)[0];
        let (bad, x, after) = (f.var("bad", MTy::Bool), f.var("x", MTy::F64), f.var("after", MTy::I64));
        let site = f.site(Code::E0201, Message::IndexOutOfBounds { dim: 0 });
        f.0.body = vec![
            let_(bad, bin(BinOp::Ge, v(i), v(xs[1]))),
            Inst::If {
                cond: v(bad),
                then: vec![
                    Inst::Fail { site, args: vec![v(i), v(xs[1])] },
                    // Unreachable code after a `Fail` still compiles.
                    let_(after, Rhs::Use(i64c(1))),
                ],
                els: vec![],
            },
            let_(x, Rhs::Load { elem: MTy::F64, base: v(xs[0]), index: v(i) }),
        ];
        f.result(MTy::F64, &[v(x)]);
        let n = native(vec![f]);
        let e = n.call_vals("at", &[f64s(&[1.0, 2.0, 3.0]), Val::I64(5)], 10).unwrap_err();
        assert_eq!(e.code, Code::E0201);
        assert_eq!(e.span, Span::new(FileId(0), 4, 7));
        assert_eq!(e.message, "index 5 out of bounds for dimension 0 of size 3");
        // The next call starts clean.
        assert_eq!(n.call_vals("at", &[f64s(&[1.0, 2.0, 3.0]), Val::I64(2)], 10), Ok(vec![Val::F64(3.0)]));
    }

    #[test]
    fn fail_args_of_every_type_are_words() {
        let mut f = Fb::new("neq");
        let a = f.param("a", MTy::F32, 0)[0];
        let b = f.param("b", MTy::F32, 0)[0];
        let site = f.site(Code::E0202, Message::SizeEq { what: "test".into(), ty: ElemType::F32 });
        f.0.body = vec![Inst::Fail { site, args: vec![v(a), v(b)] }];
        f.result(MTy::F32, &[v(a)]);
        let n = native(vec![f]);
        let e = n.call_vals("neq", &[Val::F32(1.5), Val::F32(-2.0)], 10).unwrap_err();
        assert_eq!(e.message, "size mismatch: test: 1.5 vs -2.0");
    }

    #[test]
    fn integer_division_wraps() {
        let mut f = Fb::new("divrem");
        let a = f.param("a", MTy::I64, 0)[0];
        let b = f.param("b", MTy::I64, 0)[0];
        let (q, r) = (f.var("q", MTy::I64), f.var("r", MTy::I64));
        f.0.body = vec![let_(q, bin(BinOp::Div, v(a), v(b))), let_(r, bin(BinOp::Rem, v(a), v(b)))];
        f.result(MTy::I64, &[v(q)]);
        f.result(MTy::I64, &[v(r)]);
        let n = native(vec![f]);
        let run = |a: i64, b: i64| n.call_vals("divrem", &[Val::I64(a), Val::I64(b)], 10).unwrap();
        assert_eq!(run(i64::MIN, -1), vec![Val::I64(i64::MIN), Val::I64(0)]);
        assert_eq!(run(7, -2), vec![Val::I64(-3), Val::I64(1)]);
        assert_eq!(run(-7, 2), vec![Val::I64(-3), Val::I64(-1)]);
    }

    #[test]
    fn float_min_and_max_follow_the_nan_rules() {
        let mut f = Fb::new("minmax");
        let a = f.param("a", MTy::F64, 0)[0];
        let b = f.param("b", MTy::F64, 0)[0];
        let (lo, hi) = (f.var("lo", MTy::F64), f.var("hi", MTy::F64));
        f.0.body = vec![let_(lo, bin(BinOp::Min, v(a), v(b))), let_(hi, bin(BinOp::Max, v(a), v(b)))];
        f.result(MTy::F64, &[v(lo)]);
        f.result(MTy::F64, &[v(hi)]);
        let n = native(vec![f]);
        let run = |a: f64, b: f64| match n.call_vals("minmax", &[Val::F64(a), Val::F64(b)], 10).unwrap()[..] {
            [Val::F64(lo), Val::F64(hi)] => (lo, hi),
            ref r => panic!("{r:?}"),
        };
        assert!(run(f64::NAN, 1.0).0.is_nan() && run(f64::NAN, 1.0).1.is_nan());
        assert!(run(1.0, f64::NAN).0.is_nan() && run(1.0, f64::NAN).1.is_nan());
        assert_eq!(run(2.0, 1.0), (1.0, 2.0));
        // Ties keep `a`.
        let (lo, hi) = run(0.0, -0.0);
        assert!(lo.is_sign_positive() && hi.is_sign_positive());
    }

    #[test]
    fn while_loop_and_its_limit() {
        let mut f = Fb::new("count");
        let n = f.param("n", MTy::I64, 0)[0];
        let (i, s, c, lim, over) = (
            f.var("i", MTy::I64),
            f.var("s", MTy::I64),
            f.var("c", MTy::Bool),
            f.var("lim", MTy::I64),
            f.var("over", MTy::Bool),
        );
        let site = f.site(Code::E0205, Message::WhileLimit);
        f.0.body = vec![
            let_(i, Rhs::Use(i64c(0))),
            let_(s, Rhs::Use(i64c(0))),
            Inst::While {
                cond: vec![let_(c, bin(BinOp::Lt, v(i), v(n)))],
                test: v(c),
                body: vec![
                    let_(lim, Rhs::WhileLimit),
                    let_(over, bin(BinOp::Ge, v(i), v(lim))),
                    Inst::If { cond: v(over), then: vec![Inst::Fail { site, args: vec![v(lim)] }], els: vec![] },
                    let_(s, bin(BinOp::Add, v(s), v(i))),
                    let_(i, bin(BinOp::Add, v(i), i64c(1))),
                ],
            },
        ];
        f.result(MTy::I64, &[v(s)]);
        let native = native(vec![f]);
        assert_eq!(native.call_vals("count", &[Val::I64(5)], 100), Ok(vec![Val::I64(10)]));
        assert_eq!(native.call_vals("count", &[Val::I64(-5)], 100), Ok(vec![Val::I64(0)]));
        let e = native.call_vals("count", &[Val::I64(5)], 3).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (Code::E0205, "while loop exceeded 3 iterations"));
    }

    #[test]
    fn if_with_both_branches() {
        let mut f = Fb::new("abs");
        let x = f.param("x", MTy::F64, 0)[0];
        let (neg, y) = (f.var("neg", MTy::Bool), f.var("y", MTy::F64));
        f.0.body = vec![
            let_(neg, bin(BinOp::Lt, v(x), f64c(0.0))),
            Inst::If {
                cond: v(neg),
                then: vec![let_(y, Rhs::Unary(UnOp::Neg, v(x)))],
                els: vec![let_(y, Rhs::Use(v(x)))],
            },
        ];
        f.result(MTy::F64, &[v(y)]);
        let n = native(vec![f]);
        assert_eq!(n.call_vals("abs", &[Val::F64(-2.5)], 10), Ok(vec![Val::F64(2.5)]));
        assert_eq!(n.call_vals("abs", &[Val::F64(4.0)], 10), Ok(vec![Val::F64(4.0)]));
    }

    #[test]
    fn release_keeps_the_loop_state_and_bounds_memory() {
        // acc = [0]; m = mark; for i < n { tmp = alloc 100; tmp[0] = i;
        //   new = alloc 1; new[0] = acc[0] + tmp[0]; acc = new; release m keep acc }
        // The mark is taken before the loop, so each release also frees the
        // previous iteration's state.
        let mut f = Fb::new("acc");
        let n = f.param("n", MTy::I64, 0)[0];
        let [acc, i, m, tmp, new] = ["acc", "i", "m", "tmp", "new"].map(|s| f.var(s, MTy::I64));
        let [fi, a, t, s] = ["fi", "a", "t", "s"].map(|x| f.var(x, MTy::F64));
        let load = |base| Rhs::Load { elem: MTy::F64, base: v(base), index: i64c(0) };
        let store = |base, value| Inst::Store { elem: MTy::F64, base: v(base), index: i64c(0), value: v(value) };
        f.0.body = vec![
            let_(acc, Rhs::Alloc { elem: MTy::F64, count: i64c(1), site: 0, hoisted: false }),
            let_(m, Rhs::Mark),
            Inst::For {
                lanes: 1,
                parallel: false,
                start: i64c(0),
                index: i,
                bound: v(n),
                body: vec![
                    let_(tmp, Rhs::Alloc { elem: MTy::F64, count: i64c(100), site: 0, hoisted: false }),
                    let_(fi, Rhs::Convert(MTy::F64, v(i))),
                    store(tmp, fi),
                    let_(new, Rhs::Alloc { elem: MTy::F64, count: i64c(1), site: 0, hoisted: false }),
                    let_(a, load(acc)),
                    let_(t, load(tmp)),
                    let_(s, bin(BinOp::Add, v(a), v(t))),
                    store(new, s),
                    let_(acc, Rhs::Use(v(new))),
                    Inst::Release { mark: v(m), keep: vec![v(acc)] },
                ],
            },
        ];
        f.result(MTy::F64, &[v(acc), i64c(1)]);
        let native = native(vec![f]);
        assert_eq!(native.call_vals("acc", &[Val::I64(1000)], 10), Ok(vec![f64s(&[499500.0])]));
        // The first and the current state, the previous one and one iteration's garbage.
        assert_eq!(native.peak_bytes(), 16 + 16 + 800 + 16);
        assert_eq!(native.held_bytes(), 0);
    }

    #[test]
    fn copy_moves_overlapping_elements() {
        // xs[1..4] = xs[0..3] in a copy of the input.
        let mut f = Fb::new("shift");
        let xs = f.param("xs", MTy::I64, 1);
        let (buf, dst) = (f.var("buf", MTy::I64), f.var("dst", MTy::I64));
        f.0.body = vec![
            let_(buf, Rhs::Alloc { elem: MTy::I64, count: v(xs[1]), site: 0, hoisted: false }),
            Inst::Copy { elem: MTy::I64, dst: v(buf), src: v(xs[0]), count: v(xs[1]) },
            let_(dst, Rhs::Offset { elem: MTy::I64, base: v(buf), index: i64c(1) }),
            Inst::Copy { elem: MTy::I64, dst: v(dst), src: v(buf), count: i64c(3) },
        ];
        f.result(MTy::I64, &[v(buf), v(xs[1])]);
        let n = native(vec![f]);
        let arg = Val::Arr(Rc::new(Array::new(vec![4], ArrayData::I64(vec![1, 2, 3, 4]))));
        let want = Val::Arr(Rc::new(Array::new(vec![4], ArrayData::I64(vec![1, 1, 2, 3]))));
        assert_eq!(n.call_vals("shift", &[arg], 10), Ok(vec![want]));
    }

    /// Copies of a constant count inline (Note [Small copies]) or through
    /// the runtime, overlapping forwards and backwards, for each element
    /// size and counts that leave every tail piece: `memmove`'s result.
    #[test]
    fn small_and_large_copies_overlap_as_memmove() {
        let data = |elem: MTy, xs: &[i64]| match elem {
            MTy::I64 => ArrayData::I64(xs.to_vec()),
            MTy::F32 => ArrayData::F32(xs.iter().map(|&x| x as f32).collect()),
            _ => ArrayData::Bool(xs.iter().map(|&x| x % 3 == 0).collect()),
        };
        for elem in [MTy::I64, MTy::F32, MTy::Bool] {
            for count in [1, 3, 7, 15, 17, 31, 33, 40] {
                for (from, to) in [(0, 1), (1, 0)] {
                    let mut f = Fb::new("shift");
                    let xs = f.param("xs", elem, 1);
                    let (buf, src, dst) = (f.var("buf", MTy::I64), f.var("src", MTy::I64), f.var("dst", MTy::I64));
                    f.0.body = vec![
                        let_(buf, Rhs::Alloc { elem, count: v(xs[1]), site: 0, hoisted: false }),
                        Inst::Copy { elem, dst: v(buf), src: v(xs[0]), count: v(xs[1]) },
                        let_(src, Rhs::Offset { elem, base: v(buf), index: i64c(from) }),
                        let_(dst, Rhs::Offset { elem, base: v(buf), index: i64c(to) }),
                        Inst::Copy { elem, dst: v(dst), src: v(src), count: i64c(count) },
                    ];
                    f.result(elem, &[v(buf), v(xs[1])]);
                    let n = native(vec![f]);
                    let xs: Vec<i64> = (1..=48).collect();
                    let mut want = xs.clone();
                    want.copy_within(from as usize..(from + count) as usize, to as usize);
                    let arg = Val::Arr(Rc::new(Array::new(vec![48], data(elem, &xs))));
                    let want = Val::Arr(Rc::new(Array::new(vec![48], data(elem, &want))));
                    assert_eq!(
                        n.call_vals("shift", &[arg], 10),
                        Ok(vec![want]),
                        "{elem:?}, {count} from {from} to {to}"
                    );
                }
            }
        }
    }

    #[test]
    fn bool_and_f32_leaves_cross_the_boundary() {
        // not(bs) as a new bool array, and a rank-2 f32 array passed through.
        let mut f = Fb::new("flip");
        let bs = f.param("bs", MTy::Bool, 1);
        let m = f.param("m", MTy::F32, 2);
        let (out, i, b, nb) =
            (f.var("out", MTy::I64), f.var("i", MTy::I64), f.var("b", MTy::Bool), f.var("nb", MTy::Bool));
        f.0.body = vec![
            let_(out, Rhs::Alloc { elem: MTy::Bool, count: v(bs[1]), site: 0, hoisted: false }),
            Inst::For {
                lanes: 1,
                parallel: false,
                start: i64c(0),
                index: i,
                bound: v(bs[1]),
                body: vec![
                    let_(b, Rhs::Load { elem: MTy::Bool, base: v(bs[0]), index: v(i) }),
                    let_(nb, Rhs::Unary(UnOp::Not, v(b))),
                    Inst::Store { elem: MTy::Bool, base: v(out), index: v(i), value: v(nb) },
                ],
            },
        ];
        f.result(MTy::Bool, &[v(out), v(bs[1])]);
        f.result(MTy::F32, &[v(m[0]), v(m[1]), v(m[2])]);
        f.result(MTy::Bool, &[Operand::Const(Const::Bool(true))]);
        let n = native(vec![f]);
        let bools = |xs: &[bool]| Val::Arr(Rc::new(Array::new(vec![xs.len()], ArrayData::Bool(xs.to_vec()))));
        let mat = Val::Arr(Rc::new(Array::new(vec![2, 2], ArrayData::F32(vec![1.0, 2.0, 3.0, 4.5]))));
        let got = n.call_vals("flip", &[bools(&[true, false, false]), mat.clone()], 10);
        assert_eq!(got, Ok(vec![bools(&[false, true, true]), mat, Val::Bool(true)]));
    }

    #[test]
    fn ill_typed_loops_are_an_error_not_a_crash() {
        let mut f = Fb::new("bad");
        let x = f.var("x", MTy::I64);
        f.0.body = vec![let_(x, Rhs::Use(f64c(1.0)))];
        f.result(MTy::I64, &[v(x)]);
        let program = loops::Program { funcs: vec![f.0], segments: Vec::new() };
        let e = compile(&program, false).err().expect("ill-typed");
        assert!(e.contains("internal error"), "{e}");
    }

    #[test]
    fn clif_text_shows_every_function() {
        let program = loops::Program { funcs: vec![sum_func().0], segments: Vec::new() };
        let text = clif_text(&program, None).unwrap();
        assert!(text.contains("function %sum("), "{text}");
        assert!(text.contains("load.f64"), "{text}");
    }

    fn scalar_values(t: MTy) -> Vec<Val> {
        let fs = [0.0, -0.0, 0.5, -2.25, 2.5, 3.0, 1e300, -7.75, f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
        match t {
            MTy::F64 => fs.iter().map(|&x| Val::F64(x)).collect(),
            MTy::F32 => fs.iter().map(|&x| Val::F32(x as f32)).collect(),
            MTy::I64 => [0, 1, -1, 2, 7, -7, 62, 64, i64::MIN, i64::MAX].iter().map(|&x| Val::I64(x)).collect(),
            MTy::Bool => vec![Val::Bool(false), Val::Bool(true)],
        }
    }

    fn mty(v: &Val) -> MTy {
        match v {
            Val::F64(_) => MTy::F64,
            Val::F32(_) => MTy::F32,
            Val::I64(_) => MTy::I64,
            Val::Bool(_) => MTy::Bool,
            Val::Arr(_) => unreachable!(),
        }
    }

    fn scalar_type(t: MTy) -> ScalarType {
        match t {
            MTy::F64 => ScalarType::F64,
            MTy::F32 => ScalarType::F32,
            MTy::I64 => ScalarType::I64,
            MTy::Bool => ScalarType::Bool,
        }
    }

    /// Equal, NaNs included (any NaN matches any NaN), and `0.0` differs from `-0.0`.
    fn same(a: &Val, b: &Val) -> bool {
        match (a, b) {
            (Val::F64(x), Val::F64(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
            (Val::F32(x), Val::F32(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
            _ => a == b,
        }
    }

    /// A function to compile: name, parameter types, body and result type.
    type Case = (String, Vec<MTy>, Box<dyn Fn(&[Operand]) -> Rhs>, MTy);

    const TYPES: [MTy; 4] = [MTy::F64, MTy::F32, MTy::I64, MTy::Bool];

    /// Compiles `f(a[, b]) = rhs` for every case the interpreter accepts on a
    /// sample and compares both on every value (pair).
    fn agree(cases: Vec<Case>, reference: impl Fn(&str, &[Val]) -> Option<Val>) {
        let mut funcs = vec![];
        for (name, params, rhs, out) in &cases {
            let mut f = Fb::new(name);
            let ps: Vec<Operand> =
                params.iter().enumerate().map(|(k, &t)| v(f.param(&format!("p{k}"), t, 0)[0])).collect();
            let r = f.var("r", *out);
            f.0.body = vec![let_(r, rhs(&ps))];
            f.result(*out, &[v(r)]);
            funcs.push(f);
        }
        let n = native(funcs);
        let mut checked = 0;
        for (name, params, _, _) in &cases {
            let firsts = scalar_values(params[0]);
            let seconds = if params.len() == 2 { scalar_values(params[1]) } else { vec![Val::Bool(false)] };
            for a in &firsts {
                for b in &seconds {
                    let args: Vec<Val> = if params.len() == 2 { vec![a.clone(), b.clone()] } else { vec![a.clone()] };
                    let Some(want) = reference(name, &args) else { continue };
                    let got = n.call_vals(name, &args, 10).unwrap();
                    assert!(same(&got[0], &want), "{name}{args:?}: native {:?}, interpreter {want:?}", got[0]);
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "only {checked} cases checked");
    }

    const BINOPS: [BinOp; 19] = [
        BinOp::Add,
        BinOp::Sub,
        BinOp::Mul,
        BinOp::Div,
        BinOp::Rem,
        BinOp::Pow,
        BinOp::Min,
        BinOp::Max,
        BinOp::Eq,
        BinOp::Ne,
        BinOp::Lt,
        BinOp::Le,
        BinOp::Gt,
        BinOp::Ge,
        BinOp::And,
        BinOp::Or,
        BinOp::Atan2,
        BinOp::Hypot,
        BinOp::Copysign,
    ];

    #[test]
    fn binary_operations_match_the_interpreter() {
        let mut cases: Vec<Case> = vec![];
        let mut ops = HashMap::default();
        for t in TYPES {
            for op in BINOPS {
                let sample = scalar_values(t)[1].clone();
                let Ok(r) = interp::binary(op, sample.clone(), sample, Span::default()) else { continue };
                let name = format!("{}_{}", op.symbol(), t.name());
                ops.insert(name.clone(), op);
                cases.push((name, vec![t, t], Box::new(move |p| Rhs::Binary(op, p[0], p[1])), mty(&r)));
            }
        }
        assert!(cases.len() > 40, "{} cases", cases.len());
        agree(cases, |name, args| {
            // Division by zero and negative exponents are checked before, by lowering.
            interp::binary(ops[name], args[0].clone(), args[1].clone(), Span::default()).ok()
        });
    }

    #[test]
    fn unary_operations_and_conversions_match_the_interpreter() {
        let unops = UnOp::ALL.iter().copied();
        let mut cases: Vec<Case> = vec![];
        let mut refs: HashMap<String, Box<dyn Fn(Val) -> Option<Val>>> = HashMap::default();
        for t in TYPES {
            for op in unops.clone() {
                let sample = scalar_values(t)[1].clone();
                let Ok(r) = interp::unary(op, sample, Span::default()) else { continue };
                let name = format!("{}_{}", op.name(), t.name());
                refs.insert(name.clone(), Box::new(move |x| interp::unary(op, x, Span::default()).ok()));
                cases.push((name, vec![t], Box::new(move |p| Rhs::Unary(op, p[0])), mty(&r)));
            }
            for to in TYPES {
                let name = format!("{}_to_{}", t.name(), to.name());
                refs.insert(name.clone(), Box::new(move |x| interp::convert(scalar_type(to), x, Span::default()).ok()));
                cases.push((name, vec![t], Box::new(move |p| Rhs::Convert(to, p[0])), to));
            }
        }
        agree(cases, |name, args| refs[name](args[0].clone()));
    }

    #[test]
    fn select_picks_by_a_bool() {
        let mut f = Fb::new("pick");
        let c = f.param("c", MTy::Bool, 0)[0];
        let r = f.var("r", MTy::F32);
        f.0.body = vec![let_(r, Rhs::Select(v(c), Operand::Const(Const::F32(1.5)), Operand::Const(Const::F32(-3.0))))];
        f.result(MTy::F32, &[v(r)]);
        let n = native(vec![f]);
        assert_eq!(n.call_vals("pick", &[Val::Bool(true)], 10), Ok(vec![Val::F32(1.5)]));
        assert_eq!(n.call_vals("pick", &[Val::Bool(false)], 10), Ok(vec![Val::F32(-3.0)]));
    }
}
