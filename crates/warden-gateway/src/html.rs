//! Text made safe inside HTML (element content and quoted attribute values).

/// `s` with `& < > " '` escaped.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}
