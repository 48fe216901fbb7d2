//! `[content]`, `[[content.tool]]`, `[[content.argument]]` and `[[guard]]`: the checks on arguments, definitions and outputs.

use super::*;

impl ContentConfig {
    /// The largest message Warden reads from an upstream: twice the largest result any tool may
    /// return (JSON escaping can double text), plus 64 KiB of envelope.
    pub fn max_message_bytes(&self) -> usize {
        let largest = self.tools.iter().filter_map(|t| t.max_result_bytes).fold(self.max_result_bytes, usize::max);
        largest.saturating_mul(2).saturating_add(64 << 10)
    }
}

/// `[content]`: what Warden checks in arguments, tool definitions and outputs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContentConfig {
    /// Validate every `tools/call` against the tool's `inputSchema` (as pinned). Default true.
    #[serde(default = "yes")]
    pub validate_arguments: bool,
    /// Strict schemas: objects that do not say otherwise get `additionalProperties: false`, so
    /// undeclared arguments are refused. Default true.
    #[serde(default = "yes")]
    pub strict_schemas: bool,
    /// `maxLength` for string arguments whose schema sets none. Default 65536.
    #[serde(default = "default_max_string")]
    pub max_string_length: u64,
    /// `maxItems` for array arguments whose schema sets none. Default 1000.
    #[serde(default = "default_max_items")]
    pub max_array_items: u64,
    /// Tool-definition poisoning scan at listing time: `"block"` (default: a suspect tool is
    /// withheld and uncallable), `"warn"` (logged, still listed) or `"off"`.
    #[serde(default)]
    pub scan: ScanAction,
    /// Pinning of tool definitions: `"tofu"` (default: trust the first definition seen, then
    /// block a changed one until an operator approves it), `"file"` (only definitions in
    /// `pin_file` are trusted) or `"off"`.
    #[serde(default)]
    pub pinning: PinMode,
    /// The pin file `warden pin` writes. With `"tofu"` it also keeps first-seen pins across
    /// restarts.
    pub pin_file: Option<PathBuf>,
    /// Ed25519 public key (base64, printed by `warden pin keygen`) that must have signed the pin
    /// file (`<pin_file>.sig`, written by `warden pin --sign-key`). Warden refuses to start with
    /// a pin file whose signature does not verify. Requires `pinning = "file"`; approvals of
    /// changed definitions then last until restart (re-sign with `warden pin`).
    pub pin_public_key: Option<String>,
    /// Largest result (serialized bytes) returned to a client; the rest is cut with a visible
    /// marker. Default 1048576.
    #[serde(default = "default_max_result")]
    pub max_result_bytes: usize,
    /// Pin concrete resources too (their name, description, MIME type, annotations and `_meta`;
    /// not `size`), like tools, prompts, resource templates and server instructions. Turn it off
    /// for a server whose resource list follows its content (a file tree): new entries are
    /// pinned on first use and the pins kept per upstream are bounded. Default true.
    #[serde(default = "yes")]
    pub pin_resources: bool,
    /// Most tools, prompts, resources or resource templates read from one upstream's listing
    /// (each kind apart). Beyond it the rest are withheld and no further page is read, with an
    /// error in the log (once a minute per upstream and kind), an audit record (kind
    /// `definitions`) and `warden_definitions_refused_total`. It also bounds the pins kept per
    /// upstream (twice it). Default 1000.
    #[serde(default = "default_max_definitions")]
    pub max_definitions: usize,
    /// Largest single content item (text, image, audio, embedded resource). Default 262144.
    #[serde(default = "default_max_item")]
    pub max_item_bytes: usize,
    /// Strip hidden content (HTML comments, zero-width/bidi/tag characters, ANSI escapes,
    /// chat-template tokens) from outputs. Default true.
    #[serde(default = "yes")]
    pub sanitize: bool,
    /// What to do with output that reads as a prompt injection: `"wrap"` (default: enclose it
    /// in an untrusted-data boundary with a random delimiter and a one-line notice), `"flag"`
    /// (log only), `"block"` (withhold it) or `"off"`.
    #[serde(default)]
    pub injection: InjectionAction,
    /// Score (0–1) at which output counts as an injection. Default 0.5.
    #[serde(default = "default_threshold")]
    pub injection_threshold: f32,
    /// Score (0–1) at which an output taints the session that read it (a suspicion, lower than
    /// `injection_threshold`): its later calls to sinks are held (`[[rule]] when_tainted`).
    /// Default 0.25.
    #[serde(default = "default_suspicion")]
    pub suspicion_threshold: f32,
    /// What is redacted from outputs and error messages: `"secrets"`, `"pii"`, or single
    /// classes (`"email"`, `"card"`, `"jwt"`, …). Default `["secrets", "pii"]`.
    #[serde(default = "default_redact")]
    pub redact: Vec<String>,
    /// Scrub upstream error messages of file paths, stack traces and internal addresses.
    /// Default true.
    #[serde(default = "yes")]
    pub scrub_errors: bool,
    /// Overrides for some tools.
    #[serde(default, rename = "tool")]
    pub tools: Vec<ContentOverride>,
    /// Schema overlays for one argument of some tools.
    #[serde(default, rename = "argument")]
    pub arguments: Vec<ArgumentOverlay>,
    /// The semantic injection classifier (off unless configured).
    pub classifier: Option<ClassifierConfig>,
}

/// `[content.classifier]`: a small sentence encoder (all-MiniLM-L6-v2) and a trained head, run in
/// process on the CPU, off the async workers. Its score joins the patterns' in the injection
/// verdict of tool results, resource contents and prompt messages (finding
/// `classifier.semantic`). What it cannot classify in time or size is left to the patterns and
/// counted (`warden_guard_findings_total{guard="classifier.limit"}`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// The encoder's directory (`config.json`, `tokenizer.json`, `model.safetensors`), checked
    /// against pinned digests at load; `scripts/setup.sh` installs it in `.models/all-minilm-l6-v2`.
    /// Relative to the config file.
    pub model: PathBuf,
    /// A head from `warden classifier train` (default: the head shipped with Warden).
    pub head: Option<PathBuf>,
    /// Bytes of one answer classified (at most 256 KiB); the rest is left to the patterns. Default
    /// 16384.
    #[serde(default = "default_classify_bytes")]
    pub max_classify_bytes: usize,
    /// Time for one answer, in milliseconds (at most 10000); windows not scored by then are left
    /// to the patterns. Default 300.
    #[serde(default = "default_classify_ms")]
    pub budget_ms: u64,
    /// Answers classified at once (each holds a blocking thread); an answer beyond it is left to
    /// the patterns. Default 2.
    #[serde(default = "default_classify_concurrency")]
    pub max_concurrent: usize,
}

fn default_classify_bytes() -> usize {
    16384
}
fn default_classify_ms() -> u64 {
    300
}
fn default_classify_concurrency() -> usize {
    2
}

impl Default for ContentConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

/// `[[content.tool]]`: output handling for some tools.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContentOverride {
    /// Upstream name (glob). Default any.
    #[serde(default = "any")]
    pub server: String,
    /// The upstream's own tool names (globs).
    pub tools: Vec<String>,
    /// Injection action for these tools.
    pub injection: Option<InjectionAction>,
    /// Redaction classes for these tools (replaces the default list).
    pub redact: Option<Vec<String>>,
    /// Result cap for these tools.
    pub max_result_bytes: Option<usize>,
    /// A JSON Schema (as a TOML table) the result's `structuredContent` must match, for tools
    /// that declare no `outputSchema` (or to hold them to a stricter one). A result that does not
    /// match, or has none, is withheld.
    pub output_schema: Option<toml::Table>,
    /// Most bytes of text a result's content items may carry (e.g. 0 for a tool that should
    /// answer rows only); more is withheld.
    pub max_text_bytes: Option<usize>,
}

/// `[[content.argument]]`: JSON Schema keywords laid over one argument's declared schema.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArgumentOverlay {
    /// Upstream name (glob). Default any.
    #[serde(default = "any")]
    pub server: String,
    /// The upstream's own tool names (globs).
    pub tools: Vec<String>,
    /// The top-level argument.
    pub argument: String,
    /// Keywords, e.g. `{ maxLength = 200, pattern = "^[a-z]+$" }` or `{ enum = ["a", "b"] }`.
    pub schema: toml::Table,
}

/// `[[guard]]`: one check on one argument.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// Upstream name (glob). Default any.
    #[serde(default = "any")]
    pub server: String,
    /// The upstream's own tool names (globs).
    pub tools: Vec<String>,
    /// The argument: a top-level name, or a JSON pointer (`/options/path`). Arrays of strings
    /// are checked element by element.
    pub argument: String,
    /// `"path"`, `"sql"`, `"argv"`, `"url"`, `"segment"` (one URL path segment or file name:
    /// no `/`, `\\`, dot segments, percent escapes, `?`, `#`, `;`, `:`, look-alikes of dots and
    /// slashes, whitespace) or `"text"`.
    pub kind: GuardKind,
    /// path: the allowed roots (absolute).
    #[serde(default)]
    pub roots: Vec<PathBuf>,
    /// path: resolve symbolic links (Warden shares the upstream's filesystem). Default true.
    #[serde(default = "yes")]
    pub resolve_symlinks: bool,
    /// path: accept a relative path, taken from the first root; the upstream then gets the
    /// absolute path instead (it could read a relative one from another directory). Default
    /// false: a relative path is refused.
    #[serde(default)]
    pub allow_relative: bool,
    /// sql: `"generic"` (default), `"sqlite"`, `"postgres"` or `"mysql"`.
    #[serde(default)]
    pub dialect: String,
    /// sql: tables a query may read (empty: any).
    #[serde(default)]
    pub tables: Vec<String>,
    /// sql: columns a query may name (empty: any).
    #[serde(default)]
    pub columns: Vec<String>,
    /// sql: functions a query may call besides the dialect's allow-list of pure functions
    /// (aggregates, windows, strings, numbers, dates). Anything else is refused, and so is any
    /// function in `FROM`.
    #[serde(default)]
    pub functions: Vec<String>,
    /// url: also allow `http`. Default false.
    #[serde(default)]
    pub allow_http: bool,
    /// url: allowed hosts (`example.com`, `*.example.com`); empty: any public host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// url: resolve the host and refuse private addresses. Default true.
    #[serde(default = "yes")]
    pub resolve: bool,
    /// An argument that is missing is fine (the schema decides whether it is required); set
    /// true to refuse calls without it.
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GuardKind {
    Path,
    Sql,
    Argv,
    Url,
    Segment,
    Text,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScanAction {
    #[default]
    Block,
    Warn,
    Off,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum PinMode {
    #[default]
    Tofu,
    File,
    Off,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum InjectionAction {
    Flag,
    #[default]
    Wrap,
    Block,
    Off,
}
