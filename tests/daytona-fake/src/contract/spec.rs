//! The contract: the vendored spec's operations (method and path template, in the API or
//! the toolbox), and what a request or an answer breaks in it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Map, Value};

use super::schema::{coerce, convert, error_schema, query_pairs};

/// Daytona's API and toolbox descriptions (the vendored subset).
const SPEC: &str = include_str!("../../spec/daytona-api.json");

/// One of the two described areas.
pub(super) struct Area {
    /// `API` or `toolbox`, in violations.
    pub(super) name: &'static str,
    /// Swagger 2 (the toolbox) rather than OpenAPI 3.
    pub(super) swagger2: bool,
    /// The area's spec as vendored.
    spec: Value,
    /// Its schemas as JSON Schema, for `$defs`.
    pub(super) defs: Value,
    ops: Vec<Op>,
}

/// An operation: a method on a path template.
pub(super) struct Op {
    method: String,
    template: String,
    /// The template's segments; `None` is a `{parameter}`.
    segments: Vec<Option<String>>,
}

/// What the spec says of an answer's status.
enum Answer {
    /// The operation does not list it.
    Undocumented,
    /// Listed, with no JSON body.
    NoJson,
    /// Listed, with this JSON body.
    Json(Value),
}

/// Where a request goes.
pub(super) enum Route<'a> {
    /// Not Daytona's API: not checked.
    Exempt,
    /// A path or method Daytona does not have.
    Unknown(String),
    /// An operation of `area`, on the path relative to it.
    Found(&'a Area, &'a Op),
}

/// The contract: both areas and their compiled validators.
pub struct Contract {
    pub(super) api: Area,
    pub(super) toolbox: Area,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl Area {
    fn new(name: &'static str, spec: Value) -> Result<Self, String> {
        let swagger2 = spec.get("swagger").is_some();
        let (pointer, prefix) = if swagger2 {
            ("/definitions", "#/definitions/")
        } else {
            ("/components/schemas", "#/components/schemas/")
        };
        let schemas = spec
            .pointer(pointer)
            .and_then(Value::as_object)
            .ok_or_else(|| format!("the {name} spec has no {pointer}"))?;
        let defs: Map<String, Value> = schemas
            .iter()
            .map(|(n, s)| (n.clone(), convert(s, prefix, n)))
            .collect();
        let paths = spec
            .get("paths")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("the {name} spec has no paths"))?;
        let mut ops = Vec::new();
        for (template, item) in paths {
            for method in item.as_object().into_iter().flat_map(Map::keys) {
                if !["get", "put", "post", "delete", "patch", "head", "options"]
                    .contains(&method.as_str())
                {
                    continue;
                }
                let segments = template
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(|s| (!s.starts_with('{')).then(|| s.to_string()))
                    .collect();
                ops.push(Op {
                    method: method.to_ascii_uppercase(),
                    template: template.clone(),
                    segments,
                });
            }
        }
        Ok(Self {
            name,
            swagger2,
            spec,
            defs: Value::Object(defs),
            ops,
        })
    }

    /// The operation object of `op`.
    fn operation(&self, op: &Op) -> &Value {
        &self.spec["paths"][&op.template][op.method.to_ascii_lowercase()]
    }

    /// `operationId (METHOD template)`, in violations.
    fn label(&self, op: &Op) -> String {
        let id = self.operation(op)["operationId"].as_str().unwrap_or("?");
        format!("{} {id} ({} {})", self.name, op.method, op.template)
    }

    /// The operation for `method` on `path` (relative to the area), the one with the most
    /// literal segments when several templates match (`/sandbox/paginated` over
    /// `/sandbox/{id}`).
    fn find(&self, method: &str, path: &str) -> Result<&Op, String> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let matches = |op: &&Op| {
            op.segments.len() == parts.len()
                && op
                    .segments
                    .iter()
                    .zip(&parts)
                    .all(|(s, p)| s.as_deref().is_none_or(|s| s == *p))
        };
        let literal = |op: &&Op| op.segments.iter().filter(|s| s.is_some()).count();
        let candidates: Vec<&Op> = self.ops.iter().filter(matches).collect();
        if candidates.is_empty() {
            return Err(format!(
                "{path} is no path of Daytona's {} (v0.190.0)",
                self.name
            ));
        }
        candidates
            .iter()
            .copied()
            .filter(|op| op.method == method)
            .max_by_key(literal)
            .ok_or_else(|| {
                let allowed: Vec<&str> = candidates.iter().map(|o| o.method.as_str()).collect();
                format!(
                    "Daytona's {} has no {method} on {} (only {})",
                    self.name,
                    candidates[0].template,
                    allowed.join(", ")
                )
            })
    }

    /// The JSON schema of the request body and whether a body is required.
    fn request_schema(&self, op: &Op) -> Option<(Value, bool)> {
        let operation = self.operation(op);
        if self.swagger2 {
            let param = operation["parameters"]
                .as_array()?
                .iter()
                .find(|p| p["in"] == "body")?;
            Some((param["schema"].clone(), param["required"] == true))
        } else {
            let body = operation.get("requestBody")?;
            let schema = body["content"]["application/json"].get("schema")?;
            Some((schema.clone(), body["required"] == true))
        }
    }

    /// What the spec says the operation answers with `status`.
    fn response_schema(&self, op: &Op, status: u16) -> Answer {
        let Some(response) = self.operation(op)["responses"].get(status.to_string()) else {
            return Answer::Undocumented;
        };
        let schema = if self.swagger2 {
            response.get("schema")
        } else {
            response.pointer("/content/application~1json/schema")
        };
        // Swagger 2's `type: file` is a download's raw bytes, not JSON.
        match schema {
            Some(s) if s["type"] != "file" => Answer::Json(s.clone()),
            _ => Answer::NoJson,
        }
    }

    /// The query parameters: name → (schema, required).
    fn query_params(&self, op: &Op) -> Vec<(String, Value, bool)> {
        let operation = self.operation(op);
        operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .map(|p| {
                let schema = if self.swagger2 {
                    let mut s = p.clone();
                    if let Some(o) = s.as_object_mut() {
                        for k in ["name", "in", "required", "description", "collectionFormat"] {
                            o.remove(k);
                        }
                    }
                    s
                } else {
                    p["schema"].clone()
                };
                (
                    p["name"].as_str().unwrap_or_default().to_string(),
                    schema,
                    p["required"] == true,
                )
            })
            .collect()
    }
}

impl Contract {
    /// The contract of the vendored spec.
    pub fn load() -> Result<Self, String> {
        Self::from_json(SPEC)
    }

    /// The contract of `text` (`{"api": OpenAPI 3, "toolbox": Swagger 2}`).
    pub fn from_json(text: &str) -> Result<Self, String> {
        let mut spec: Value =
            serde_json::from_str(text).map_err(|e| format!("the spec is not JSON: {e}"))?;
        Ok(Self {
            api: Area::new("API", spec["api"].take())?,
            toolbox: Area::new("toolbox", spec["toolbox"].take())?,
            validators: Mutex::default(),
        })
    }

    /// The route of a request for `path` on the fake.
    pub(super) fn route(&self, method: &str, path: &str) -> (Route<'_>, String) {
        if ["/_fake/", "/_preview/", "/_s3/", "/_auth/"]
            .iter()
            .any(|p| path.starts_with(p))
        {
            return (Route::Exempt, String::new());
        }
        let (area, rest) = if let Some(rest) = path.strip_prefix("/api") {
            (&self.api, rest.to_string())
        } else if let Some(rest) = path.strip_prefix("/toolbox/") {
            // `/toolbox/{sandboxId}/process/execute` → `/process/execute`.
            let rest = rest.split_once('/').map_or("", |(_, r)| r);
            (&self.toolbox, format!("/{rest}"))
        } else {
            return (
                Route::Unknown(format!("{path} is neither under /api nor /toolbox")),
                String::new(),
            );
        };
        match area.find(method, &rest) {
            Ok(op) => (Route::Found(area, op), rest),
            Err(e) => (Route::Unknown(e), rest),
        }
    }

    /// The validator of `schema` (in `area`), compiled once per `key`.
    pub(super) fn validator(
        &self,
        area: &Area,
        key: String,
        schema: &Value,
    ) -> Result<Arc<jsonschema::Validator>, String> {
        let mut cache = self
            .validators
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(v) = cache.get(&key) {
            return Ok(v.clone());
        }
        let prefix = if area.swagger2 {
            "#/definitions/"
        } else {
            "#/components/schemas/"
        };
        let mut root = match convert(schema, prefix, "") {
            Value::Object(o) => o,
            other => {
                let mut o = Map::new();
                o.insert("allOf".into(), json!([other]));
                o
            }
        };
        root.insert("$defs".into(), area.defs.clone());
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&Value::Object(root))
            .map_err(|e| format!("the spec's schema for {key} does not compile: {e}"))?;
        let validator = Arc::new(validator);
        cache.insert(key, validator.clone());
        Ok(validator)
    }

    /// What is wrong with `body` against `schema`: one line per error, `at` naming it.
    fn validate(
        &self,
        area: &Area,
        key: String,
        schema: &Value,
        body: &Value,
        at: &str,
    ) -> Vec<String> {
        match self.validator(area, key, schema) {
            Ok(v) => v
                .iter_errors(body)
                .map(|e| {
                    let place = e.instance_path().to_string();
                    let place = if place.is_empty() { "/" } else { &place };
                    format!("{at} at {place}: {e}")
                })
                .collect(),
            Err(e) => vec![e],
        }
    }

    /// What is wrong with a request: `body` is its bytes when its content type is JSON.
    pub fn check_request(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        body: Option<&[u8]>,
    ) -> Vec<String> {
        let (area, op) = match self.route(method, path) {
            (Route::Exempt, _) => return Vec::new(),
            (Route::Unknown(why), _) => return vec![format!("{method} {path}: {why}")],
            (Route::Found(area, op), _) => (area, op),
        };
        let label = area.label(op);
        let mut wrong = Vec::new();
        let params = area.query_params(op);
        for (name, value) in query_pairs(query.unwrap_or_default()) {
            let Some((_, schema, _)) = params.iter().find(|(n, _, _)| *n == name) else {
                wrong.push(format!(
                    "{label}: query parameter `{name}` is not one Daytona knows (it would be ignored)"
                ));
                continue;
            };
            let item_schema = if schema["type"] == "array" {
                &schema["items"]
            } else {
                schema
            };
            let coerced = coerce(&value, item_schema, &area.defs);
            wrong.extend(self.validate(
                area,
                format!("{label} query {name}"),
                item_schema,
                &coerced,
                &format!("{label}: query parameter `{name}`={value:?}"),
            ));
        }
        let given: Vec<String> = query_pairs(query.unwrap_or_default())
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for (name, _, required) in &params {
            if *required && !given.contains(name) {
                wrong.push(format!(
                    "{label}: the required query parameter `{name}` is missing"
                ));
            }
        }
        match (area.request_schema(op), body) {
            (Some((schema, _)), Some(bytes)) => match serde_json::from_slice::<Value>(bytes) {
                Ok(v) => wrong.extend(self.validate(
                    area,
                    format!("{label} request"),
                    &schema,
                    &v,
                    &format!("{label}: request body"),
                )),
                Err(e) => wrong.push(format!("{label}: the request body is not JSON: {e}")),
            },
            (Some((_, true)), None) => {
                wrong.push(format!(
                    "{label}: the JSON request body Daytona requires is missing"
                ));
            }
            (None, Some(bytes)) if !bytes.is_empty() => {
                wrong.push(format!(
                    "{label}: a JSON request body, which Daytona does not take"
                ));
            }
            _ => {}
        }
        wrong
    }

    /// What is wrong with an answer: `body` is its bytes when its content type is JSON.
    pub fn check_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: Option<&[u8]>,
    ) -> Vec<String> {
        let Route::Found(area, op) = self.route(method, path).0 else {
            // An unknown route is reported for its request.
            return Vec::new();
        };
        let label = format!("{} → {status}", area.label(op));
        let parsed = body.map(serde_json::from_slice::<Value>);
        let schema = match area.response_schema(op, status) {
            Answer::Json(schema) => schema,
            Answer::NoJson if status < 400 => return Vec::new(),
            Answer::Undocumented if status < 400 => {
                return vec![format!(
                    "{label}: Daytona does not answer {status} here (its spec documents {})",
                    area.operation(op)["responses"]
                        .as_object()
                        .map(|r| r.keys().cloned().collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                )]
            }
            // An error: on the API, Daytona's error body; the toolbox's is not described.
            _ if area.swagger2 => return Vec::new(),
            _ => error_schema(),
        };
        match parsed {
            Some(Ok(v)) => self.validate(
                area,
                format!("{label} response"),
                &schema,
                &v,
                &format!("{label}: body"),
            ),
            Some(Err(e)) => vec![format!("{label}: the body is not JSON: {e}")],
            None => vec![format!(
                "{label}: the body is not JSON (by its Content-Type), which Daytona's is"
            )],
        }
    }
}

/// The vendored contract (loaded once).
pub(super) fn contract() -> &'static Result<Contract, String> {
    static CONTRACT: OnceLock<Result<Contract, String>> = OnceLock::new();
    CONTRACT.get_or_init(Contract::load)
}
