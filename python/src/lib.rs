//! The native module of the `slope` Python package (`slope._slope`).
//!
//! Input: Slope source (a file or a string) and, per call, Python values —
//! NumPy arrays of `float64`/`float32`/`int64`/`bool`, Python numbers and
//! booleans, tuples, dicts for records, nested lists. Output: a compiled
//! [`Program`] whose entries return the same kinds of values: scalars as
//! Python numbers, arrays as NumPy arrays, tuples as tuples, records as dicts
//! (an array of records as a dict of arrays: Slope stores them so).
//!
//! Invariants:
//! - Values are checked against the entry's declared types here, before any
//!   code runs; a mismatch is `slope.InputError` (E0302) naming the
//!   parameter, as the CLI names a JSON field. Nothing is converted silently:
//!   an `int64` array for an `f64` parameter is an error, not a cast.
//! - Input arrays are copied once into Slope's buffers (any strides,
//!   offsets and field views: such arrays are first made C-contiguous and
//!   aligned by NumPy; `bool` elements are read as bytes);
//!   result arrays are not copied: their buffers are handed to NumPy
//!   (Note [Copies at the boundary]).
//! - The GIL is released while an entry runs and while a program compiles;
//!   one program may be called from several Python threads at once.
//! - Every failure is a `slope.Error` carrying the diagnostic's stable code,
//!   its message and the rendered diagnostic (span and source line), exactly
//!   what the CLI prints.

use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{Element, IntoPyArray, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use slope::api::{Engine, Failure, Program};
use slope::diagnostic::{Code, RenderStyle};
use slope_runtime::{Array, ArrayData, ElemType, Scalar, Value, ValueType};
use std::rc::Rc;

pyo3::create_exception!(_slope, Error, PyException, "A Slope diagnostic: `code`, `message`, `diagnostic`.");
pyo3::create_exception!(_slope, CompileError, Error, "The program does not compile (codes E00xx and E01xx).");
pyo3::create_exception!(_slope, InputError, Error, "A call's arguments do not fit the entry (codes E03xx).");
pyo3::create_exception!(_slope, RunError, Error, "The program failed while running (codes E02xx).");
pyo3::create_exception!(_slope, InternalError, Error, "A bug in Slope (code E0900); please report it.");

/// A compiled Slope program (wrapped by `slope.Module` in Python).
#[pyclass(frozen, module = "slope._slope", name = "Program")]
struct PyProgram {
    program: Program,
}

/// Compiles `source` (named `name`; imports are read relative to it) for
/// the back end `engine` (the CLI's `--engine`: `multicore`, the default,
/// `sequential` or `interp`), lowers it to native code on a native one,
/// and on `multicore` runs its parallel loops on `threads` threads (`None`:
/// `SLOPE_THREADS`, else every core). `checkpoint` and `save` are the CLI's
/// `--checkpoint` and `--save` (reverse mode's √n checkpoints; what it
/// saves from map bodies, by policy name); `reassociate` is `--reassociate`
/// (native code may reassociate float sums and products in loops).
#[pyfunction]
#[pyo3(signature = (source, name, threads=None, checkpoint=false, save=None, engine=None, reassociate=false))]
fn compile(
    py: Python<'_>,
    source: &str,
    name: &str,
    threads: Option<i64>,
    checkpoint: bool,
    save: Option<&str>,
    engine: Option<&str>,
    reassociate: bool,
) -> PyResult<PyProgram> {
    let engine = match engine {
        None => Engine::Multicore,
        Some(name) => Engine::parse(name).ok_or_else(|| {
            let names: Vec<&str> = Engine::ALL.iter().map(|e| e.name()).collect();
            usage_error(py, format!("unknown engine `{name}`; the engines are {}", names.join(", ")))
        })?,
    };
    let threads = match threads {
        Some(n) => slope_runtime::parallel::thread_count(n).map_err(|e| usage_error(py, e))?,
        None => slope_runtime::parallel::threads_from_env().map_err(|e| usage_error(py, e))?,
    };
    let mut options = slope::driver::Options::default();
    options.ad.checkpoint = checkpoint;
    options.reassociate = reassociate;
    if let Some(policy) = save {
        options.ad.save = slope::driver::Save::from_name(policy).map_err(|e| usage_error(py, e))?;
    }
    let compiled = py.detach(|| {
        guarded(|| {
            // (`Program::compile_with` runs the compiler on its own big stack.)
            let mut program = Program::compile_with(name, source, &slope::driver::file_loader, &options)?;
            program.engine = engine;
            // Native code now, not at the first call: its (rare) failure
            // belongs to compiling, and the first call's time to the call.
            match engine {
                Engine::Multicore => program.set_threads(threads)?,
                native @ Engine::Sequential => {
                    program.executable(native)?;
                }
                Engine::Interp => {}
            }
            Ok::<Program, Failure>(program)
        })
    });
    compiled.map(|program| PyProgram { program }).map_err(|f| raise(py, &f))
}

#[pymethods]
impl PyProgram {
    /// The entry points, in definition order.
    #[getter]
    fn entries(&self) -> Vec<String> {
        self.program.entries().into_iter().map(str::to_string).collect()
    }

    /// The parameters of `entry` as `(name, type)` pairs and its result type,
    /// types written as in Slope (`[n]f64`).
    fn signature(&self, py: Python<'_>, entry: &str) -> PyResult<(Vec<(String, String)>, String)> {
        let sig = self.program.entry_signature(entry).map_err(|f| raise(py, &f))?;
        let params = sig.params.iter().map(|(n, t)| (n.clone(), t.to_string())).collect();
        Ok((params, sig.ret.to_string()))
    }

    /// Calls `entry`: positional arguments in parameter order, keyword
    /// arguments by parameter name.
    #[pyo3(signature = (entry, *args, **kwargs))]
    fn call(
        &self,
        py: Python<'_>,
        entry: &str,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let program = &self.program;
        let sig = program.entry_signature(entry).map_err(|f| raise(py, &f))?;
        let invalid = |message: String| raise(py, &program.invalid_input(entry, message));
        let given = bind_arguments(entry, &sig.params, args, kwargs).map_err(invalid)?;
        let mut inputs = Vec::with_capacity(given.len());
        for (value, (name, ty)) in given.iter().zip(&sig.params) {
            inputs.push(from_python(value, &slope::values::value_type(ty), name).map_err(invalid)?);
        }
        let result = py.detach(|| {
            guarded(|| {
                let values: Vec<Value> = inputs.into_iter().map(Owned::into_value).collect();
                program.call_values(entry, &values).map(Owned::from_value)
            })
        });
        to_python(py, result.map_err(|f| raise(py, &f))?)
    }

    /// Runs parallel loops on `threads` threads from the next call on
    /// (results are bit-identical for every count).
    fn set_threads(&self, py: Python<'_>, threads: i64) -> PyResult<()> {
        let threads = slope_runtime::parallel::thread_count(threads).map_err(|e| usage_error(py, e))?;
        self.program.set_threads(threads).map_err(|f| raise(py, &f))
    }

    /// The program after a pipeline stage, as `slope emit --stage STAGE` prints it.
    #[pyo3(signature = (stage, entry=None))]
    fn emit(&self, py: Python<'_>, stage: &str, entry: Option<&str>) -> PyResult<String> {
        self.program.emit(stage, entry).map_err(|f| raise(py, &f))
    }
}

/// The arguments of a call in parameter order, from positional and keyword
/// arguments; a missing, repeated or unknown argument is an error message.
fn bind_arguments<'py>(
    entry: &str,
    params: &[(String, slope::values::Type)],
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> Result<Vec<Bound<'py, PyAny>>, String> {
    if args.len() > params.len() {
        return Err(format!("`{entry}` takes {} arguments, {} given", params.len(), args.len()));
    }
    let mut bound: Vec<Option<Bound<'py, PyAny>>> = args.iter().map(Some).collect();
    bound.resize(params.len(), None);
    for (key, value) in kwargs.into_iter().flat_map(|d| d.iter()) {
        let key = key.cast::<PyString>().map_err(|_| "keyword names must be strings".to_string())?.to_string();
        let Some(k) = params.iter().position(|(n, _)| *n == key) else {
            return Err(format!("`{entry}` has no parameter named `{key}`"));
        };
        if bound[k].is_some() {
            return Err(format!("`{key}` is given twice"));
        }
        bound[k] = Some(value);
    }
    let missing: Vec<String> =
        params.iter().zip(&bound).filter(|(_, b)| b.is_none()).map(|((n, _), _)| format!("`{n}`")).collect();
    if !missing.is_empty() {
        return Err(format!("`{entry}` is missing {}", missing.join(", ")));
    }
    Ok(bound.into_iter().flatten().collect())
}

// Note [Copies at the boundary]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Slope's values own their buffers (`ArrayData` holds a `Vec`), so an input
// NumPy array is copied once into a new buffer: a `memcpy` when the array is
// C-contiguous and aligned; otherwise NumPy first makes such a copy
// (`numpy.require`), so any strides, offsets and field views of structured
// arrays work, at the price of a second copy. NumPy cannot own what Slope allocated in its arena
// either, but the runtime already copies a result out of the arena into a
// `Vec`; that `Vec` is handed to NumPy as the array's buffer, with no
// further copy. So a call costs one copy of its inputs and one of its
// results — the copies the CLI makes too. Values cross the GIL release as
// [`Owned`] trees (plain buffers, `Send`), because a `Value` shares its
// arrays through `Rc` and may not leave the thread that made it.

/// A value with its arrays owned (not shared), so that it may cross threads.
enum Owned {
    Scalar(Scalar),
    Array(Array),
    Tuple(Vec<Owned>),
    Record(Vec<(String, Owned)>),
}

impl Owned {
    fn into_value(self) -> Value {
        match self {
            Owned::Scalar(s) => Value::Scalar(s),
            Owned::Array(a) => Value::Array(Rc::new(a)),
            Owned::Tuple(vs) => Value::Tuple(vs.into_iter().map(Owned::into_value).collect()),
            Owned::Record(fs) => Value::Record(fs.into_iter().map(|(n, v)| (n, v.into_value())).collect()),
        }
    }

    fn from_value(value: Value) -> Owned {
        match value {
            Value::Scalar(s) => Owned::Scalar(s),
            Value::Array(a) => Owned::Array(Rc::try_unwrap(a).unwrap_or_else(|shared| (*shared).clone())),
            Value::Tuple(vs) => Owned::Tuple(vs.into_iter().map(Owned::from_value).collect()),
            Value::Record(fs) => Owned::Record(fs.into_iter().map(|(n, v)| (n, Owned::from_value(v))).collect()),
        }
    }
}

/// Reads `obj` as a value of type `ty`; `path` names it in messages.
fn from_python(obj: &Bound<'_, PyAny>, ty: &ValueType, path: &str) -> Result<Owned, String> {
    match ty {
        ValueType::Scalar(elem) => scalar(obj, *elem, path).map(Owned::Scalar),
        ValueType::Tuple(items) => {
            let tuple = obj.cast::<PyTuple>().map_err(|_| format!("`{path}` must be a tuple, not {}", kind(obj)))?;
            if tuple.len() != items.len() {
                return Err(format!("`{path}` must be a tuple of {} items, not {}", items.len(), tuple.len()));
            }
            let parts = tuple.iter().zip(items).enumerate();
            parts
                .map(|(i, (v, t))| from_python(&v, t, &format!("{path}.{i}")))
                .collect::<Result<_, _>>()
                .map(Owned::Tuple)
        }
        ValueType::Record(fields) => {
            // Keys beyond the declared fields are ignored, as in JSON input
            // (GradBench's inputs carry some); a declared field must be there.
            let dict = obj.cast::<PyDict>().map_err(|_| format!("`{path}` must be a dict, not {}", kind(obj)))?;
            let mut out = Vec::with_capacity(fields.len());
            for (name, t) in fields {
                let field_path = format!("{path}.{name}");
                let value = dict.get_item(name).ok().flatten().ok_or(format!("`{field_path}` is missing"))?;
                out.push((name.clone(), from_python(&value, t, &field_path)?));
            }
            Ok(Owned::Record(out))
        }
        ValueType::Array { .. } => match obj.cast::<PyUntypedArray>() {
            Ok(array) => numpy_array(array, ty, path).map(Owned::Array),
            Err(_) => nested_lists(obj, ty, path),
        },
    }
}

/// A Python number or boolean (or a NumPy scalar, or a 0-dimensional array)
/// as a Slope scalar of type `elem`: only booleans for `bool`, only
/// integers for `i64`, integers and reals for floats — never a boolean for
/// a number, a complex number, or an array of any length.
fn scalar(obj: &Bound<'_, PyAny>, elem: ElemType, path: &str) -> Result<Scalar, String> {
    let wrong = || format!("`{path}` must be {}, not {}", elem_phrase(elem), kind(obj));
    let fits = match scalar_kind(obj) {
        Some(b'b') => elem == ElemType::Bool,
        Some(b'i' | b'u') => matches!(elem, ElemType::I64 | ElemType::F64 | ElemType::F32),
        Some(b'f') => matches!(elem, ElemType::F64 | ElemType::F32),
        _ => false,
    };
    if !fits {
        return Err(wrong());
    }
    match elem {
        ElemType::Bool => obj.extract::<bool>().map(Scalar::Bool).map_err(|_| wrong()),
        ElemType::I64 => {
            obj.extract::<i64>().map(Scalar::I64).map_err(|_| format!("`{path}`: {obj} is out of range for i64"))
        }
        ElemType::F64 => obj.extract::<f64>().map(Scalar::F64).map_err(|_| wrong()),
        ElemType::F32 => {
            let x = obj.extract::<f64>().map_err(|_| wrong())?;
            let y = x as f32;
            // As in JSON input: a finite value beyond f32's range is an
            // error, not infinity.
            if x.is_finite() && !y.is_finite() {
                return Err(format!("`{path}`: {x} is out of range for f32"));
            }
            Ok(Scalar::F32(y))
        }
    }
}

/// What kind of scalar `obj` is, as NumPy's `dtype.kind` letters: `b`ool,
/// `i`nteger, `u`nsigned, `f`loat; `None` for anything else (strings,
/// complex numbers, arrays with elements, other objects).
fn scalar_kind(obj: &Bound<'_, PyAny>) -> Option<u8> {
    if obj.is_instance_of::<PyBool>() {
        return Some(b'b');
    }
    if obj.is_instance_of::<PyInt>() {
        return Some(b'i');
    }
    if obj.is_instance_of::<PyFloat>() {
        return Some(b'f');
    }
    // NumPy scalars and 0-dimensional arrays carry a dtype; arrays with
    // dimensions are not scalars.
    if obj.cast::<PyUntypedArray>().is_ok_and(|a| a.ndim() > 0) {
        return None;
    }
    let kind: String = obj.getattr("dtype").and_then(|d| d.getattr("kind")).and_then(|k| k.extract()).ok()?;
    kind.bytes().next().filter(|k| b"biuf".contains(k))
}

/// A NumPy array as a Slope array of type `ty`: the dtype must be the
/// element type's, the number of dimensions the type's rank, and a length
/// the type fixes must match.
fn numpy_array(array: &Bound<'_, PyUntypedArray>, ty: &ValueType, path: &str) -> Result<Array, String> {
    let (elem, lens) = ty.scalar_leaf().ok_or_else(|| {
        format!("`{path}` is an array of tuples or records: pass it as a list of tuples or dicts, not a NumPy array")
    })?;
    if array.get_type().name().is_ok_and(|n| n == "MaskedArray") {
        return Err(format!("`{path}` is a masked array: pass `.filled(value)` or `.compressed()`"));
    }
    let shape = array.shape().to_vec();
    let dtype = array.dtype().to_string();
    let want = format!("{}{}", "[]".repeat(lens.len()), elem.name());
    let limit = slope_runtime::native::MAX_ELEMENTS as usize;
    if shape.iter().any(|&n| n > limit)
        || shape.iter().try_fold(1usize, |a, &n| a.checked_mul(n)).is_none_or(|c| c > limit)
    {
        return Err(format!("`{path}` is larger than Slope's largest array ({limit} elements)"));
    }
    if shape.len() != lens.len() {
        return Err(format!("`{path}` must be {want}, but the NumPy array has {} dimensions", shape.len()));
    }
    if let Some((d, (k, _))) = lens.iter().zip(&shape).enumerate().find(|(_, (k, n))| k.is_some_and(|k| k != **n)) {
        return Err(format!("`{path}` must have length {} in dimension {d}, not {}", k.unwrap_or(0), shape[d]));
    }
    let data = match elem {
        ElemType::F64 => read::<f64>(array).map(ArrayData::F64),
        ElemType::F32 => read::<f32>(array).map(ArrayData::F32),
        ElemType::I64 => read::<i64>(array).map(ArrayData::I64),
        ElemType::Bool => read_bools(array).map(ArrayData::Bool),
    };
    let numpy_name = match elem {
        ElemType::F64 => "float64",
        ElemType::F32 => "float32",
        ElemType::I64 => "int64",
        ElemType::Bool => "bool",
    };
    let data = data.ok_or_else(|| {
        format!("`{path}` must be {want}, but the NumPy array has dtype {dtype} (convert it: `.astype(numpy.{numpy_name})`)")
    })?;
    // `shape` is not empty: an array type has rank >= 1 and the ranks agree.
    Ok(Array::new(shape, data))
}

/// The elements of `array` in row-major order when its dtype is `T`'s
/// (Note [Copies at the boundary]).
fn read<T: Element + Copy>(array: &Bound<'_, PyUntypedArray>) -> Option<Vec<T>> {
    array.cast::<PyArrayDyn<T>>().ok()?;
    let plain = c_aligned(array).ok()?;
    let typed = plain.cast::<PyArrayDyn<T>>().ok()?;
    let view = typed.try_readonly().ok()?;
    view.as_slice().ok().map(<[T]>::to_vec)
}

/// A `bool` array's elements, read as bytes (any non-zero byte is true):
/// NumPy lets a `bool` array hold other bytes (a `uint8` mask viewed as
/// `bool`), which are not valid Rust `bool`s.
fn read_bools(array: &Bound<'_, PyUntypedArray>) -> Option<Vec<bool>> {
    array.cast::<PyArrayDyn<bool>>().ok()?;
    let numpy = array.py().import("numpy").ok()?;
    let bytes = c_aligned(array).ok()?.call_method1("view", (numpy.getattr("uint8").ok()?,)).ok()?;
    let typed = bytes.cast::<PyArrayDyn<u8>>().ok()?;
    let view = typed.try_readonly().ok()?;
    view.as_slice().ok().map(|b| b.iter().map(|&x| x != 0).collect())
}

/// `array` itself when it is C-contiguous and aligned, else a C-contiguous,
/// aligned copy (`numpy.require`): a slice of its memory is then row-major
/// and may be read as `&[T]`, whatever the strides, offsets or field views
/// of the original.
fn c_aligned<'py>(array: &Bound<'py, PyUntypedArray>) -> PyResult<Bound<'py, PyAny>> {
    let aligned: bool = array.getattr("flags")?.getattr("aligned")?.extract()?;
    if array.is_c_contiguous() && aligned {
        return Ok(array.clone().into_any());
    }
    let numpy = array.py().import("numpy")?;
    numpy.call_method1("require", (array, array.dtype(), ["C", "A"]))
}

/// Nested lists (and anything else that is not a NumPy array) go through
/// the JSON decoder, which checks them as it checks the CLI's input.
fn nested_lists(obj: &Bound<'_, PyAny>, ty: &ValueType, path: &str) -> Result<Owned, String> {
    let json = to_json(obj, path, 0)?;
    let value = slope_runtime::json::decode(&json, ty, path).map_err(|e| e.to_string())?;
    Ok(Owned::from_value(value))
}

/// `obj` as JSON: lists and tuples as arrays, dicts as objects, NumPy arrays
/// through `tolist()`.
fn to_json(obj: &Bound<'_, PyAny>, path: &str, depth: usize) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    if depth > 10_000 {
        return Err(format!("`{path}` is nested too deeply"));
    }
    if obj.is_instance_of::<PyBool>() {
        return Ok(J::Bool(obj.extract::<bool>().unwrap_or(false)));
    }
    if obj.is_instance_of::<PyInt>() {
        return obj.extract::<i64>().map(J::from).map_err(|_| format!("`{path}` holds an integer beyond 64 bits"));
    }
    if obj.is_instance_of::<PyFloat>() {
        let x = obj.extract::<f64>().unwrap_or(f64::NAN);
        return serde_json::Number::from_f64(x)
            .map(J::Number)
            .ok_or_else(|| format!("`{path}` holds {x} inside a list: pass a NumPy array for non-finite values"));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let items = obj.try_iter().map_err(|e| e.to_string())?;
        return items
            .map(|item| item.map_err(|e| e.to_string()).and_then(|i| to_json(&i, path, depth + 1)))
            .collect::<Result<_, _>>()
            .map(J::Array);
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut map = serde_json::Map::new();
        for (k, v) in dict.iter() {
            let key = k.cast::<PyString>().map_err(|_| format!("`{path}`: record field names are strings"))?;
            map.insert(key.to_string(), to_json(&v, path, depth + 1)?);
        }
        return Ok(J::Object(map));
    }
    if obj.cast::<PyUntypedArray>().is_ok() || obj.hasattr("item").unwrap_or(false) {
        // A NumPy array or scalar inside a list: its plain Python form.
        let plain = obj.call_method0("tolist").map_err(|e| e.to_string())?;
        if !plain.is(obj) {
            return to_json(&plain, path, depth + 1);
        }
    }
    Err(format!("`{path}` holds {}, which is not a Slope value", kind(obj)))
}

/// A result as Python values (Note [Copies at the boundary]).
fn to_python(py: Python<'_>, value: Owned) -> PyResult<Py<PyAny>> {
    Ok(match value {
        Owned::Scalar(Scalar::F64(x)) => PyFloat::new(py, x).into_any().unbind(),
        Owned::Scalar(Scalar::F32(x)) => PyFloat::new(py, f64::from(x)).into_any().unbind(),
        Owned::Scalar(Scalar::I64(x)) => PyInt::new(py, x).into_any().unbind(),
        Owned::Scalar(Scalar::Bool(x)) => PyBool::new(py, x).to_owned().into_any().unbind(),
        Owned::Array(Array { shape, data }) => match data {
            ArrayData::F64(v) => numpy_result(py, shape, v)?,
            ArrayData::F32(v) => numpy_result(py, shape, v)?,
            ArrayData::I64(v) => numpy_result(py, shape, v)?,
            ArrayData::Bool(v) => numpy_result(py, shape, v)?,
        },
        Owned::Tuple(items) => {
            let items = items.into_iter().map(|v| to_python(py, v)).collect::<PyResult<Vec<_>>>()?;
            PyTuple::new(py, items)?.into_any().unbind()
        }
        Owned::Record(fields) => {
            let dict = PyDict::new(py);
            for (name, v) in fields {
                dict.set_item(name, to_python(py, v)?)?;
            }
            dict.into_any().unbind()
        }
    })
}

/// A NumPy array that owns `data` (no copy).
fn numpy_result<T: Element>(py: Python<'_>, shape: Vec<usize>, data: Vec<T>) -> PyResult<Py<PyAny>> {
    let array = ArrayD::from_shape_vec(IxDyn(&shape), data)
        .map_err(|e| InternalError::new_err(format!("error[E0900]: a result's shape does not fit its data: {e}")))?;
    Ok(array.into_pyarray(py).into_any().unbind())
}

/// How a Python value reads in a message: its type's name.
fn kind(obj: &Bound<'_, PyAny>) -> String {
    let name = obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "an object".into());
    match obj.cast::<PyUntypedArray>() {
        Ok(a) => format!("a {}-dimensional NumPy array of {}", a.ndim(), a.dtype()),
        Err(_) => format!("a value of type `{name}`"),
    }
}

fn elem_phrase(elem: ElemType) -> &'static str {
    match elem {
        ElemType::F64 | ElemType::F32 => "a number",
        ElemType::I64 => "an integer",
        ElemType::Bool => "a bool",
    }
}

/// The Python exception for a failure: the class by code range, with the
/// code, message and rendered diagnostic as attributes.
fn raise(py: Python<'_>, failure: &Failure) -> PyErr {
    let first = failure.diagnostics.first();
    let code = first.map(|d| d.code).unwrap_or(Code::E0900);
    let rendered = failure.render(RenderStyle::Short);
    let name = format!("{code:?}");
    let err = match name.as_bytes().get(2) {
        _ if code == Code::E0900 => InternalError::new_err(rendered.clone()),
        Some(b'0' | b'1') => CompileError::new_err(rendered.clone()),
        Some(b'2') => RunError::new_err(rendered.clone()),
        _ => InputError::new_err(rendered.clone()),
    };
    let value = err.value(py);
    let codes: Vec<String> = failure.codes().iter().map(|c| format!("{c:?}")).collect();
    // Setting attributes on a fresh exception instance cannot fail.
    let _ = value.setattr("code", name);
    let _ = value.setattr("codes", codes);
    let _ = value.setattr("message", first.map(|d| d.message.clone()).unwrap_or_default());
    let _ = value.setattr("diagnostic", rendered);
    err
}

/// Runs `f`; a panic (a bug: the compiler's passes already turn theirs into
/// E0900) becomes E0900 too, never a Python `PanicException`.
fn guarded<T>(f: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        let d = slope::diagnostic::Diagnostic::internal("python", "the call panicked", Default::default());
        Err(Failure { sources: Default::default(), diagnostics: vec![d] })
    })
}

/// A bad setting (a thread count) as the CLI reports it: E0305.
fn usage_error(py: Python<'_>, message: String) -> PyErr {
    let diagnostic = slope::diagnostic::Diagnostic::error(
        Code::E0305,
        message,
        slope::diagnostic::Span::default(),
        "in this setting",
    );
    raise(py, &Failure { sources: Default::default(), diagnostics: vec![diagnostic] })
}

#[pymodule]
fn _slope(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_class::<PyProgram>()?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("CompileError", py.get_type::<CompileError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("RunError", py.get_type::<RunError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    Ok(())
}
