//! `Mcp-Param-*` headers of MCP 2026-07-28 (SEP-2243): a tool's `inputSchema` may mark
//! properties with `x-mcp-header`, and an HTTP client then mirrors their argument values into
//! `Mcp-Param-{name}` headers, which a server compares with the body.
//!
//! Here: reading the annotations off a schema, with every constraint the revision sets (a tool
//! that breaks one is invalid and must not be listed), and the header value of an argument.
//! Defends against: header names that would split or smuggle headers (only RFC 9110 tokens),
//! two annotations that name one header, annotations behind `items`, `$ref`, composition or
//! conditional keywords (the value's place would be ambiguous), and values that are not
//! primitives or not safe integers.

use serde_json::Value;

/// One annotated property: its header name (`Mcp-Param-` + `name`) and the chain of
/// `properties` keys that leads to it from the schema root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderParam {
    pub name: String,
    pub path: Vec<String>,
}

impl HeaderParam {
    pub fn header(&self) -> String {
        format!("mcp-param-{}", self.name.to_ascii_lowercase())
    }
}

/// Most annotations one tool may carry.
pub const MAX_PARAMS: usize = 32;
/// Deepest property chain walked.
const MAX_DEPTH: usize = 16;

const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The `x-mcp-header` annotations of `schema`, or why the tool is invalid.
pub fn header_params(schema: &Value) -> Result<Vec<HeaderParam>, String> {
    let mut out = Vec::new();
    reachable(schema, &mut Vec::new(), &mut out, 0)?;
    // Anywhere else (under `items`, `$ref` targets, `anyOf`, …) the annotation is invalid.
    let total = count_annotations(schema, 0);
    if total != out.len() {
        return Err("x-mcp-header on a property not reachable through `properties` alone".into());
    }
    let mut seen = std::collections::HashSet::new();
    for p in &out {
        if !seen.insert(p.name.to_ascii_lowercase()) {
            return Err(format!("x-mcp-header {:?} is used twice", p.name));
        }
    }
    Ok(out)
}

fn reachable(schema: &Value, path: &mut Vec<String>, out: &mut Vec<HeaderParam>, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("properties nested too deep".into());
    }
    let Some(props) = schema.get("properties").and_then(Value::as_object) else { return Ok(()) };
    for (key, prop) in props {
        path.push(key.clone());
        if let Some(h) = prop.get("x-mcp-header") {
            let name = h
                .as_str()
                .filter(|n| !n.is_empty() && n.bytes().all(is_tchar))
                .ok_or_else(|| format!("x-mcp-header of {key:?} is not a header name token"))?;
            match prop.get("type").and_then(Value::as_str) {
                Some("string" | "integer" | "boolean") => {}
                other => return Err(format!("x-mcp-header {name:?} on a property of type {other:?}")),
            }
            if out.len() >= MAX_PARAMS {
                return Err(format!("more than {MAX_PARAMS} x-mcp-header annotations"));
            }
            out.push(HeaderParam { name: name.to_string(), path: path.clone() });
        }
        reachable(prop, path, out, depth + 1)?;
        path.pop();
    }
    Ok(())
}

/// The `x-mcp-header` annotations anywhere in a schema, read as a schema: property names are
/// not keywords, and values (`default`, `const`, `enum`, `examples`) are data, not schemas.
fn count_annotations(v: &Value, depth: usize) -> usize {
    if depth > 64 {
        return usize::MAX / 2; // unreachable by any real schema: counts as invalid
    }
    let Value::Object(m) = v else {
        return match v {
            Value::Array(a) => a.iter().map(|x| count_annotations(x, depth + 1)).fold(0usize, usize::saturating_add),
            _ => 0,
        };
    };
    let mut n = m.contains_key("x-mcp-header") as usize;
    for (k, child) in m {
        let sub = match k.as_str() {
            "default" | "const" | "enum" | "examples" | "x-mcp-header" => 0,
            // Maps of name → schema: the names are not keywords.
            "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas" => match child {
                Value::Object(props) => {
                    props.values().map(|x| count_annotations(x, depth + 1)).fold(0usize, usize::saturating_add)
                }
                _ => 0,
            },
            _ => count_annotations(child, depth + 1),
        };
        n = n.saturating_add(sub);
    }
    n
}

/// An argument as its header carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamValue {
    pub text: String,
    /// An integer (a header compares with it numerically).
    pub integer: bool,
}

impl ParamValue {
    /// Does a decoded header value say the same as this argument?
    pub fn matches(&self, header: &str) -> bool {
        header == self.text
            || (self.integer && matches!((header.parse::<i64>(), self.text.parse::<i64>()), (Ok(a), Ok(b)) if a == b))
    }
}

/// What the header carries for the argument at `path`: `Ok(None)` when there is no value
/// (absent or null: no header), `Err` when the value is of a type no header can carry.
pub fn param_value(arguments: Option<&Value>, path: &[String]) -> Result<Option<ParamValue>, String> {
    let mut v = match arguments {
        Some(a) => a,
        None => return Ok(None),
    };
    for key in path {
        match v.get(key) {
            Some(x) => v = x,
            None => return Ok(None),
        }
    }
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(ParamValue { text: s.clone(), integer: false })),
        Value::Bool(b) => Ok(Some(ParamValue { text: b.to_string(), integer: false })),
        Value::Number(n) => match n.as_i64() {
            Some(i) if i.abs() <= MAX_SAFE_INTEGER => Ok(Some(ParamValue { text: i.to_string(), integer: true })),
            _ => Err(format!("{} is not a safe integer", path.join("."))),
        },
        _ => Err(format!("{} is not a primitive value", path.join("."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn annotations_are_read_with_their_paths() {
        let s = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "opts": {"type": "object", "properties": {"dry": {"type": "boolean", "x-mcp-header": "Dry-Run"}}},
            "query": {"type": "string"}}});
        let p = header_params(&s).unwrap();
        assert_eq!(p.len(), 2);
        assert!(p.contains(&HeaderParam { name: "Region".into(), path: vec!["region".into()] }));
        assert!(p.contains(&HeaderParam { name: "Dry-Run".into(), path: vec!["opts".into(), "dry".into()] }));
        assert_eq!(p[0].header(), "mcp-param-dry-run");
        assert_eq!(header_params(&json!({"type": "object"})).unwrap(), vec![]);
    }

    #[test]
    fn invalid_annotations_make_the_tool_invalid() {
        let prop = |p: Value| json!({"type": "object", "properties": {"a": p}});
        for bad in [
            prop(json!({"type": "string", "x-mcp-header": ""})),
            prop(json!({"type": "string", "x-mcp-header": "Bad Name"})),
            prop(json!({"type": "string", "x-mcp-header": "X\r\nInjected: 1"})),
            prop(json!({"type": "number", "x-mcp-header": "N"})),
            prop(json!({"type": "object", "x-mcp-header": "O"})),
            prop(json!({"type": "array", "items": {"type": "string", "x-mcp-header": "I"}})),
            json!({"type": "object", "properties": {"a": {"type": "string", "x-mcp-header": "Same"},
                                                    "b": {"type": "string", "x-mcp-header": "same"}}}),
            json!({"type": "object", "anyOf": [{"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}]}),
            json!({"type": "object", "$defs": {"d": {"type": "string", "x-mcp-header": "D"}}}),
        ] {
            assert!(header_params(&bad).is_err(), "{bad}");
        }
        // A property named like the keyword, or the keyword inside data, is no annotation.
        let fine = json!({"type": "object", "properties": {
            "x-mcp-header": {"type": "string"},
            "cfg": {"type": "object", "default": {"x-mcp-header": "X"}, "examples": [{"x-mcp-header": "Y"}]}}});
        assert_eq!(header_params(&fine).unwrap(), vec![]);
    }

    #[test]
    fn values_become_header_text() {
        let args =
            json!({"s": "us-west1", "i": -7, "b": true, "n": null, "f": 1.5, "big": 9007199254740993i64, "o": {}});
        let v = |k: &str| param_value(Some(&args), &[k.to_string()]);
        let text = |k: &str| v(k).unwrap().map(|p| p.text);
        assert_eq!(text("s").as_deref(), Some("us-west1"));
        assert_eq!(text("i").as_deref(), Some("-7"));
        assert_eq!(text("b").as_deref(), Some("true"));
        assert_eq!(v("n").unwrap(), None);
        assert_eq!(v("missing").unwrap(), None);
        assert!(v("f").is_err() && v("big").is_err() && v("o").is_err());
        assert!(v("i").unwrap().unwrap().matches("-07"), "integers compare as numbers");
        let s = ParamValue { text: "042".into(), integer: false };
        assert!(!s.matches("42") && s.matches("042"), "strings compare as text");
    }
}
