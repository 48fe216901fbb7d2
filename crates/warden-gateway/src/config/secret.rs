//! Secret references (`{ env = "VAR" }` or `{ file = "/path" }`): secrets are never written into the config.

use super::*;

/// A secret: never written in the config, only referenced.
#[derive(Debug, Clone, Default)]
pub struct SecretRef {
    /// Read from this environment variable of Warden's.
    pub env: Option<String>,
    /// Read from this file (trailing newline trimmed); relative to the config file's directory.
    pub file: Option<PathBuf>,
    /// Text placed before the secret (for example `"Bearer "`).
    pub prefix: String,
    /// Where the reference is written: its byte span while parsing, `file:line:col` after
    /// [`Config::load`] (for `warden check`).
    pub(super) at: SecretAt,
}

#[derive(Debug, Clone, Default)]
pub(super) enum SecretAt {
    #[default]
    Unknown,
    Span(std::ops::Range<usize>),
    Text(String),
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            env: Option<String>,
            file: Option<PathBuf>,
            #[serde(default)]
            prefix: String,
        }
        let spanned = toml::Spanned::<Raw>::deserialize(d)?;
        let at = SecretAt::Span(spanned.span());
        let r = spanned.into_inner();
        Ok(SecretRef { env: r.env, file: r.file, prefix: r.prefix, at })
    }
}

impl SecretRef {
    /// Where the reference is written (`file:line:col`), when it came from a config file.
    pub fn location(&self) -> Option<&str> {
        match &self.at {
            SecretAt::Text(t) => Some(t),
            _ => None,
        }
    }

    /// Drop where the reference was written (two configs that differ only in line numbers are
    /// the same).
    pub fn forget_location(&mut self) {
        self.at = SecretAt::Unknown;
    }

    /// Resolve the secret now. The error names the reference, never the value.
    pub fn resolve(&self) -> Result<String, String> {
        let raw = match (&self.env, &self.file) {
            (Some(var), _) => std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?,
            (_, Some(p)) => std::fs::read_to_string(p)
                .map_err(|e| format!("secret file {}: {e}", p.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
            _ => return Err("empty secret reference".into()),
        };
        Ok(format!("{}{raw}", self.prefix))
    }
}

/// Shown as where it points (`{"env": "VAR"}` or `{"file": "/path"}`, with a `prefix` that is
/// only an authentication scheme, else the prefix masked), never as a value: nothing is resolved.
impl serde::Serialize for SecretRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        if let Some(var) = &self.env {
            m.serialize_entry("env", var)?;
        }
        if let Some(f) = &self.file {
            m.serialize_entry("file", &f.to_string_lossy())?;
        }
        if !self.prefix.is_empty() {
            let shown = if super::mask::scheme_only(&self.prefix) { self.prefix.as_str() } else { super::mask::MASK };
            m.serialize_entry("prefix", shown)?;
        }
        m.end()
    }
}
