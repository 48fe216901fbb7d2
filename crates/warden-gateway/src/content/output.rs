//! Output validation: a tool's result must have the shape the tool declared (`outputSchema`) or
//! the operator set (`[[content.tool]] output_schema`, `max_text_bytes`), or it is withheld.
//!
//! Defends against a compromised or confused tool smuggling what its callers do not expect: a
//! `query_database` that should return rows returning instructions in free text, structured
//! content with fields the schema never declared. Declared schemas are compiled offline: a
//! `$ref` to a URL or a file is an error (the tool's results are then withheld), never fetched.
//! Does not defend against: hostile values that fit the schema (the output stages still scan
//! them), tools without a declared or configured shape (nothing to check against).

use super::{applies, Content};
use serde_json::Value;
use warden_policy::schema::{ArgSchema, SchemaError};

impl Content {
    /// Check a tool result against its declared output schema and the operator's settings.
    /// `Err` says why it does not fit, safe to show (it never repeats values).
    pub fn check_output(
        &self,
        server: &str,
        tool: &str,
        declared: Option<&Result<ArgSchema, SchemaError>>,
        result: &Value,
    ) -> Result<(), String> {
        let mut schema: Option<&ArgSchema> = None;
        let mut max_text = None;
        for o in self.outputs.iter().filter(|o| applies(&o.server, &o.tools, server, tool)) {
            schema = o.output_schema.as_ref().or(schema);
            max_text = o.max_text_bytes.or(max_text);
        }
        // The text cap holds for error results too (a model reads those as well), and counts
        // every string of the content items, wherever it sits.
        if let Some(max) = max_text {
            let text = result.get("content").map_or(0, strings_len);
            if text > max {
                return Err(format!("{text} bytes of text, over the {max} this tool may return"));
            }
        }
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            return Ok(()); // an error result is not the tool's output: no structure to check
        }
        let schema = match (schema, declared) {
            (Some(s), _) => Some(s),
            (None, Some(Ok(s))) => Some(s),
            (None, Some(Err(_))) => return Err("the tool's output schema is unusable".into()),
            (None, None) => None,
        };
        if let Some(s) = schema {
            let sc = result
                .get("structuredContent")
                .ok_or("the tool declares an output schema but sent no structured content")?;
            s.validate_as(sc, "structuredContent")
                .map_err(|e| format!("it does not match the output schema: {}", e.join("; ")))?;
        }
        Ok(())
    }
}

/// Bytes of every string under `v` except binary data and content types.
fn strings_len(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(strings_len).sum(),
        Value::Object(m) => m
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "data" | "blob" | "type" | "mimeType"))
            .map(|(_, x)| strings_len(x))
            .sum(),
        _ => 0,
    }
}
