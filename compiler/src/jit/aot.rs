//! Native code for an ahead-of-time library: an object file.
//!
//! Input: a [`loops::Program`] (after the `memory` stage) and the
//! library's description ([`Library`], which `crate::build` derives from
//! the program's entry signatures). Output: the bytes of a relocatable
//! object file for the host, which the system linker turns into a shared
//! library or adds to a static archive.
//!
//! The object holds the same machine code as the JIT makes (`define_all`
//! builds both), position-independent, plus:
//! - `slope.meta`: the JSON text of the description;
//! - `slope.codes`: the address of each entry function, then of each
//!   segment function;
//! - `slope.plans`: one slot per parallel segment, where generated code
//!   loads its plan (filled at load: Note [Loading a library] in
//!   `slope_capi::aot`);
//! - `slope.library`: the `slope_capi::aot::LibraryData` pointing at them;
//! - the exported C functions of the header `crate::build` writes, each
//!   forwarding to the runtime with the library's data: `NAME_context_new`,
//!   `NAME_context_free`, `NAME_context_set_threads`, `NAME_call` (an entry
//!   by name, as `slope_call`), and `NAME_ENTRY` per entry (its argument
//!   leaves by pointer, then the result and error slots).
//!
//! Invariants: the entry functions are in the order of `library.entries`,
//! the exported ones first (one per `exports.entries`), then the entries
//! they call that were not asked for;
//! nothing in the code or data is an address of this process.

use super::{define_all, PlanRef};
use crate::loops;
use cranelift::codegen::ir::{Function, UserFuncName};
use cranelift::prelude::*;
use cranelift_module::{default_libcall_names, DataDescription, DataId, FuncId, Linkage, Module};
use cranelift_object::{ObjectBuilder, ObjectModule};
use slope_runtime::aot::Library;

/// The exported C names of a library's functions.
pub struct Exports {
    pub context_new: String,
    pub context_free: String,
    pub set_threads: String,
    /// Calls an entry by name on an array of leaves (as `slope_call`).
    pub call: String,
    /// One per entry, in order.
    pub entries: Vec<String>,
}

impl Exports {
    /// The library's own functions, then the entries'.
    pub fn all(&self) -> Vec<&str> {
        let fixed = [&self.context_new, &self.context_free, &self.set_threads, &self.call];
        fixed.into_iter().chain(&self.entries).map(String::as_str).collect()
    }
}

/// The object file of `program` as the library `library` describes it.
pub fn object(program: &loops::Program, library: &Library, exports: &Exports) -> Result<Vec<u8>, String> {
    if program.funcs.len() != library.entries.len() || exports.entries.len() > library.entries.len() {
        return Err("internal error: the library's entries and functions disagree".into());
    }
    let mut module = new_module(&library.name)?;
    let plans = module.declare_data("slope.plans", Linkage::Local, true, false).map_err(|e| e.to_string())?;
    let plan_refs: Vec<PlanRef> = (0..program.segments.len()).map(|k| PlanRef::Slot(plans, 8 * k as i32)).collect();
    let (entries, segments) = define_all(&mut module, program, &plan_refs, false)?;
    let data = define_data(&mut module, library, plans, &entries, &segments)?;
    define_exports(&mut module, data, exports, library)?;
    module.finish().emit().map_err(|e| e.to_string())
}

/// An object module for the host, position-independent (for a shared library).
fn new_module(name: &str) -> Result<ObjectModule, String> {
    let mut flags = settings::builder();
    let extra = [("is_pic", "true"), ("enable_verifier", super::verifier())];
    for (flag, value) in super::CODEGEN_FLAGS.into_iter().chain(extra) {
        flags.set(flag, value).map_err(|e| e.to_string())?;
    }
    let isa = cranelift::native::builder()
        .map_err(|e| format!("this machine is not supported: {e}"))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| e.to_string())?;
    if isa.pointer_type() != types::I64 {
        return Err("native code needs a 64-bit target".into());
    }
    let builder = ObjectBuilder::new(isa, name, default_libcall_names()).map_err(|e| e.to_string())?;
    Ok(ObjectModule::new(builder))
}

/// Defines the description, code table and plan slots, and the
/// `LibraryData` pointing at them; returns the latter.
fn define_data(
    module: &mut ObjectModule,
    library: &Library,
    plans: DataId,
    entries: &[FuncId],
    segments: &[FuncId],
) -> Result<DataId, String> {
    let err = |e: cranelift_module::ModuleError| e.to_string();
    let meta_text = serde_json::to_vec(library).map_err(|e| e.to_string())?;
    let meta = module.declare_data("slope.meta", Linkage::Local, false, false).map_err(err)?;
    let mut d = DataDescription::new();
    let meta_len = meta_text.len();
    d.define(meta_text.into_boxed_slice());
    module.define_data(meta, &d).map_err(err)?;

    // Data holding addresses is writable: in a shared library the dynamic
    // linker writes them at load (read-only data would need text relocations).
    let codes = module.declare_data("slope.codes", Linkage::Local, true, false).map_err(err)?;
    let mut d = DataDescription::new();
    let funcs: Vec<FuncId> = entries.iter().chain(segments).copied().collect();
    // Explicit zeros, not `define_zeroinit`: zero-initialised data goes to
    // .bss, where relocations cannot be applied.
    d.define(vec![0u8; 8 * funcs.len().max(1)].into_boxed_slice());
    d.set_align(8);
    for (k, &f) in funcs.iter().enumerate() {
        let r = module.declare_func_in_data(f, &mut d);
        d.write_function_addr(8 * k as u32, r);
    }
    module.define_data(codes, &d).map_err(err)?;

    let mut d = DataDescription::new();
    d.define_zeroinit(8 * segments.len().max(1));
    d.set_align(8);
    module.define_data(plans, &d).map_err(err)?;

    // LibraryData: meta, meta_len, codes, plans, loaded.
    let data = module.declare_data("slope.library", Linkage::Local, true, false).map_err(err)?;
    let mut d = DataDescription::new();
    let mut words = vec![0u8; 8 * 5];
    words[8..16].copy_from_slice(&(meta_len as u64).to_le_bytes());
    d.define(words.into_boxed_slice());
    d.set_align(8);
    for (offset, target) in [(0, meta), (16, codes), (24, plans)] {
        let gv = module.declare_data_in_data(target, &mut d);
        d.write_data_addr(offset, gv, 0);
    }
    module.define_data(data, &d).map_err(err)?;
    Ok(data)
}

/// The exported C functions, each a call of the runtime with the library's data.
fn define_exports(module: &mut ObjectModule, data: DataId, exports: &Exports, library: &Library) -> Result<(), String> {
    use types::{I32, I64};
    // NAME_context_new(int threads, slope_error **error) -> NAME_context *
    export(module, &exports.context_new, &[I32, I64], Some(I64), |g, params| {
        let lib = g.data_address(data);
        g.forward("slope_aot_context_new", &[I64, I32, I64], Some(I64), &[lib, params[0], params[1]])
    })?;
    // NAME_context_free(NAME_context *)
    export(module, &exports.context_free, &[I64], None, |g, params| {
        g.forward("slope_aot_context_free", &[I64], None, params)
    })?;
    // NAME_context_set_threads(NAME_context *, int threads, slope_error **) -> int
    export(module, &exports.set_threads, &[I64, I32, I64], Some(I32), |g, params| {
        g.forward("slope_aot_set_threads", &[I64, I32, I64], Some(I32), params)
    })?;
    // NAME_call(ctx, const char *entry, const slope_arg *args, size_t nargs, result, error) -> int
    export(module, &exports.call, &[I64; 6], Some(I32), |g, params| {
        g.forward("slope_aot_call_named", &[I64; 6], Some(I32), params)
    })?;
    // NAME_ENTRY(ctx, leaf_0, …, leaf_n-1, slope_value **result, slope_error **error) -> int
    for (k, (name, entry)) in exports.entries.iter().zip(&library.entries).enumerate() {
        let n = entry.param_leaves.len();
        export(module, name, &vec![I64; n + 3], Some(I32), |g, p| {
            let leaves = if n == 0 {
                g.b.ins().iconst(I64, 0)
            } else {
                let slot =
                    g.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, 8 * n as u32, 3));
                for (i, &leaf) in p[1..=n].iter().enumerate() {
                    g.b.ins().stack_store(I64, leaf, slot, 8 * i as i32);
                }
                g.b.ins().stack_addr(I64, slot, 0)
            };
            let (index, count) = (g.b.ins().iconst(I64, k as i64), g.b.ins().iconst(I64, n as i64));
            let args = [p[0], index, leaves, count, p[n + 1], p[n + 2]];
            g.forward("slope_aot_call", &[I64; 6], Some(I32), &args)
        })?;
    }
    Ok(())
}

/// Building one exported function.
struct Export<'a, 'm> {
    b: FunctionBuilder<'a>,
    module: &'m mut ObjectModule,
}

impl Export<'_, '_> {
    fn data_address(&mut self, data: DataId) -> Value {
        let gv = self.module.declare_data_in_func(data, self.b.func);
        self.b.ins().symbol_value(types::I64, gv)
    }

    /// Calls the runtime function `name` and returns what it returns.
    fn forward(&mut self, name: &str, params: &[Type], ret: Option<Type>, args: &[Value]) -> Result<(), String> {
        let mut sig = self.module.make_signature();
        sig.params.extend(params.iter().map(|&t| AbiParam::new(t)));
        sig.returns.extend(ret.map(AbiParam::new));
        let id = self.module.declare_function(name, Linkage::Import, &sig).map_err(|e| e.to_string())?;
        let f = self.module.declare_func_in_func(id, self.b.func);
        let call = self.b.ins().call(f, args);
        let results = self.b.inst_results(call).to_vec();
        self.b.ins().return_(&results);
        Ok(())
    }
}

/// Defines the exported function `name(params) -> ret`, whose body `body` builds.
fn export(
    module: &mut ObjectModule,
    name: &str,
    params: &[Type],
    ret: Option<Type>,
    body: impl FnOnce(&mut Export<'_, '_>, &[Value]) -> Result<(), String>,
) -> Result<(), String> {
    let mut sig = module.make_signature();
    sig.params.extend(params.iter().map(|&t| AbiParam::new(t)));
    sig.returns.extend(ret.map(AbiParam::new));
    let id = module.declare_function(name, Linkage::Export, &sig).map_err(|e| e.to_string())?;
    let mut ctx = module.make_context();
    ctx.func = Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sig);
    let mut fctx = FunctionBuilderContext::new();
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let block = b.create_block();
        b.append_block_params_for_function_params(block);
        b.switch_to_block(block);
        b.seal_block(block);
        let values = b.block_params(block).to_vec();
        let mut g = Export { b, module };
        body(&mut g, &values)?;
        let config = g.module.target_config();
        g.b.finalize(config);
    }
    module.define_function(id, &mut ctx).map_err(|e| format!("cannot compile `{name}`: {e}"))
}
