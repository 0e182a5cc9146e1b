//! Daytona's schemas as JSON Schema: OpenAPI 3.0 / Swagger 2 to draft 2020-12, Daytona's
//! error body, and query parameters' text as JSON values.

use serde_json::{json, Map, Value};

/// Fields newer than the vendored spec that the client may send or the fake may answer,
/// as (schema, field): Daytona adds fields between releases; each entry says which release
/// and why. None so far.
pub(super) const NEWER_FIELDS: &[(&str, &str)] = &[];

/// The answer Daytona's API gives for any error (its NestJS exception filter, `apps/api/src/
/// filters/all-exceptions.filter.ts`): not in its OpenAPI description, which documents few
/// error statuses and no error body.
pub fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["statusCode", "message"],
        "properties": {
            "path": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
            "statusCode": {"type": "integer", "minimum": 400, "maximum": 599},
            "error": {"type": "string"},
            // NestJS's validation errors carry a list of messages.
            "message": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        },
        "additionalProperties": false,
    })
}

/// `schema` (OpenAPI 3.0 / Swagger 2) as JSON Schema 2020-12 whose `$ref`s starting with
/// `prefix` point into `#/$defs/`.
pub(super) fn convert(schema: &Value, prefix: &str, owner: &str) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "$ref" => {
                let target = value.as_str().unwrap_or_default();
                let name = target.strip_prefix(prefix).unwrap_or(target);
                out.insert(key.clone(), json!(format!("#/$defs/{name}")));
            }
            "properties" => {
                let props = value.as_object().map(|props| {
                    props
                        .iter()
                        .map(|(name, s)| (name.clone(), convert(s, prefix, owner)))
                        .collect::<Map<_, _>>()
                });
                out.insert(key.clone(), Value::Object(props.unwrap_or_default()));
            }
            "items" | "not" => {
                out.insert(key.clone(), convert(value, prefix, owner));
            }
            "additionalProperties" if value.is_object() => {
                out.insert(key.clone(), convert(value, prefix, owner));
            }
            "allOf" | "anyOf" | "oneOf" => {
                let parts = value.as_array().map(|parts| {
                    parts
                        .iter()
                        .map(|s| convert(s, prefix, owner))
                        .collect::<Vec<_>>()
                });
                out.insert(key.clone(), Value::Array(parts.unwrap_or_default()));
            }
            // Swagger 2's `type: file` is any body; `nullable` is handled below; the rest
            // are annotations JSON Schema does not know.
            "type" if value == "file" => {}
            "nullable" | "example" | "discriminator" | "xml" | "externalDocs" => {}
            k if k.starts_with("x-") => {}
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if out.contains_key("properties") && !out.contains_key("additionalProperties") {
        let newer: Vec<&str> = NEWER_FIELDS
            .iter()
            .filter(|(schema, _)| *schema == owner)
            .map(|(_, field)| *field)
            .collect();
        if newer.is_empty() {
            out.insert("additionalProperties".into(), json!(false));
        } else if let Some(Value::Object(props)) = out.get_mut("properties") {
            for field in newer {
                props.entry(field).or_insert(json!({}));
            }
            out.insert("additionalProperties".into(), json!(false));
        }
    }
    let converted = Value::Object(out);
    if map.get("nullable") == Some(&json!(true)) {
        json!({"anyOf": [converted, {"type": "null"}]})
    } else {
        converted
    }
}

/// A query parameter's text as the JSON value its schema describes (`type` number, integer,
/// boolean; strings and enums of strings stay text).
pub(super) fn coerce(text: &str, schema: &Value, defs: &Value) -> Value {
    let resolved = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
        .and_then(|name| defs.get(name))
        .unwrap_or(schema);
    match resolved["type"].as_str() {
        Some("number" | "integer") => text
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| text.parse::<f64>().map(Value::from))
            .unwrap_or_else(|_| json!(text)),
        Some("boolean") => match text {
            "true" => json!(true),
            "false" => json!(false),
            _ => json!(text),
        },
        _ => json!(text),
    }
}

/// Splits `a=1&b=2` into decoded pairs.
pub(super) fn query_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| -> String {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'%', Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}
