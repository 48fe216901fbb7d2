//! The output stages over one JSON answer, in place: size caps → sanitize → injection detection
//! → redaction on every string that is text.
//!
//! What is text follows the MCP shapes, not key names found anywhere: only inside a real content
//! item (an entry of `content` or `contents`, a prompt message's `content`, an embedded
//! `resource`) do `type`, `mimeType` and `uri` stay as they are and `data`/`blob` count as binary
//! (size-capped only). Everything else — all of `structuredContent`, `_meta`, `annotations`, a
//! log entry's `data`, and the keys of free-form objects — is text, so a SQL row's `data` column
//! or a secret used as a key is redacted like any other string.
//!
//! Does not defend against: a content item's `uri` carrying a secret (it must stay usable),
//! binary content (only size-capped).

use super::{wrap, OutputReport};
use crate::config::{ContentConfig, InjectionAction};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashSet;
use warden_policy::inject;
use warden_policy::redact::{self, Redactor};
use warden_policy::sanitize::sanitize;

/// Deeper than this, a value is cut (parsed messages are at most 64 deep; this is a backstop).
const MAX_WALK_DEPTH: usize = 64;

pub(super) struct Walker<'a> {
    cfg: &'a ContentConfig,
    action: InjectionAction,
    red: &'a Redactor,
    /// Bytes of text still allowed in this answer.
    budget: usize,
    report: &'a mut OutputReport,
    /// Scrub error text (paths, addresses, stack frames) too.
    scrub: bool,
    /// Object keys already found unchanged (rows repeat their column names), at most 256.
    clean_keys: HashSet<String>,
    /// The semantic classifier, for this answer (within its budget).
    pub judge: Option<super::semantic::Judge<'a>>,
    /// The text is written for the model (a server's `instructions`): addressing it is no
    /// finding ([`inject::Verdict::for_the_model`]).
    pub for_the_model: bool,
}

impl<'a> Walker<'a> {
    pub fn new(
        cfg: &'a ContentConfig,
        action: InjectionAction,
        red: &'a Redactor,
        budget: usize,
        report: &'a mut OutputReport,
        scrub: bool,
    ) -> Walker<'a> {
        Walker {
            cfg,
            action,
            red,
            budget,
            report,
            scrub,
            clean_keys: HashSet::new(),
            judge: None,
            for_the_model: false,
        }
    }

    /// A result, or a request's or notification's params: `content`, `contents` and `messages`
    /// by their MCP shapes, every other member as data. Members named in `skip` (ids and tokens
    /// that belong to the client and must come back unchanged) are left alone.
    pub fn result(&mut self, v: &mut Value, skip: &[&str]) {
        let Value::Object(m) = v else { return self.data(v, 0) };
        for (k, x) in m.iter_mut() {
            match k.as_str() {
                k if skip.contains(&k) => {}
                "content" | "contents" => self.items(x, 1),
                "messages" => self.messages(x, 1),
                _ => self.data(x, 1),
            }
        }
    }

    /// Content items: a list of them, or one (a prompt or sampling message's `content`).
    fn items(&mut self, v: &mut Value, depth: usize) {
        match v {
            Value::Array(a) => a.iter_mut().for_each(|x| self.item(x, depth + 1)),
            other => self.item(other, depth),
        }
    }

    /// Prompt or sampling messages: each one's `content` is content items, the rest data.
    fn messages(&mut self, v: &mut Value, depth: usize) {
        let Value::Array(a) = v else { return self.data(v, depth) };
        for msg in a {
            let Value::Object(m) = msg else {
                self.data(msg, depth + 1);
                continue;
            };
            for (k, x) in m.iter_mut() {
                if k == "content" {
                    self.items(x, depth + 2);
                } else {
                    self.data(x, depth + 2);
                }
            }
        }
    }

    /// One content item: text, image, audio, resource link, embedded resource, resource contents.
    fn item(&mut self, v: &mut Value, depth: usize) {
        if depth > MAX_WALK_DEPTH {
            return self.cut(v);
        }
        let Value::Object(m) = v else { return self.data(v, depth) };
        for (k, x) in m.iter_mut() {
            match (k.as_str(), &*x) {
                ("type" | "mimeType" | "uri", Value::String(_)) => {}
                ("data" | "blob", Value::String(_)) => self.binary(x),
                ("resource", Value::Object(_)) => self.item(x, depth + 1),
                _ => self.data(x, depth + 1),
            }
        }
        // An image or audio item whose data was withheld becomes a text marker.
        let emptied = matches!(m.get("type").and_then(Value::as_str), Some("image" | "audio"))
            && m.get("data").and_then(Value::as_str) == Some("");
        if emptied {
            m.clear();
            m.insert("type".into(), "text".into());
            m.insert("text".into(), "[Warden withheld binary content over the size limit]".into());
        }
    }

    /// Free-form JSON: every string is text, and so is every object key.
    pub fn data(&mut self, v: &mut Value, depth: usize) {
        if depth > MAX_WALK_DEPTH {
            return self.cut(v);
        }
        match v {
            Value::String(s) => {
                if let Some(t) = self.text(s) {
                    *s = t;
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.data(x, depth + 1)),
            Value::Object(m) => {
                self.keys(m);
                m.values_mut().for_each(|x| self.data(x, depth + 1));
            }
            _ => {}
        }
    }

    /// Object keys through the text stages; a key that changes is renamed (made unique with
    /// `#n` when two become the same, so no value is lost).
    fn keys(&mut self, m: &mut Map<String, Value>) {
        let mut renames: Vec<(String, String)> = Vec::new();
        for k in m.keys() {
            if self.clean_keys.contains(k) {
                continue;
            }
            match self.text(k) {
                Some(n) => renames.push((k.clone(), n)),
                None if self.clean_keys.len() < 256 => {
                    self.clean_keys.insert(k.clone());
                }
                None => {}
            }
        }
        // Many keys may become one text (every e-mail address a `[REDACTED:email]`): each name
        // remembers its last suffix, so making them unique stays linear.
        let mut next: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (old, new) in renames {
            let Some(v) = m.remove(&old) else { continue };
            let mut key = new.clone();
            let n = next.entry(new.clone()).or_insert(1);
            while m.contains_key(&key) {
                *n += 1;
                key = format!("{new}#{n}");
            }
            m.insert(key, v);
        }
    }

    /// Base64 content: only the size caps apply.
    fn binary(&mut self, v: &mut Value) {
        let Value::String(s) = v else { return };
        if s.len() > self.cfg.max_item_bytes || s.len() > self.budget {
            tracing::info!(bytes = s.len(), "binary content over the size cap withheld");
            s.clear();
            self.report.truncated = true;
        } else {
            self.budget -= s.len();
        }
    }

    fn cut(&mut self, v: &mut Value) {
        *v = Value::String("[Warden: nested too deeply]".into());
        self.report.truncated = true;
    }

    /// One text through the stages; `Some` when it changed.
    fn text(&mut self, s: &str) -> Option<String> {
        let cfg = self.cfg;
        let limit = cfg.max_item_bytes.min(self.budget);
        let mut out = Cow::Borrowed(s);
        if s.len() > limit {
            let mut cut = limit.saturating_sub(80);
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            out =
                Cow::Owned(format!("{}\n[… Warden cut {} bytes here: over the size limit]", &s[..cut], s.len() - cut));
            self.report.truncated = true;
        }
        self.budget = self.budget.saturating_sub(out.len());
        if self.scrub {
            let scrubbed = redact::scrub_error(&out);
            if scrubbed != out {
                out = Cow::Owned(scrubbed);
            }
        }
        let mut hidden = inject::Verdict::default();
        if cfg.sanitize {
            let (clean, removed) = sanitize(&out);
            if removed.comments > 0 && self.action != InjectionAction::Off {
                // Stripped before the model sees it, but evidence of what the upstream tried:
                // it counts for `block`, the audit record and the session's taint, while the
                // visible text left is not wrapped for it.
                self.report.injection.merge(inject::hidden_comments(&out));
            }
            if removed.any() {
                let clean = clean.into_owned();
                self.report.removed.add(removed);
                hidden = inject::removed(&removed);
                out = Cow::Owned(clean);
            }
        }
        // (a removed template token counts however short what is left: `<|im_start|>system`)
        if self.action != InjectionAction::Off && (out.len() >= 12 || !hidden.findings.is_empty()) {
            let mut v = inject::scan(&out);
            v.merge(hidden);
            if self.for_the_model {
                v = v.for_the_model();
            }
            if let Some(f) = self.judge.as_mut().and_then(|j| j.judge(&out)) {
                v.merge(inject::Verdict { score: f.weight, findings: vec![f] });
            }
            if v.is_injection(cfg.injection_threshold) && self.action == InjectionAction::Wrap {
                let rules: Vec<&str> = v.findings.iter().map(|f| f.rule).collect();
                out = Cow::Owned(wrap(&out, &rules));
            }
            self.report.injection.merge(v);
        }
        let mut found = Vec::new();
        if let Cow::Owned(r) = self.red.redact(&out, &mut found) {
            out = Cow::Owned(r);
        }
        for c in found {
            if !self.report.redacted.contains(&c) {
                self.report.redacted.push(c);
            }
        }
        match out {
            Cow::Borrowed(_) => None,
            Cow::Owned(o) => Some(o),
        }
    }
}
