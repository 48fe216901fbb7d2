//! The pin file: what an operator (or trust on first use) accepted of each upstream's tools,
//! prompts, resources, resource templates and server instructions, each by the SHA-256 of its
//! canonical JSON, `_meta` included; and its writer.

use crate::auth::builtin::write_private;
use crate::signing;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden_policy::scan;

/// What a pin is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinKind {
    Tool,
    Prompt,
    Resource,
    ResourceTemplate,
    /// A server's `instructions` (in `initialize`), under the name `instructions`.
    Instructions,
}

impl PinKind {
    pub const ALL: [PinKind; 5] =
        [PinKind::Tool, PinKind::Prompt, PinKind::Resource, PinKind::ResourceTemplate, PinKind::Instructions];

    pub fn as_str(self) -> &'static str {
        match self {
            PinKind::Tool => "tool",
            PinKind::Prompt => "prompt",
            PinKind::Resource => "resource",
            PinKind::ResourceTemplate => "resource_template",
            PinKind::Instructions => "instructions",
        }
    }

    pub fn parse(s: &str) -> Option<PinKind> {
        PinKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The member that names an item of this kind in its listing.
    pub fn key(self) -> &'static str {
        match self {
            PinKind::Resource => "uri",
            PinKind::ResourceTemplate => "uriTemplate",
            _ => "name",
        }
    }
}

/// The pin of a definition of `kind`: SHA-256 (hex) of its canonical JSON, `_meta` included
/// (issue 20 finding 10: `_meta.ui.resourceUri` or `openai/outputTemplate` changed unnoticed
/// otherwise). A resource's `size` is left out: it changes with the content, not the definition.
pub fn pin_digest(kind: PinKind, item: &Value) -> String {
    match (kind, item) {
        (PinKind::Resource, Value::Object(m)) if m.contains_key("size") => {
            let mut m = m.clone();
            m.remove("size");
            scan::digest(&Value::Object(m))
        }
        _ => scan::digest(item),
    }
}

/// Instructions as a definition: `{"instructions": text}`.
pub fn instructions_definition(text: &str) -> Value {
    serde_json::json!({ "instructions": text })
}

/// One pinned definition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pin {
    pub digest: String,
    /// The definition itself, so `warden pin diff` can show what changed.
    pub definition: Value,
}

/// Pins of one kind: upstream → name → pin.
pub type PinTable = BTreeMap<String, BTreeMap<String, Pin>>;

/// The pin file. `servers` holds the tools (its name from before other kinds were pinned);
/// the other kinds are absent when empty, so older files read as they are.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct PinFile {
    pub version: u32,
    pub servers: PinTable,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prompts: PinTable,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: PinTable,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resource_templates: PinTable,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub instructions: PinTable,
}

impl PinFile {
    /// Read a pin file; with `public_key`, only if `<path>.sig` is its valid signature.
    pub fn load(path: &Path, public_key: Option<&str>) -> Result<PinFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(key) = public_key {
            let sp = signing::signature_path(path);
            let sig = std::fs::read_to_string(&sp)
                .map_err(|e| format!("{}: {e} (the pin file must be signed: `warden pin --sign-key`)", sp.display()))?;
            signing::verify(key, text.as_bytes(), &sig)
                .map_err(|e| format!("{}: {e}; refusing the pin file", sp.display()))?;
        }
        let mut f: PinFile = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if f.version != 1 {
            return Err(format!("{}: unsupported pin file version {}", path.display(), f.version));
        }
        // Digests are derived from the (trusted, signed when signed) definitions they pin: a
        // file written when `_meta` was left out of the digest reads the same after the change.
        for kind in PinKind::ALL {
            for pins in f.table_mut(kind).values_mut() {
                for p in pins.values_mut() {
                    p.digest = pin_digest(kind, &p.definition);
                }
            }
        }
        Ok(f)
    }

    pub fn table(&self, kind: PinKind) -> &PinTable {
        match kind {
            PinKind::Tool => &self.servers,
            PinKind::Prompt => &self.prompts,
            PinKind::Resource => &self.resources,
            PinKind::ResourceTemplate => &self.resource_templates,
            PinKind::Instructions => &self.instructions,
        }
    }

    pub fn table_mut(&mut self, kind: PinKind) -> &mut PinTable {
        match kind {
            PinKind::Tool => &mut self.servers,
            PinKind::Prompt => &mut self.prompts,
            PinKind::Resource => &mut self.resources,
            PinKind::ResourceTemplate => &mut self.resource_templates,
            PinKind::Instructions => &mut self.instructions,
        }
    }

    /// The pin of `server`'s `name` of `kind`.
    pub fn get(&self, kind: PinKind, server: &str, name: &str) -> Option<&Pin> {
        self.table(kind).get(server).and_then(|t| t.get(name))
    }

    /// Write atomically, owner-readable only; with `key`, its detached signature too.
    pub fn save(&self, path: &Path, key: Option<&signing::SigningKey>) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())? + "\n";
        if let Some(k) = key {
            write_private(&signing::signature_path(path), (k.sign(text.as_bytes()) + "\n").as_bytes())?;
        }
        write_private(path, text.as_bytes())
    }

    /// Pin every tool of `server` (replacing what was pinned for it).
    pub fn pin_server(&mut self, server: &str, tools: &[Value]) {
        self.pin_all(PinKind::Tool, server, tools);
    }

    /// Pin every definition of `kind` of `server` (replacing what was pinned of it).
    pub fn pin_all(&mut self, kind: PinKind, server: &str, items: &[Value]) {
        let pins = self.table_mut(kind).entry(server.to_string()).or_default();
        pins.clear();
        for t in items {
            if let Some(name) = t.get(kind.key()).and_then(Value::as_str) {
                pins.insert(name.to_string(), Pin { digest: pin_digest(kind, t), definition: t.clone() });
            }
        }
    }

    /// Pin `server`'s instructions (none: unpin them).
    pub fn pin_instructions(&mut self, server: &str, text: Option<&str>) {
        let items: Vec<Value> = text.map(instructions_definition).into_iter().collect();
        let pins = self.table_mut(PinKind::Instructions).entry(server.to_string()).or_default();
        pins.clear();
        for d in items {
            pins.insert("instructions".into(), Pin { digest: pin_digest(PinKind::Instructions, &d), definition: d });
        }
    }
}

/// What differs between two definitions, one line per changed leaf (`description: "a" → "b"`),
/// for `warden pin diff` and the admin API.
pub fn diff_definitions(old: &Value, new: &Value) -> Vec<String> {
    fn walk(a: Option<&Value>, b: Option<&Value>, path: &str, out: &mut Vec<String>) {
        match (a, b) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    walk(x.get(k), y.get(k), &p, out);
                }
            }
            (Some(Value::Array(x)), Some(Value::Array(y))) => {
                for i in 0..x.len().max(y.len()) {
                    walk(x.get(i), y.get(i), &format!("{path}[{i}]"), out);
                }
            }
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) => out.push(format!("{path}: {x} → {y}")),
            (Some(x), None) => out.push(format!("{path}: removed (was {x})")),
            (None, Some(y)) => out.push(format!("{path}: added {y}")),
            (None, None) => {}
        }
    }
    let mut out = Vec::new();
    walk(Some(old), Some(new), "", &mut out);
    out
}

/// Writes the pin file off the async workers and outside the pins lock: the latest snapshot
/// wins, one write at a time (a listing storm costs one write per listing at most, and no
/// listing waits for a write).
pub struct PinWriter {
    path: PathBuf,
    next: Mutex<Option<PinFile>>,
    busy: std::sync::atomic::AtomicBool,
}

impl PinWriter {
    pub fn new(path: PathBuf) -> Arc<PinWriter> {
        Arc::new(PinWriter { path, next: Mutex::new(None), busy: false.into() })
    }

    pub fn submit(self: &Arc<Self>, snapshot: PinFile) {
        use std::sync::atomic::Ordering::AcqRel;
        *self.next.lock() = Some(snapshot);
        if self.busy.swap(true, AcqRel) {
            return;
        }
        let me = self.clone();
        let run = move || loop {
            let next = me.next.lock().take();
            match next {
                Some(f) => {
                    if let Err(e) = f.save(&me.path, None) {
                        tracing::warn!(error = %e, "could not write the pin file");
                    }
                }
                None => {
                    me.busy.store(false, std::sync::atomic::Ordering::Release);
                    // A snapshot submitted after the take but before the store found us busy:
                    // write it unless its submitter has started a writer of its own since.
                    if me.next.lock().is_none() || me.busy.swap(true, AcqRel) {
                        return;
                    }
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(run)),
            Err(_) => run(),
        }
    }
}
