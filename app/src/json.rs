//! Machine-readable output. Every `--json` goes through serde, and every
//! document names its schema (`iolab.NAME.vN`): a change that would break
//! a reader gets a new version, additions do not.

use serde::Serialize;

/// A document: its schema name beside the body's own fields.
#[derive(Serialize)]
struct Doc<'a, T: Serialize> {
    schema: &'a str,
    #[serde(flatten)]
    body: &'a T,
}

/// `body` as one line of JSON with `"schema": schema` among its fields
/// (`body` must serialize as an object).
pub fn line<T: Serialize>(schema: &str, body: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&Doc { schema, body })?)
}

/// The same, indented, for listings meant to be read as well.
pub fn pretty<T: Serialize>(schema: &str, body: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(&Doc { schema, body })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_sits_beside_the_fields() {
        #[derive(Serialize)]
        struct B {
            items: Vec<u32>,
        }
        let s = line("iolab.test.v1", &B { items: vec![1, 2] }).unwrap();
        assert_eq!(s, r#"{"schema":"iolab.test.v1","items":[1,2]}"#);
        let v: serde_json::Value =
            serde_json::from_str(&pretty("x.v2", &B { items: vec![] }).unwrap()).unwrap();
        assert_eq!(v["schema"], "x.v2");
        // Not an object: refused rather than written wrong.
        assert!(line("x.v1", &vec![1]).is_err());
    }
}
