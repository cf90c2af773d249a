//! The description of an ahead-of-time library: what `slope build` writes
//! into the library beside the machine code, and what the library's runtime
//! (`slope_capi::aot`) reads when the first context is made.
//!
//! Input: nothing (plain data). Output: [`Library`] and its parts, written
//! and read as JSON (serde), so the compiler and the runtime agree on one
//! definition.
//! Invariants: `entries[k]` is the `k`-th code address of the library's
//! code table, `segments[k]` the `(entries.len() + k)`-th; each entry's
//! `param_leaves` are the leaves of its `params` in order (depth first,
//! record fields by name), and its `result_leaves` those of `result`.

use crate::failure::Message;
use crate::parallel::Segment;
use crate::{ElemType, ValueType};
use serde::{Deserialize, Serialize};

/// Everything a library's runtime needs besides the code.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Library {
    /// The C prefix of the library's functions (`NAME` in `libNAME.so`).
    pub name: String,
    /// Iterations after which a `while` loop fails (E0205), as `slope run`.
    pub while_limit: i64,
    pub entries: Vec<Entry>,
    /// The plans of the parallel segments; their `code` is set at load.
    pub segments: Vec<Segment>,
}

/// One entry point.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// The Slope name (the C function is `NAME_` + a C spelling of it).
    pub name: String,
    /// Parameter names and declared types (argument checks, messages).
    pub params: Vec<(String, ValueType)>,
    pub result: ValueType,
    /// Element type and rank of each argument word group, in order.
    pub param_leaves: Vec<(ElemType, u32)>,
    pub result_leaves: Vec<(ElemType, u32)>,
    /// The failure sites of the entry's code, by site number.
    pub sites: Vec<Site>,
    /// How a bad argument (E0302) is rendered for this entry.
    pub input_error: Rendered,
}

/// A failure site: its stable code, its message and how the CLI renders it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Site {
    /// `"E0201"` and so on.
    pub code: String,
    pub message: Message,
    pub rendered: Rendered,
}

/// A diagnostic rendered by the compiler around a message only known at
/// run time: the text is `before + message + after`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Rendered {
    pub before: String,
    pub after: String,
}

impl Rendered {
    pub fn around(&self, message: &str) -> String {
        format!("{}{message}{}", self.before, self.after)
    }
}
