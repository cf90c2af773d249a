//! Counting cases, saving findings, and the summary table.
//!
//! Input: outcomes and findings as a run produces them. Output: a [`Tally`]
//! per target, a folder per saved finding under the output directory, and
//! the table printed at the end of a run.
//!
//! A saved finding is `<out>/<target>-<kind>-s<seed>-c<index>/` with
//! `case.json` (what `slope-fuzz replay` reads), `report.txt` (what
//! happened, how to replay), and the case in its own form: `program.slope`
//! (for `engines`, headed by the call's `-- entry:` and `-- input:` lines, as
//! a test program would be), `input.json` or `input.npy`.
//! Invariant: findings are grouped by a signature (kind and message with the
//! numbers blanked); only the first [`SAVED_PER_SIGNATURE`] of a group are
//! saved, all are counted.

use crate::case::{Case, Record, Target};
use crate::targets::{Finding, Kind, Outcome, Stats};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub const SAVED_PER_SIGNATURE: usize = 3;

/// What one target's run did.
#[derive(Clone, Debug)]
pub struct Tally {
    pub target: Target,
    pub cases: u64,
    /// Programs that compiled (inputs that decoded).
    pub accepted: u64,
    pub calls: u64,
    pub failed_calls: u64,
    /// Cases stopped because the reference engine took long (not findings).
    pub slow: u64,
    pub findings: BTreeMap<Kind, u64>,
}

impl Tally {
    pub fn new(target: Target) -> Tally {
        Tally { target, cases: 0, accepted: 0, calls: 0, failed_calls: 0, slow: 0, findings: BTreeMap::new() }
    }

    pub fn pass(&mut self, stats: Stats) {
        self.cases += 1;
        self.accepted += u64::from(stats.accepted);
        self.calls += stats.calls as u64;
        self.failed_calls += stats.failed_calls as u64;
    }

    pub fn outcome(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Pass(stats) => self.pass(*stats),
            Outcome::Finding(finding) => self.finding(finding.kind),
        }
    }

    pub fn finding(&mut self, kind: Kind) {
        self.cases += 1;
        *self.findings.entry(kind).or_default() += 1;
    }

    pub fn total_findings(&self) -> u64 {
        self.findings.values().sum()
    }
}

/// The table printed at the end of a run.
pub fn table(tallies: &[Tally]) -> String {
    let mut header = vec!["target", "cases", "accepted", "calls", "failed", "slow"];
    header.extend(Kind::ALL.iter().map(|k| k.name()));
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for t in tallies {
        let mut row = vec![t.target.name().to_string()];
        row.extend([t.cases, t.accepted, t.calls, t.failed_calls, t.slow].map(|n| n.to_string()));
        row.extend(Kind::ALL.iter().map(|k| t.findings.get(k).copied().unwrap_or(0).to_string()));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let line = |row: &Vec<String>| {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, &w))| if i == 0 { format!("{cell:<w$}") } else { format!("{cell:>w$}") })
            .collect();
        cells.join("  ")
    };
    rows.iter().map(line).collect::<Vec<_>>().join("\n")
}

/// Where findings go, and which were seen.
pub struct Store {
    out: PathBuf,
    groups: HashMap<String, Group>,
    /// Signatures in the order first seen.
    order: Vec<String>,
}

/// Findings with one signature.
pub struct Group {
    pub kind: Kind,
    pub target: Target,
    pub count: u64,
    /// The folders saved (the first [`SAVED_PER_SIGNATURE`]).
    pub saved: Vec<PathBuf>,
    /// The first finding, and its case.
    pub first: (Record, Finding),
}

impl Store {
    pub fn new(out: &Path) -> Store {
        Store { out: out.to_path_buf(), groups: HashMap::new(), order: Vec::new() }
    }

    /// Counts a finding and saves it unless its group has enough; returns the folder.
    pub fn record(&mut self, record: &Record, finding: &Finding) -> std::io::Result<Option<PathBuf>> {
        let signature = format!("{} {} {}", record.target.name(), finding.kind.name(), signature(&finding.message));
        if !self.groups.contains_key(&signature) {
            self.order.push(signature.clone());
        }
        let group = self.groups.entry(signature).or_insert_with(|| Group {
            kind: finding.kind,
            target: record.target,
            count: 0,
            saved: Vec::new(),
            first: (record.clone(), finding.clone()),
        });
        group.count += 1;
        if group.saved.len() >= SAVED_PER_SIGNATURE {
            return Ok(None);
        }
        let dir = self.out.join(format!(
            "{}-{}-s{}-c{}",
            record.target.name(),
            finding.kind.name(),
            record.seed,
            record.index
        ));
        save(&dir, record, finding)?;
        group.saved.push(dir.clone());
        Ok(Some(dir))
    }

    /// The groups of findings, in the order first seen.
    pub fn groups(&self) -> Vec<&Group> {
        self.order.iter().map(|s| &self.groups[s]).collect()
    }

    /// One paragraph per group of findings.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for g in self.groups() {
            let first_line = g.first.1.message.lines().next().unwrap_or_default();
            out.push_str(&format!("{} {} ×{}: {first_line}\n", g.target.name(), g.kind.name(), g.count));
            for dir in &g.saved {
                out.push_str(&format!("    {}\n", dir.display()));
            }
        }
        out
    }
}

/// The first line of a message with digit runs blanked: the same defect on
/// another line of another program groups together.
fn signature(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    let mut out = String::new();
    let mut in_digits = false;
    for c in first.chars().take(160) {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

fn save(dir: &Path, record: &Record, finding: &Finding) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let case = serde_json::to_string_pretty(&record.to_json()).expect("JSON values print");
    std::fs::write(dir.join("case.json"), case + "\n")?;
    match &record.case {
        Case::Program { text } => std::fs::write(dir.join("program.slope"), text)?,
        Case::Engines { text, .. } => {
            let header = match &record.call {
                Some((entry, input)) => format!("-- entry: {entry}\n-- input: {input}\n"),
                None => String::new(),
            };
            std::fs::write(dir.join("program.slope"), header + text)?
        }
        Case::Json { bytes, .. } => std::fs::write(dir.join("input.json"), bytes)?,
        Case::Npy { bytes } => std::fs::write(dir.join("input.npy"), bytes)?,
    }
    let mut report = format!(
        "target: {}\nseed: {}\ncase: {}\nkind: {}\n\n{}\n",
        record.target.name(),
        record.seed,
        record.index,
        finding.kind.name(),
        finding.message
    );
    if let Case::Json { program, entry, .. } = &record.case {
        report.push_str(&format!("\ninput for: {program}, entry {}\n", entry.as_deref().unwrap_or("(the only one)")));
    }
    if let Some((entry, input)) = &record.call {
        report.push_str(&format!("\nthe call: {entry} {input}\n"));
    }
    report.push_str(&format!(
        "\nreplay: cargo run --release -p slope-fuzz -- replay {}\n\
         again from the seed: cargo run --release -p slope-fuzz -- --target {} --seed {} --first {} --cases 1\n",
        dir.join("case.json").display(),
        record.target.name(),
        record.seed,
        record.index
    ));
    std::fs::write(dir.join("report.txt"), report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_ignore_numbers() {
        assert_eq!(
            signature("index 12 out of range at fuzz.slope:3:7\nmore"),
            "index # out of range at fuzz.slope:#:#"
        );
    }

    #[test]
    fn the_table_has_a_row_per_target() {
        let mut tally = Tally::new(Target::Engines);
        tally.pass(Stats { accepted: true, calls: 4, failed_calls: 1 });
        tally.finding(Kind::Hang);
        let table = table(&[tally]);
        assert_eq!(table.lines().count(), 2);
        assert!(table.lines().nth(1).unwrap().starts_with("engines"), "{table}");
    }
}
