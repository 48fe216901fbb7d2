//! `warden bench --classifier DIR`: the semantic injection classifier against the patterns, on
//! the held-out split that `scripts/classifier/build_dataset.py` keeps apart (never trained or
//! tuned on: whole attack categories, contexts, a separately written template family, and all
//! of AgentDojo), and its time per 4 KB of benign output.
//!
//! "Both" is what the gateway does: the patterns' verdict plus the classifier's finding (when
//! it scores at least its operating point, 0.5), summed and capped at 1, against the injection
//! threshold. An attack counts as stopped when flagged, or when the sanitizer took out an HTML
//! comment (the part a reader cannot see); a benign text counts only when flagged.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use warden_classifier::{Classifier, Limits, OPERATING_POINT};
use warden_policy::inject::{self, DEFAULT_THRESHOLD};
use warden_policy::sanitize::sanitize;

const UNLIMITED: Limits = Limits { max_bytes: usize::MAX, budget: Duration::from_secs(3600) };

struct Row {
    text: String,
    positive: bool,
    kind: String,
    source: String,
}

#[derive(Default)]
struct Tally {
    n: usize,
    patterns: usize,
    classifier: usize,
    both: usize,
}

fn pct(a: usize, b: usize) -> String {
    if b == 0 {
        "–".into()
    } else {
        format!("{:.1} %", 100.0 * a as f64 / b as f64)
    }
}

fn percentile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v.get(((v.len().max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or_default()
}

/// The held-out table for the patterns, and with `model` for the classifier and both, then
/// the classifier's time per 4 KB.
pub fn run(model: Option<&Path>) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let data = std::fs::read_to_string(root.join("scripts/classifier/data/heldout.jsonl"))?;
    let rows: Vec<Row> = data
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| Row {
            text: v["text"].as_str().unwrap_or("").to_string(),
            positive: v["label"] == 1,
            kind: v["kind"].as_str().unwrap_or("").to_string(),
            source: v["source"].as_str().unwrap_or("").split('+').next().unwrap_or("").to_string(),
        })
        .collect();
    let c = model.map(|m| Classifier::load(m, None)).transpose()?;
    let mut by: BTreeMap<(String, String), Tally> = BTreeMap::new();
    let mut all: BTreeMap<bool, Tally> = BTreeMap::new();
    for r in &rows {
        let (clean, removed) = sanitize(&r.text);
        let mut v = inject::scan(&clean);
        v.merge(inject::removed(&removed));
        // An attack whose hidden part (an HTML comment) the sanitizer took out is stopped too.
        let stripped = r.positive && removed.comments > 0;
        let p = v.is_injection(DEFAULT_THRESHOLD) || stripped;
        let score = match &c {
            Some(c) => c.score(&clean, UNLIMITED)?.score,
            None => 0.0,
        };
        let k = score >= OPERATING_POINT;
        if k {
            v.score = (v.score + score).min(1.0);
        }
        let b = v.is_injection(DEFAULT_THRESHOLD) || stripped;
        for t in [by.entry((r.kind.clone(), r.source.clone())).or_default(), all.entry(r.positive).or_default()] {
            t.n += 1;
            t.patterns += p as usize;
            t.classifier += k as usize;
            t.both += b as usize;
        }
    }
    println!("\n## Injection detectors, held-out split ({} texts; flagged at {DEFAULT_THRESHOLD})\n", rows.len());
    if c.is_none() {
        println!("(Patterns only: `--classifier DIR` adds the classifier and both.)\n");
    }
    let cols = if c.is_some() { 3 } else { 1 };
    let names = ["patterns", "classifier", "both"];
    println!("| kind | source | texts | {} |\n|---|---|---|{}", names[..cols].join(" | "), "---|".repeat(cols));
    for ((kind, source), t) in &by {
        let cells = [pct(t.patterns, t.n), pct(t.classifier, t.n), pct(t.both, t.n)];
        println!("| {kind} | {source} | {} | {} |", t.n, cells[..cols].join(" | "));
    }
    let (neg, pos) = (all.remove(&false).unwrap_or_default(), all.remove(&true).unwrap_or_default());
    println!("\n| detector | recall | false positives (benign texts) | precision |\n|---|---|---|---|");
    let detectors = [
        ("patterns", pos.patterns, neg.patterns),
        ("classifier", pos.classifier, neg.classifier),
        ("both", pos.both, neg.both),
    ];
    for (name, tp, fp) in detectors.into_iter().take(cols) {
        println!("| {name} | {} | {} ({fp}/{}) | {} |", pct(tp, pos.n), pct(fp, neg.n), neg.n, pct(tp, tp + fp));
    }
    match (c, model) {
        (Some(c), Some(model)) => speed(&c, &rows, model),
        _ => Ok(()),
    }
}

/// Time per 4 KB of benign output (held-out benign outputs, joined and cut to 4,096 bytes), with
/// the gate and with every window through the encoder.
fn speed(c: &Classifier, rows: &[Row], model: &Path) -> anyhow::Result<()> {
    let benign: Vec<&str> = rows.iter().filter(|r| r.kind == "benign_output").map(|r| r.text.as_str()).collect();
    let mut texts = Vec::new();
    let mut cur = String::new();
    for t in benign.iter().cycle().take(benign.len() * 2) {
        cur.push_str(t);
        cur.push('\n');
        if cur.len() >= 4096 {
            let mut end = 4096;
            while !cur.is_char_boundary(end) {
                end -= 1;
            }
            texts.push(cur[..end].to_string());
            cur.clear();
            if texts.len() == 60 {
                break;
            }
        }
    }
    let mut head: Value = serde_json::from_str(warden_classifier::BUNDLED_HEAD)?;
    head["gate_threshold"] = 0.0.into();
    let ungated = Classifier::load(model, Some(&head.to_string()))?;
    println!(
        "\n## Classifier time per 4 KB of benign output ({} texts, {} thread(s))\n",
        texts.len(),
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into())
    );
    println!("| path | p50 | p90 | p99 | windows scored by the encoder |\n|---|---|---|---|---|");
    for (name, cl) in [("gate, then encoder", c), ("encoder on every window", &ungated)] {
        let mut times = Vec::new();
        let (mut scored, mut windows) = (0, 0);
        for t in &texts {
            let start = Instant::now();
            let o = cl.score(t, UNLIMITED)?;
            times.push(start.elapsed());
            scored += o.scored;
            windows += o.windows;
        }
        let (p50, p90, p99) = (percentile(&mut times, 0.5), percentile(&mut times, 0.9), percentile(&mut times, 0.99));
        println!("| {name} | {p50:.2?} | {p90:.2?} | {p99:.2?} | {scored}/{windows} |");
    }
    Ok(())
}
