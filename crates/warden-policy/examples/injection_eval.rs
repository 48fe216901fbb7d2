//! The pattern stage on a labelled JSONL split (`{"text", "label", "kind", "source"}`, as
//! `scripts/classifier/build_dataset.py` writes them): detection per kind and source, and the
//! texts it gets wrong. An attack counts as caught when flagged or when the sanitizer took out
//! an HTML comment (the part a reader does not see); a benign text only when flagged.
//!
//! ```sh
//! cargo run -p warden-policy --example injection_eval -- scripts/classifier/data/train.jsonl [--wrong KIND]
//! ```
//!
//! Develop rules on the train split; read the held-out split's numbers once, never its texts.

use std::collections::BTreeMap;
use warden_policy::inject::{self, DEFAULT_THRESHOLD};
use warden_policy::sanitize::sanitize;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: injection_eval FILE.jsonl [--wrong KIND]");
        std::process::exit(2);
    };
    let wrong = args.iter().position(|a| a == "--wrong").and_then(|i| args.get(i + 1));
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut by: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    let (mut pos, mut neg) = ((0, 0), (0, 0));
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let t = v["text"].as_str().unwrap_or("");
        let kind = v["kind"].as_str().unwrap_or("").to_string();
        let source = v["source"].as_str().unwrap_or("").split('+').next().unwrap_or("").to_string();
        let positive = v["label"] == 1;
        let (clean, removed) = sanitize(t);
        let mut verdict = inject::scan(&clean);
        verdict.merge(inject::removed(&removed));
        // As the gateway does: flagged, or the hidden part taken out (an HTML comment).
        let flagged = verdict.is_injection(DEFAULT_THRESHOLD) || (positive && removed.comments > 0);
        let e = by.entry((kind.clone(), source)).or_default();
        e.0 += 1;
        e.1 += flagged as usize;
        let tally = if positive { &mut pos } else { &mut neg };
        tally.0 += 1;
        tally.1 += flagged as usize;
        if wrong == Some(&kind) && flagged != positive {
            let rules: Vec<&str> = verdict.findings.iter().map(|f| f.rule).collect();
            println!(
                "--- {} {rules:?}\n{}",
                if positive { "MISSED" } else { "FLAGGED" },
                t.chars().take(600).collect::<String>()
            );
        }
    }
    println!("| kind | source | texts | flagged |\n|---|---|---|---|");
    for ((k, s), (n, f)) in &by {
        println!("| {k} | {s} | {n} | {:.1} % |", 100.0 * *f as f64 / *n as f64);
    }
    println!(
        "\nrecall {:.1} % ({}/{}), false positives {:.1} % ({}/{})",
        100.0 * pos.1 as f64 / pos.0.max(1) as f64,
        pos.1,
        pos.0,
        100.0 * neg.1 as f64 / neg.0.max(1) as f64,
        neg.1,
        neg.0
    );
}
