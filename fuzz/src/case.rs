//! Fuzz targets and their cases: what a case is, how case `i` of a run is
//! made, and how a case is written to a file and read back.
//!
//! Input: the [`Corpus`], a target, the run's seed and the case index.
//! Output: a [`Case`] — a program (for `check` and `native`), a program and
//! the seed of its arguments (`engines`: arguments are made from the entry
//! signatures once the program has compiled), or the bytes of an entry input
//! (`decode`: JSON for a seed program's entry, or a `.npy` file).
//! Invariant: [`generate`] depends on `(corpus, target, seed, index)` only.

use crate::corpus::Corpus;
use crate::mutate::{self, program::Style};
use crate::rng::Rng;
use serde_json::{json, Value as Json};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Check,
    Native,
    Engines,
    Decode,
}

impl Target {
    pub const ALL: [Target; 4] = [Target::Check, Target::Native, Target::Engines, Target::Decode];

    pub fn name(self) -> &'static str {
        match self {
            Target::Check => "check",
            Target::Native => "native",
            Target::Engines => "engines",
            Target::Decode => "decode",
        }
    }

    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Case {
    /// A program for `check` or `native`.
    Program { text: String },
    /// A program, and the seed its arguments are drawn from.
    Engines { text: String, input_seed: u64 },
    /// A JSON input for `entry` of the seed program at `program` (a path).
    Json { program: String, entry: Option<String>, bytes: Vec<u8> },
    /// The bytes of a `.npy` file.
    Npy { bytes: Vec<u8> },
}

/// Case `index` of `target` in a run seeded with `seed`.
pub fn generate(corpus: &Corpus, target: Target, seed: u64, index: u64) -> Case {
    let mut rng = Rng::for_case(seed, target.name(), index);
    match target {
        Target::Check => {
            let text = &rng.pick(&corpus.programs).text;
            let style = if rng.one_in(10) { Style::Gentle } else { Style::Wild };
            Case::Program { text: mutate::program::mutate(text, corpus, &mut rng, style) }
        }
        Target::Native => Case::Program { text: runnable_mutant(corpus, &mut rng, 8) },
        Target::Engines => {
            let text = runnable_mutant(corpus, &mut rng, 4);
            Case::Engines { text, input_seed: rng.next_u64() }
        }
        Target::Decode if corpus.inputs.is_empty() || rng.one_in(4) => {
            Case::Npy { bytes: mutate::npy::generate(&mut rng) }
        }
        Target::Decode => {
            let seed = rng.pick(&corpus.inputs).clone();
            let bytes =
                if rng.one_in(10) { seed.json.into_bytes() } else { mutate::json::mutate(&seed.json, &mut rng) };
            Case::Json { program: corpus.programs[seed.program].path.clone(), entry: seed.entry, bytes }
        }
    }
}

/// A gently mutated program with entries (one time in `unchanged_one_in`, the seed itself).
fn runnable_mutant(corpus: &Corpus, rng: &mut Rng, unchanged_one_in: usize) -> String {
    let text = &corpus.programs[*rng.pick(&corpus.runnable)].text;
    if rng.one_in(unchanged_one_in) {
        text.clone()
    } else {
        mutate::program::mutate(text, corpus, rng, Style::Gentle)
    }
}

/// A case as saved in a file: which run it came from, the case, and (for
/// `engines`) the call under way when it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub target: Target,
    pub seed: u64,
    pub index: u64,
    pub case: Case,
    /// `(entry, input)`: the call being made (inputs in the form of [`crate::inputs::input_json`]).
    pub call: Option<(String, Json)>,
}

impl Record {
    pub fn to_json(&self) -> Json {
        let mut out = json!({"target": self.target.name(), "seed": self.seed, "index": self.index});
        let fields = out.as_object_mut().expect("an object");
        match &self.case {
            Case::Program { text } => {
                fields.insert("program".into(), json!(text));
            }
            Case::Engines { text, input_seed } => {
                fields.insert("program".into(), json!(text));
                fields.insert("input_seed".into(), json!(input_seed));
            }
            Case::Json { program, entry, bytes } => {
                fields.insert("program_path".into(), json!(program));
                fields.insert("entry".into(), json!(entry));
                fields.insert("json_hex".into(), json!(hex(bytes)));
            }
            Case::Npy { bytes } => {
                fields.insert("npy_hex".into(), json!(hex(bytes)));
            }
        }
        if let Some((entry, input)) = &self.call {
            fields.insert("call".into(), json!({"entry": entry, "input": input}));
        }
        out
    }

    pub fn from_json(record: &Json) -> Result<Record, String> {
        let text = |key: &str| record[key].as_str().map(str::to_string).ok_or(format!("no `{key}` in the case"));
        let number = |key: &str| record[key].as_u64().ok_or(format!("no `{key}` in the case"));
        let target = Target::from_name(&text("target")?).ok_or("an unknown target")?;
        let case = match target {
            Target::Check | Target::Native => Case::Program { text: text("program")? },
            Target::Engines => Case::Engines { text: text("program")?, input_seed: number("input_seed")? },
            Target::Decode if record.get("npy_hex").is_some() => Case::Npy { bytes: unhex(&text("npy_hex")?)? },
            Target::Decode => Case::Json {
                program: text("program_path")?,
                entry: record["entry"].as_str().map(str::to_string),
                bytes: unhex(&text("json_hex")?)?,
            },
        };
        let call = record.get("call").and_then(|c| Some((c["entry"].as_str()?.to_string(), c["input"].clone())));
        Ok(Record { target, seed: number("seed")?, index: number("index")?, case, call })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return Err("bad hex in the case".into());
    }
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| format!("bad hex in the case: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back() {
        let cases = [
            Case::Program { text: "entry f (x: f64) : f64 = x\n\0é".into() },
            Case::Engines { text: "entry f (x: f64) : f64 = x\n".into(), input_seed: u64::MAX },
            Case::Json { program: "examples/least_squares.slope".into(), entry: None, bytes: vec![0xff, b'{', 0] },
            Case::Npy { bytes: b"\x93NUMPY\x01\x00".to_vec() },
        ];
        let targets = [Target::Native, Target::Engines, Target::Decode, Target::Decode];
        for (case, target) in cases.into_iter().zip(targets) {
            let call = Some(("f".to_string(), json!({"x": "NaN"})));
            let record = Record { target, seed: 3, index: 99, case, call };
            let text = record.to_json().to_string();
            assert_eq!(Record::from_json(&serde_json::from_str(&text).unwrap()).unwrap(), record);
        }
    }
}
