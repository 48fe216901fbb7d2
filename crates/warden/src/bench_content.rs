//! `warden bench --content`: quality and speed of the content-security detectors, on the public
//! corpora (BIPIA, GitHub MCP tool definitions) and the project's own labelled cases.
//!
//! Positives are built like BIPIA builds them: each attack inserted into benign contexts at the
//! start, the middle and the end. Numbers are printed as Markdown tables for BENCHMARKS.md.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;
use warden_policy::inject::{self, DEFAULT_THRESHOLD};
use warden_policy::redact::{Class, Redactor};
use warden_policy::sanitize::sanitize;
use warden_policy::scan;
use warden_policy::schema::{ArgSchema, Overlay};

/// Detected: an HTML comment (hidden from a reader, removed) or an injection score over the
/// threshold on the sanitized text and what the sanitizer took out (template tokens count).
/// (Invisible characters alone are stripped, not flagged.)
fn flagged(text: &str) -> bool {
    let (clean, removed) = sanitize(text);
    let mut v = inject::scan(&clean);
    v.merge(inject::removed(&removed));
    removed.comments > 0 || v.is_injection(DEFAULT_THRESHOLD)
}

fn lines(path: &Path) -> anyhow::Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// BIPIA contexts: file → list of texts (code contexts are lists of lines).
fn contexts(dir: &Path, set: &str) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(dir.join(format!("{set}_train.jsonl")))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| match &v["context"] {
            Value::String(s) => Some(s.clone()),
            Value::Array(a) => Some(a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n")),
            _ => None,
        })
        .collect())
}

fn embed(attack: &str, ctx: &str, pos: usize) -> String {
    match pos {
        0 => format!("{attack}\n{ctx}"),
        1 => {
            let mut m = ctx.len() / 2;
            while !ctx.is_char_boundary(m) {
                m -= 1;
            }
            format!("{} {attack} {}", &ctx[..m], &ctx[m..])
        }
        _ => format!("{ctx}\n{attack}"),
    }
}

/// Detection rate of `attacks` embedded in `ctxs` (each attack × 3 positions × up to 4 contexts).
fn recall(attacks: &[String], ctxs: &[String]) -> (usize, usize) {
    let mut hit = 0;
    let mut n = 0;
    for (i, a) in attacks.iter().enumerate() {
        for pos in 0..3 {
            for k in 0..4.min(ctxs.len()) {
                let c = &ctxs[(i * 7 + pos * 3 + k * 11) % ctxs.len()];
                n += 1;
                hit += flagged(&embed(a, c, pos)) as usize;
            }
        }
    }
    (hit, n)
}

fn pct(a: usize, b: usize) -> String {
    if b == 0 {
        "–".into()
    } else {
        format!("{:.1} %", 100.0 * a as f64 / b as f64)
    }
}

pub fn run(corpora: Option<PathBuf>) -> anyhow::Result<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus");
    let shared = corpora.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora"));
    let bipia = shared.join("bipia-train");
    let explicit = lines(&repo.join("injection-explicit.txt"))?;
    let hard = lines(&repo.join("benign-hard.txt"))?;

    println!("## Injection detector (threshold {DEFAULT_THRESHOLD})\n");
    println!("| set | kind | texts | flagged |\n|---|---|---|---|");
    let mut benign_all: Vec<String> = Vec::new();
    if bipia.exists() {
        for set in ["email", "code", "table"] {
            let c = contexts(&bipia, set)?;
            let fp = c.iter().filter(|t| flagged(t)).count();
            for t in c.iter().filter(|t| flagged(t)) {
                let rules: Vec<&str> = inject::scan(&sanitize(t).0).findings.iter().map(|f| f.rule).collect();
                eprintln!("flagged benign {set} context: {rules:?}");
            }
            let stripped = c.iter().filter(|t| sanitize(t).1.any()).count();
            println!(
                "| BIPIA {set} contexts | benign | {} | {} ({}); hidden characters stripped, not flagged: {} |",
                c.len(),
                fp,
                pct(fp, c.len()),
                stripped
            );
            benign_all.extend(c);
        }
    } else {
        println!("| BIPIA | (not found at {}) | | |", bipia.display());
    }
    let fp = hard.iter().filter(|t| flagged(t)).count();
    println!("| Warden benign-hard | benign | {} | {} ({}) |", hard.len(), fp, pct(fp, hard.len()));
    let alone = explicit.iter().filter(|t| flagged(t)).count();
    println!(
        "| Warden explicit injections, alone | attack | {} | {} ({}) |",
        explicit.len(),
        alone,
        pct(alone, explicit.len())
    );
    let text_ctx: Vec<String> = if bipia.exists() {
        contexts(&bipia, "email")?.into_iter().chain(contexts(&bipia, "table")?.into_iter().take(100)).collect()
    } else {
        hard.clone()
    };
    let (h, n) = recall(&explicit, &text_ctx);
    println!("| Warden explicit injections, embedded in contexts | attack (explicit) | {n} | {h} ({}) |", pct(h, n));
    if bipia.exists() {
        let code_ctx = contexts(&bipia, "code")?;
        for (file, ctxs, kind) in
            [("text_attack_train.json", &text_ctx, "text"), ("code_attack_train.json", &code_ctx, "code")]
        {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(bipia.join(file))?)?;
            for (cat, attacks) in v.as_object().into_iter().flatten() {
                let a: Vec<String> =
                    attacks.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
                let (h, n) = recall(&a, ctxs);
                let class = if kind == "text"
                    && [
                        "Information Retrieval",
                        "Content Creation",
                        "Learning and Tutoring",
                        "Language Translation",
                        "Programming Help",
                    ]
                    .contains(&cat.as_str())
                {
                    "attack (semantic task)"
                } else {
                    "attack (directive)"
                };
                println!("| BIPIA {kind}: {cat} | {class} | {n} | {h} ({}) |", pct(h, n));
            }
        }
    }

    println!("\n## Tool-definition scan\n");
    println!("| set | definitions | flagged |\n|---|---|---|");
    let gh = shared.join("github-mcp-tools");
    let mut tools: Vec<Value> = Vec::new();
    if gh.exists() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&gh)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for f in files {
            tools.push(serde_json::from_str(&std::fs::read_to_string(&f)?)?);
        }
        let flagged: Vec<String> = tools
            .iter()
            .filter(|t| !scan::scan_tool(t).is_empty())
            .map(|t| format!("{}: {:?}", t["name"], scan::scan_tool(t)))
            .collect();
        println!(
            "| GitHub MCP server tools (benign) | {} | {} ({}) |",
            tools.len(),
            flagged.len(),
            pct(flagged.len(), tools.len())
        );
        for f in &flagged {
            eprintln!("flagged benign tool {f}");
        }
        // Poisoned variants: each explicit injection appended to a real description.
        let mut hit = 0;
        for (i, a) in explicit.iter().enumerate() {
            let mut t = tools[i % tools.len()].clone();
            let d = t["description"].as_str().unwrap_or("").to_string();
            t["description"] = json!(format!("{d}\n{a}"));
            hit += (!scan::scan_tool(&t).is_empty()) as usize;
        }
        println!(
            "| the same, each with one explicit injection appended | {} | {hit} ({}) |",
            explicit.len(),
            pct(hit, explicit.len())
        );
    }

    println!("\n## Redaction on benign text (changes made)\n");
    println!("| set | texts | secrets redactor changed | PII redactor changed |\n|---|---|---|---|");
    let (sec, pii) = (Redactor::new(Class::SECRETS), Redactor::new(Class::PII));
    let changed = |r: &Redactor, t: &str| {
        let mut f = Vec::new();
        r.redact(t, &mut f);
        !f.is_empty()
    };
    let s = benign_all.iter().filter(|t| changed(&sec, t)).count();
    let p = benign_all.iter().filter(|t| changed(&pii, t)).count();
    println!(
        "| BIPIA contexts | {} | {} ({}) | {} ({}) |",
        benign_all.len(),
        s,
        pct(s, benign_all.len()),
        p,
        pct(p, benign_all.len())
    );

    println!("\n## Speed (one core)\n");
    let mut corpus = benign_all.join("\n");
    if corpus.is_empty() {
        corpus = hard.join("\n");
    }
    while corpus.len() < 8 << 20 {
        corpus = corpus.clone() + "\n" + &corpus;
    }
    // Tool outputs arrive as items of a few kB to a few hundred kB; measure on 64 kB chunks.
    let chunks: Vec<&str> = {
        let mut v = Vec::new();
        let mut rest = corpus.as_str();
        while rest.len() > 65536 {
            let mut m = 65536;
            while !rest.is_char_boundary(m) {
                m -= 1;
            }
            v.push(&rest[..m]);
            rest = &rest[m..];
        }
        v
    };
    let bytes: usize = chunks.iter().map(|c| c.len()).sum();
    let rate = |name: &str, f: &dyn Fn(&str) -> usize| {
        let t = Instant::now();
        let mut sink = 0;
        let rounds = 3;
        for _ in 0..rounds {
            for c in &chunks {
                sink += f(c);
            }
        }
        let gbps = (bytes * rounds) as f64 / t.elapsed().as_secs_f64() / 1e9;
        println!("| {name} | {gbps:.2} GB/s | ({sink}) |");
    };
    println!("| stage on benign text ({} MB in 64 kB items) | throughput | |\n|---|---|---|", bytes >> 20);
    inject::warm();
    rate("sanitize", &|c| sanitize(c).0.len());
    rate("injection scan", &|c| inject::scan(c).findings.len());
    rate("sanitize + injection scan", &|c| inject::scan(&sanitize(c).0).findings.len());
    let all = Redactor::default();
    rate("redaction (secrets + PII)", &|c| all.redact(c, &mut Vec::new()).len());
    rate("redaction (secrets only)", &|c| sec.redact(c, &mut Vec::new()).len());

    if let Some(t) = tools.iter().find(|t| t["name"] == "create_issue") {
        let s = ArgSchema::compile(
            &t["inputSchema"],
            &Overlay { strict: true, max_length: Some(65536), max_items: Some(1000), arguments: vec![] },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let args = json!({"owner": "octo", "repo": "hello-world", "title": "Crash on start", "body": "Steps to reproduce: run it."});
        anyhow::ensure!(s.validate(&args).is_ok(), "typical call must validate");
        let n = 200_000;
        let t0 = Instant::now();
        for _ in 0..n {
            std::hint::black_box(s.validate(std::hint::black_box(&args)).is_ok());
        }
        println!(
            "\nSchema validation of a typical `create_issue` call (strict overlay): {:.2} µs per call",
            t0.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
    Ok(())
}
