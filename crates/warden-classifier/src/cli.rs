//! `warden classifier`: train the injection classifier's heads on labelled JSON lines, and
//! score texts with it (what `[content.classifier]` would say).

use crate::train::{featurize, train, Sample};
use crate::{files, Classifier, Limits};
use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What training reads and writes.
#[derive(clap::Args)]
pub struct Paths {
    /// The encoder's directory (all-MiniLM-L6-v2; `scripts/setup.sh` installs it in .models/).
    #[arg(long)]
    model: PathBuf,
    /// Labelled JSON lines (text, label 0|1, kind).
    #[arg(long)]
    data: PathBuf,
    /// The head file written.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Subcommand)]
pub enum ClassifierCmd {
    /// Train the heads on `--data` (JSON lines: text, label 0|1, kind) and write `--out`.
    Train {
        #[command(flatten)]
        paths: Paths,
        /// Keep the texts' embeddings here and reuse them while the data is unchanged.
        #[arg(long)]
        cache: Option<PathBuf>,
        /// The classifier's hidden units.
        #[arg(long, default_value_t = crate::train::HIDDEN)]
        hidden: usize,
        /// Passes over the training windows.
        #[arg(long, default_value_t = crate::train::EPOCHS)]
        epochs: usize,
        /// Share of benign training texts allowed over the operating point.
        #[arg(long, default_value_t = crate::train::BENIGN_OVER)]
        benign_over: f64,
    },
    /// Fine-tune the encoder's top layers (low-rank updates) with the classifier on `--data`,
    /// then fit, calibrate and gate the head as `train` does, and write `--out`.
    Tune {
        #[command(flatten)]
        paths: Paths,
        /// Top layers tuned.
        #[arg(long, default_value_t = 2)]
        layers: usize,
        #[arg(long, default_value_t = 8)]
        rank: usize,
        #[arg(long, default_value_t = 16.0)]
        alpha: f32,
        /// Passes over the positives (and a fresh sample of negatives).
        #[arg(long, default_value_t = 3)]
        epochs: usize,
        /// Benign windows sampled per pass.
        #[arg(long, default_value_t = 4000)]
        negatives: usize,
        #[arg(long, default_value_t = 5e-4)]
        lr: f64,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// The final head's hidden units and passes (as for `train`).
        #[arg(long, default_value_t = crate::train::HIDDEN)]
        hidden: usize,
        #[arg(long, default_value_t = crate::train::EPOCHS)]
        head_epochs: usize,
        #[arg(long, default_value_t = crate::train::BENIGN_OVER)]
        benign_over: f64,
        /// One benign text in this many is kept out of tuning and fitting, and the operating
        /// point is set on those (0: on the training texts themselves).
        #[arg(long, default_value_t = 4)]
        calibrate_every: usize,
    },
    /// Detection per kind on labelled JSON lines (a held-out split), at the head's operating point.
    Eval {
        #[arg(long)]
        model: PathBuf,
        /// A head file (default: the bundled one).
        #[arg(long)]
        head: Option<PathBuf>,
        #[arg(long)]
        data: PathBuf,
        /// As for `train`.
        #[arg(long)]
        cache: Option<PathBuf>,
    },
    /// Print the score of each file (or of stdin).
    Score {
        #[arg(long)]
        model: PathBuf,
        /// A head file (default: the bundled one).
        #[arg(long)]
        head: Option<PathBuf>,
        files: Vec<PathBuf>,
    },
}

/// Labelled samples from JSON lines.
pub fn samples(path: &Path) -> anyhow::Result<Vec<Sample>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let v: Value = serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))?;
            Ok(Sample {
                text: v["text"].as_str().context("text")?.to_string(),
                positive: v["label"].as_u64().context("label")? == 1,
                kind: v["kind"].as_str().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// The data file's bytes and its texts' features (from the cache while the data is unchanged).
fn features(
    model: &Path,
    data: &Path,
    cache: Option<&Path>,
    adapters: Option<&crate::adapters::Adapters>,
) -> anyhow::Result<(Vec<u8>, Vec<crate::train::Features>)> {
    let set = samples(data)?;
    let raw = std::fs::read(data)?;
    let mut key = files::sha256_hex(&raw);
    if let Some(a) = adapters {
        key += &files::sha256_hex(&serde_json::to_vec(a)?);
    }
    if let Some(f) = cache.and_then(|c| crate::train::load_cache(c, &key, &set)) {
        return Ok((raw, f));
    }
    let start = Instant::now();
    let mut encoder = Classifier::encoder(model)?;
    if let Some(a) = adapters {
        encoder.set_adapters(a)?;
    }
    let mut feats = Vec::with_capacity(set.len());
    for (i, s) in set.iter().enumerate() {
        feats.push(featurize(&encoder, s)?);
        if i % 100 == 99 {
            eprintln!("classifier: embedded {}/{} texts ({:.0?})", i + 1, set.len(), start.elapsed());
        }
    }
    if let Some(c) = cache {
        crate::train::save_cache(c, &key, &feats)?;
    }
    Ok((raw, feats))
}

pub fn run(cmd: ClassifierCmd) -> anyhow::Result<()> {
    match cmd {
        ClassifierCmd::Eval { model, head, data, cache } => {
            let head = std::fs::read_to_string(head.unwrap_or_else(|| "crates/warden-classifier/head.json".into()))?;
            let head: crate::head::Head = serde_json::from_str(&head)?;
            head.check(files::MINILM_L6_V2[2].1).map_err(anyhow::Error::msg)?;
            let (_, feats) = features(&model, &data, cache.as_deref(), head.adapters.as_ref())?;
            println!("{}", serde_json::to_string_pretty(&crate::train::metrics(&head, &feats))?);
            Ok(())
        }
        ClassifierCmd::Train { paths: Paths { model, data, out }, cache, hidden, epochs, benign_over } => {
            let start = Instant::now();
            let (raw, feats) = features(&model, &data, cache.as_deref(), None)?;
            let set = samples(&data)?;
            let meta = json!({
                "data": data.file_name().map(|n| n.to_string_lossy().into_owned()),
                "data_sha256": files::sha256_hex(&raw),
                "texts": set.len(),
                "positives": set.iter().filter(|s| s.positive).count(),
                "method": format!("multiple-instance training, 3 rounds: classifier a tanh MLP ({hidden} hidden, {epochs} epochs of minibatch Adam, L2 1e-4, classes balanced, seed {}); gate logistic regression on static embeddings; operating point: {benign_over} of benign training texts over it", crate::train::SEED),
            });
            let settings = crate::train::Settings { hidden, epochs, benign_over };
            let head = train(&feats, None, files::MINILM_L6_V2[2].1, meta, settings);
            std::fs::write(&out, serde_json::to_string_pretty(&head)? + "\n")?;
            eprintln!(
                "classifier: wrote {} ({:.0?}); {}",
                out.display(),
                start.elapsed(),
                head.training["train_metrics"]
            );
            Ok(())
        }
        ClassifierCmd::Tune {
            paths: Paths { model, data, out },
            layers,
            rank,
            alpha,
            epochs,
            negatives,
            lr,
            batch,
            hidden,
            head_epochs,
            benign_over,
            calibrate_every,
        } => {
            let start = Instant::now();
            let all = samples(&data)?;
            let raw = std::fs::read(&data)?;
            // Every `calibrate_every`-th benign text (in file order) is for calibration only.
            let (mut set, mut calib) = (Vec::new(), Vec::new());
            let mut benign_seen = 0usize;
            for x in all {
                if !x.positive {
                    benign_seen += 1;
                    if calibrate_every > 0 && benign_seen.is_multiple_of(calibrate_every) {
                        calib.push(x);
                        continue;
                    }
                }
                set.push(x);
            }
            let encoder = Classifier::encoder(&model)?;
            let bundled: crate::head::Head = serde_json::from_str(crate::BUNDLED_HEAD)?;
            let n = encoder.model().layer_count();
            anyhow::ensure!((1..=n).contains(&layers), "--layers: 1 to {n}");
            anyhow::ensure!(
                (1..=crate::adapters::MAX_RANK).contains(&rank),
                "--rank: 1 to {}",
                crate::adapters::MAX_RANK
            );
            let s =
                crate::tune::Settings { layers, rank, alpha, epochs, negatives, lr, batch, seed: crate::train::SEED };
            let frozen = crate::tune::freeze(&encoder, &set, n - layers)?;
            eprintln!("tune: frozen layers done ({:.0?})", start.elapsed());
            let (adapters, feats) = crate::tune::tune(&encoder, &set, &frozen, &bundled.classifier, &s)?;
            let mut tuned = Classifier::encoder(&model)?;
            tuned.set_adapters(&adapters)?;
            let calib: Vec<_> = calib.iter().map(|x| featurize(&tuned, x)).collect::<Result<_, _>>()?;
            let meta = json!({
                "data": data.file_name().map(|n| n.to_string_lossy().into_owned()),
                "data_sha256": files::sha256_hex(&raw),
                "texts": set.len(),
                "calibration_texts": calib.len(),
                "positives": set.iter().filter(|s| s.positive).count(),
                "method": format!("encoder fine-tuned: low-rank updates (rank {rank}, alpha {alpha}) of the top {layers} layers' linear maps with an MLP head started from the frozen encoder's, {epochs} passes of AdamW (lr {lr}, batch {batch}), multiple-instance positives, {negatives} benign windows sampled per pass plus the hard benign texts, seed {}; then the head fitted again on the tuned embeddings: multiple-instance training, 3 rounds, a tanh MLP ({hidden} hidden, {head_epochs} epochs); gate logistic regression on static embeddings; operating point: {benign_over} of the benign calibration texts (1 benign text in {calibrate_every}, kept out of tuning and fitting) over it", crate::train::SEED),
            });
            let settings = crate::train::Settings { hidden, epochs: head_epochs, benign_over };
            let mut head =
                train(&feats, (!calib.is_empty()).then_some(&calib[..]), files::MINILM_L6_V2[2].1, meta, settings);
            head.adapters = Some(adapters);
            std::fs::write(&out, serde_json::to_string_pretty(&head)? + "\n")?;
            eprintln!("tune: wrote {} ({:.0?}); {}", out.display(), start.elapsed(), head.training["train_metrics"]);
            Ok(())
        }
        ClassifierCmd::Score { model, head, files } => {
            let head = head.map(std::fs::read_to_string).transpose()?;
            let c = Classifier::load(&model, head.as_deref())?;
            let limits = Limits { max_bytes: usize::MAX, budget: Duration::from_secs(3600) };
            let texts: Vec<(String, String)> = if files.is_empty() {
                vec![("-".into(), std::io::read_to_string(std::io::stdin())?)]
            } else {
                files
                    .iter()
                    .map(|f| Ok((f.display().to_string(), std::fs::read_to_string(f)?)))
                    .collect::<anyhow::Result<_>>()?
            };
            for (name, t) in texts {
                let o = c.score(&t, limits)?;
                let worst = o.worst.map(|r| t[r].to_string()).unwrap_or_default();
                println!("{:.3}\t{name}\t{}/{} windows\t{worst:?}", o.score, o.scored, o.windows);
            }
            Ok(())
        }
    }
}
