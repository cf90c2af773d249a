//! The GradBench tool protocol as a state machine (`slope gradbench`).
//!
//! Input: one JSON message per call to [`Adapter::handle`] (a line of the
//! eval's stdin); output: the exact JSON response line, without newline.
//! `start` → `{"id","tool"}`; `define` compiles `<module>.slope` through the
//! caller's module loader and reports a `compile` timing; `evaluate` calls the
//! entry named by `function` on the input object (minus `min_runs` and
//! `min_seconds`) until both minimums are met and reports one `evaluate`
//! timing per run; any other kind → `{"id"}`.
//!
//! Invariants: every call returns exactly one response carrying the message's
//! `id` unchanged (`null` when the line has none); nothing panics on bad input;
//! responses never contain NaN or Infinity (the JSON encoder refuses them and
//! that becomes a failure response). No I/O and no clock: files come through
//! the loaders and time through the `clock` argument, so tests are exact.

use serde_json::value::RawValue;
use serde_json::{json, Map, Value as J};
use slope::api::{Engine, Program};
use slope::diagnostic::RenderStyle;
use slope::driver::Loader;
use std::collections::HashMap;

/// Reads a module's source: `module name → (file name for diagnostics and
/// imports, text)`.
pub type ModuleLoader<'l> = dyn Fn(&str) -> Result<(String, String), String> + Sync + 'l;

/// The protocol state: the compiled modules, by name.
pub struct Adapter<'l> {
    load_module: Box<ModuleLoader<'l>>,
    load_import: Box<Loader<'l>>,
    modules: HashMap<String, Program>,
    engine: Engine,
    options: slope::driver::Options,
    log: Vec<String>,
}

/// A failed message: the text of the `error` field.
type Error = String;

impl<'l> Adapter<'l> {
    /// `load_module` reads `<module>.slope`; `load_import` resolves the
    /// non-stdlib imports of that file (as for [`Program::compile`]).
    pub fn new(load_module: Box<ModuleLoader<'l>>, load_import: Box<Loader<'l>>) -> Adapter<'l> {
        Adapter {
            load_module,
            load_import,
            modules: HashMap::new(),
            engine: Engine::Multicore,
            options: Default::default(),
            log: Vec::new(),
        }
    }

    /// Compiles every module with `options` (the library's defaults
    /// otherwise; the CLI passes `--reassociate` on).
    pub fn with_options(mut self, options: slope::driver::Options) -> Adapter<'l> {
        self.options = options;
        self
    }

    /// Runs every call on `engine` (native code by default; the reference
    /// interpreter for differential tests and `slope gradbench --interp`).
    pub fn with_engine(mut self, engine: Engine) -> Adapter<'l> {
        self.engine = engine;
        self
    }

    /// Messages worth logging since the last call (malformed lines, failed
    /// definitions and evaluations); the CLI writes them to stderr.
    pub fn take_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }

    /// Answers one message. `clock` returns a monotonic time in nanoseconds.
    /// The response echoes the message's `id` byte for byte (GradBench ids
    /// are integers, but one beyond 2^64 must not come back rounded).
    pub fn handle(&mut self, line: &str, clock: &mut dyn FnMut() -> u64) -> String {
        let raw: HashMap<String, Box<RawValue>> = match serde_json::from_str(line) {
            Ok(m) => m,
            Err(_) if serde_json::from_str::<Box<RawValue>>(line).is_ok() => {
                return self.failure(NO_ID, protocol("the message is not a JSON object"));
            }
            Err(e) => return self.failure(NO_ID, protocol(format!("the message is not valid JSON: {e}"))),
        };
        let Some(id) = raw.get("id").map(|v| v.get()) else {
            return self.failure(NO_ID, protocol("the message has no `id`"));
        };
        // Every field but the (possibly large) input becomes a `Value`; the
        // input is decoded from its text straight into the entry's arrays.
        let mut fields = Map::new();
        for (name, value) in raw.iter().filter(|(name, _)| *name != "id" && *name != "input") {
            // The text is valid JSON (it parsed as a raw value).
            let value: J = serde_json::from_str(value.get()).expect("a raw JSON value parses");
            fields.insert(name.clone(), value);
        }
        let input = raw.get("input").map(|v| v.get());
        let result = match fields.get("kind").and_then(J::as_str) {
            Some("start") => return respond(id, body(json!({"tool": "slope"}))),
            Some("define") => module_name(&fields).and_then(|m| self.define(m, clock)),
            Some("evaluate") => self.evaluate(&fields, input, clock),
            Some(_) => return respond(id, Map::new()),
            None => Err(protocol("the message has no `kind`")),
        };
        match result {
            Ok(mut body) => {
                let mut response = Map::new();
                response.insert("success".into(), J::Bool(true));
                response.append(&mut body);
                respond(id, response)
            }
            Err(e) => self.failure(id, e),
        }
    }

    /// The response to a line that is not UTF-8 (the CLI reads bytes): it has
    /// no readable `id`, and the session goes on.
    pub fn reject_non_utf8(&mut self, line: &[u8]) -> String {
        let at = std::str::from_utf8(line).err().map_or(0, |e| e.valid_up_to());
        let byte = line.get(at).copied().unwrap_or(0);
        self.failure(NO_ID, protocol(format!("the message is not valid UTF-8 (byte 0x{byte:02x} at offset {at})")))
    }

    /// The response to a line over the size limit, which was not kept.
    pub fn reject_too_long(&mut self, bytes: u64, limit: u64) -> String {
        let error =
            format!("error[E0308]: input too large: a message of {bytes} bytes, more than the limit of {limit}");
        self.failure(NO_ID, error)
    }

    fn failure(&mut self, id: &str, error: Error) -> String {
        self.log.push(format!("message {id}: {error}"));
        respond(id, body(json!({"success": false, "error": error})))
    }

    /// Compiles a module (again, if it was defined before).
    fn define(&mut self, module: &str, clock: &mut dyn FnMut() -> u64) -> Result<Map<String, J>, Error> {
        let (name, text) =
            (self.load_module)(module).map_err(|e| format!("error[E0303]: module `{module}` is not supported: {e}"))?;
        let start = clock();
        let compiled = Program::compile_with(&name, &text, &*self.load_import, &self.options);
        // Native code is part of compiling: build it now, not in the first `evaluate`.
        let engine = self.engine;
        let compiled = compiled.and_then(|mut p| {
            p.engine = engine;
            p.executable(engine)?;
            Ok(p)
        });
        let nanoseconds = clock().saturating_sub(start);
        let program = compiled.map_err(|f| render(&f))?;
        self.modules.insert(module.to_string(), program);
        Ok(body(json!({"timings": [{"name": "compile", "nanoseconds": nanoseconds}]})))
    }

    fn evaluate(
        &mut self,
        fields: &Map<String, J>,
        input: Option<&str>,
        clock: &mut dyn FnMut() -> u64,
    ) -> Result<Map<String, J>, Error> {
        let module = module_name(fields)?;
        // GradBench always defines first; a hand-written message file may not,
        // and compiling here is more useful than refusing.
        if !self.modules.contains_key(module) {
            self.define(module, clock)?;
        }
        let program = &self.modules[module];
        let function =
            fields.get("function").and_then(J::as_str).ok_or_else(|| protocol("the message has no `function`"))?;
        let entry = program.entry_name(Some(function)).map_err(|f| render(&f))?;
        let input = input.ok_or_else(|| protocol("the message has no `input`"))?;
        let (min_runs, min_seconds) = limits(input)?;
        let args = program.decode_json_text_args(&entry, input).map_err(|f| render(&f))?;
        // Elapsed time is the sum of the runs' own times, as GradBench's
        // tools measure it: decoding and encoding are not part of it, nor
        // handing the arguments to native code and copying its results out.
        let min_nanoseconds = (min_seconds * 1e9).ceil() as u64;
        let mut timings = Vec::new();
        let mut elapsed: u64 = 0;
        let mut last = None;
        while timings.len() < min_runs.max(1) || elapsed < min_nanoseconds {
            let (value, nanoseconds) = program.call_values_timed(&entry, &args, clock).map_err(|f| render(&f))?;
            elapsed = elapsed.saturating_add(nanoseconds);
            timings.push(json!({"name": "evaluate", "nanoseconds": nanoseconds}));
            last = Some(value);
        }
        let value = last.expect("at least one run");
        let output = program.encode_result(&entry, &value).map_err(|f| render(&f))?;
        Ok(body(json!({"output": output, "timings": timings})))
    }
}

/// The `id` of a response to a message that has no readable one.
const NO_ID: &str = "null";

/// A response: `{"id": <id as received>, …body}`. The id is spliced in as
/// text because `serde_json::Value` would round a big integer to a float.
fn respond(id: &str, body: Map<String, J>) -> String {
    let rest = J::Object(body).to_string();
    match rest.strip_prefix('{').filter(|r| *r != "}") {
        Some(fields) => format!("{{\"id\":{id},{fields}"),
        None => format!("{{\"id\":{id}}}"),
    }
}

/// A malformed message (E0306), as the text of the `error` field.
fn protocol(message: impl Into<String>) -> Error {
    format!("error[E0306]: invalid protocol message: {}", message.into())
}

fn body(value: J) -> Map<String, J> {
    match value {
        J::Object(m) => m,
        _ => unreachable!("bodies are objects"),
    }
}

/// The diagnostics in short style, one per line, each with its notes (which
/// say e.g. which entry points exist: the eval's log is all a user sees).
fn render(f: &slope::api::Failure) -> String {
    let lines: Vec<String> = f
        .diagnostics
        .iter()
        .map(|d| {
            let mut line = slope::diagnostic::render(&f.sources, std::slice::from_ref(d), RenderStyle::Short)
                .trim_end()
                .to_string();
            for note in d.notes.iter().chain(&d.help) {
                line.push_str(&format!(" ({note})"));
            }
            line
        })
        .collect();
    lines.join("\n")
}

/// The `module` field, which must be a plain name: it becomes a file name.
fn module_name(fields: &Map<String, J>) -> Result<&str, Error> {
    let module = fields.get("module").and_then(J::as_str).ok_or_else(|| protocol("the message has no `module`"))?;
    let plain = !module.is_empty()
        && !module.starts_with('.')
        && module.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if plain {
        Ok(module)
    } else {
        Err(protocol(format!("`{module}` is not a module name")))
    }
}

/// `min_runs` and `min_seconds` of an input object (defaults 1 and 0). Other
/// inputs (`hello`'s bare number) carry no limits. Only the top level of the
/// input is read here; the arguments are decoded later, from the text.
fn limits(input: &str) -> Result<(usize, f64), Error> {
    if !input.starts_with('{') {
        return Ok((1, 0.0));
    }
    let map: HashMap<String, &RawValue> =
        serde_json::from_str(input).map_err(|e| protocol(format!("the input is not valid JSON: {e}")))?;
    let field = |name: &str| map.get(name).map(|v| serde_json::from_str::<J>(v.get()).unwrap_or(J::Null));
    let min_runs = match field("min_runs") {
        None => 1,
        Some(v) => {
            v.as_u64().ok_or_else(|| protocol(format!("`min_runs` must be a non-negative integer, not {v}")))? as usize
        }
    };
    let min_seconds = match field("min_seconds") {
        None => 0.0,
        Some(v) => match v.as_f64() {
            Some(s) if s >= 0.0 && s.is_finite() => s,
            _ => return Err(protocol(format!("`min_seconds` must be a non-negative number, not {v}"))),
        },
    };
    Ok((min_runs, min_seconds))
}
