//! Canonical JSON: one byte string per JSON value, whatever order its object keys arrived in or
//! how it was spaced. Keys are sorted by their UTF-8 bytes at every depth; numbers and strings
//! are written as `serde_json` writes them. Used wherever a value is bound by a digest (approvals
//! now; tool pinning later), so that `{"a":1,"b":2}` and `{ "b": 2, "a": 1 }` are one call.

use serde_json::Value;

/// Append the canonical form of `v` to `out`.
pub fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The canonical form of `v`.
pub fn to_string(v: &Value) -> String {
    let mut s = String::new();
    write(v, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_spacing_do_not_matter() {
        let a: Value = serde_json::from_str(r#"{"b": [1, {"y": "é", "x": null}], "a": 1.5}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":1.5,"b":[1,{"x":null,"y":"é"}]}"#).unwrap();
        assert_eq!(to_string(&a), to_string(&b));
        assert_eq!(to_string(&a), r#"{"a":1.5,"b":[1,{"x":null,"y":"é"}]}"#);
        assert_ne!(to_string(&json!({"a": "1"})), to_string(&json!({"a": 1})));
        assert_eq!(to_string(&json!({"k\"": "\n"})), r#"{"k\"":"\n"}"#);
    }
}
