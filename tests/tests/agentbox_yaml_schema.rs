//! `docs/agentbox-yaml.schema.json` against the real `agentbox.yaml` parser
//! (`agentbox_ctl::config::parse_str`): every example of `docs/agentbox-yaml.md` and
//! README.md, every `agentbox.yaml` under `examples/`, and a set of good and broken
//! documents must be accepted by both or refused by both, so that the schema an editor uses
//! cannot drift from what a box loads.
//!
//! "Accepted" by the parser means loaded with no error and no warning: the schema marks
//! unknown keys (which the parser warns about and ignores), so that an editor shows typos.
//! The few rules a JSON Schema cannot express (references between units, one default
//! exposure, …) are listed in the docs ("What only `agentbox-ctl` checks") and here in
//! [`PARSER_ONLY`], where the test holds that the schema lets them through and the parser
//! does not: a schema that learns one of them fails it, and the docs' list must change.

use std::path::{Path, PathBuf};

use agentbox_ctl::config::yaml::{self, parse_bool, Node};
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn validator() -> jsonschema::Validator {
    let path = repo_root().join("docs/agentbox-yaml.schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{} does not compile: {e}", path.display()))
}

/// The document as an editor's YAML language server sees it: JSON, with plain scalars
/// typed the way agentbox-ctl types them (null, true/false, finite numbers, else strings).
/// A duplicate or non-scalar key is an error, as it is in an editor.
fn to_json(node: &Node) -> Result<Value, String> {
    Ok(match node {
        Node::Scalar {
            value,
            quoted: true,
            ..
        } => Value::String(value.clone()),
        n @ Node::Scalar { value, .. } => {
            if n.is_null() {
                Value::Null
            } else if let Some(b) = parse_bool(value) {
                Value::Bool(b)
            } else if let Ok(i) = value.parse::<i64>() {
                Value::from(i)
            } else {
                match value.parse::<f64>() {
                    Ok(f) if f.is_finite() => Value::from(f),
                    _ => Value::String(value.clone()),
                }
            }
        }
        Node::Seq { items, .. } => {
            Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Node::Map { entries, .. } => {
            let mut map = serde_json::Map::new();
            for (key, value) in entries {
                let Node::Scalar { value: k, .. } = key else {
                    return Err(format!(
                        "{}:{}: a key that is not a string",
                        key.pos().line,
                        key.pos().col
                    ));
                };
                if map.insert(k.clone(), to_json(value)?).is_some() {
                    return Err(format!(
                        "{}:{}: duplicate key `{k}`",
                        key.pos().line,
                        key.pos().col
                    ));
                }
            }
            Value::Object(map)
        }
    })
}

/// `Ok` when the schema accepts `source`; else why not.
fn schema_verdict(validator: &jsonschema::Validator, source: &str) -> Result<(), String> {
    let root = yaml::parse(source).map_err(|e| format!("YAML: {}", e.message))?;
    let doc = match root {
        Some(node) => to_json(&node)?,
        None => Value::Null,
    };
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at `{}`", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// `Ok` when agentbox-ctl loads `source` with no error and no warning; else what it said.
fn parser_verdict(source: &str) -> Result<(), String> {
    match agentbox_ctl::config::parse_str(source, Path::new("agentbox.yaml")) {
        Ok(config) if config.warnings.is_empty() => Ok(()),
        Ok(config) => Err(config.warnings.join("; ")),
        Err(e) => Err(e.to_string()),
    }
}

/// Every fenced ```yaml block of a Markdown file, with the line it starts on.
fn yaml_blocks(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match current.as_mut() {
            None if line.trim_start() == "```yaml" => current = Some((i + 2, String::new())),
            None => {}
            Some(_) if line.trim_start() == "```" => blocks.extend(current.take()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    assert!(
        current.is_none(),
        "{}: a ```yaml block is not closed",
        path.display()
    );
    blocks
}

/// Every `agentbox.yaml` under `dir`.
fn configs_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            configs_under(&path, out);
        } else if path.file_name().is_some_and(|n| n == "agentbox.yaml") {
            out.push(path);
        }
    }
}

/// Both accept `source` (named `what` in the failure).
fn both_accept(validator: &jsonschema::Validator, what: &str, source: &str) {
    let schema = schema_verdict(validator, source);
    let parser = parser_verdict(source);
    assert!(
        schema.is_ok() && parser.is_ok(),
        "{what} must be accepted by the schema and by agentbox-ctl\nschema: {schema:?}\nparser: {parser:?}\n---\n{source}"
    );
}

#[test]
fn every_example_in_the_docs_and_the_repo_is_valid_for_schema_and_parser() {
    let validator = validator();
    let root = repo_root();
    let mut seen = 0;
    for doc in ["docs/agentbox-yaml.md", "README.md"] {
        for (line, block) in yaml_blocks(&root.join(doc)) {
            both_accept(&validator, &format!("the example at {doc}:{line}"), &block);
            seen += 1;
        }
    }
    // The reference has an example per key; an extraction that found none proves nothing.
    assert!(seen >= 15, "only {seen} yaml examples found in the docs");
    let mut configs = Vec::new();
    configs_under(&root.join("examples"), &mut configs);
    assert!(!configs.is_empty(), "no agentbox.yaml under examples/");
    for path in configs {
        let text = std::fs::read_to_string(&path).expect("read");
        both_accept(&validator, &path.display().to_string(), &text);
    }
}

/// Documents both must accept.
const GOOD: &[&str] = &[
    "",
    "services:\n",
    "services: {}\ntasks: ~\n",
    "services:\n  web:\n    command: [python3, -m, http.server]\n",
    "services:\n  web:\n    command: true\n    cwd: 2024\n",
    "services:\n  web:\n    command: x\n    env: {A: 1, B: true, C: '', D: text}\n",
    "services:\n  web:\n    command: x\n    needs:\n",
    "services:\n  web:\n    command: x\n    autostart: false\n    restart: never\n    stop_grace_ms: 0\n",
    "services:\n  web:\n    command: x\n    backoff: {initial_ms: 0, max_ms: 0, factor: 1, reset_after_ms: 1}\n",
    "services:\n  web:\n    command: x\n    ready_when: {port: 65535, host: localhost, interval_ms: 1, initial_delay_ms: 0, timeout_ms: 1, on_timeout: kill}\n",
    "services:\n  web:\n    command: x\n    ready_when: {http: 'http://[::1]:8080/health?x=1', expect_status: 599}\n",
    "services:\n  web:\n    command: x\n    ready_when: {http: 'http://localhost', expect_status: 100}\n",
    "services:\n  web:\n    command: x\n    ready_when: {log_match: '^ready$', timeout_ms: 5000, on_timeout: mark_unhealthy}\n",
    "services:\n  web:\n    command: x\n    expose: {port: 1, as: 80, default: true}\n",
    "services:\n  web:\n    command: x\n    ide: [anything, at: all]\n",
    "tasks:\n  a:\n    command: x\n    run_once: false\n  b:\n    command: x\n    run_once: ~\n  c:\n    command: x\n    run_once: {check: 0}\n",
    "tasks:\n  setup:\n    command: x\nservices:\n  web:\n    command: y\n    needs: [setup]\n",
    "ide: {}\ndefaults: {box.bundleDepth: 5, box: {agents: none}}\ncarry: [a, b]\nreplacements: 7\n",
];

/// Documents both must refuse, each breaking one rule.
const BAD: &[&str] = &[
    "- a\n- b\n",
    "just words\n",
    "servics:\n  web:\n    command: x\n",
    "services: []\n",
    "services:\n  web: ~\n",
    "services:\n  web:\n    cwd: x\n",
    "services:\n  web:\n    command: ''\n",
    "services:\n  web:\n    command: '   '\n",
    "services:\n  web:\n    command: []\n",
    "services:\n  web:\n    command: [a, ~]\n",
    "services:\n  web:\n    command: [a, [b]]\n",
    "services:\n  agentbox-web:\n    command: x\n",
    "services:\n  'bad name':\n    command: x\n",
    "services:\n  web:\n    command: x\n    comand: y\n",
    "services:\n  web:\n    command: x\n    command: y\n",
    "services:\n  web:\n    command: x\n    image: nginx\n",
    "services:\n  web:\n    command: x\n    cwd:\n",
    "services:\n  web:\n    command: x\n    autostart: yes\n",
    "services:\n  web:\n    command: x\n    autostart: 'true'\n",
    "services:\n  web:\n    command: x\n    restart: sometimes\n",
    "services:\n  web:\n    command: x\n    backoff: {factor: 0.5}\n",
    "services:\n  web:\n    command: x\n    backoff: {initial_ms: -1}\n",
    "services:\n  web:\n    command: x\n    backoff: {initial: 5}\n",
    "services:\n  web:\n    command: x\n    backoff: 5\n",
    "services:\n  web:\n    command: x\n    ready_when: {}\n",
    "services:\n  web:\n    command: x\n    ready_when: {port: 80, http: 'http://x/'}\n",
    "services:\n  web:\n    command: x\n    ready_when: {port: 0}\n",
    "services:\n  web:\n    command: x\n    ready_when: {port: 65536}\n",
    "services:\n  web:\n    command: x\n    ready_when: {port: '8000'}\n",
    "services:\n  web:\n    command: x\n    ready_when: {port: 80, expect_status: 200}\n",
    "services:\n  web:\n    command: x\n    ready_when: {http: 'http://x/', host: y}\n",
    "services:\n  web:\n    command: x\n    ready_when: {log_match: x, interval_ms: 5}\n",
    "services:\n  web:\n    command: x\n    ready_when: {log_match: x, host: y}\n",
    "services:\n  web:\n    command: x\n    ready_when: {http: 'https://x/'}\n",
    "services:\n  web:\n    command: x\n    ready_when: {http: 'ftp://x/'}\n",
    "services:\n  web:\n    command: x\n    ready_when: {http: 'http://u@x/'}\n",
    "services:\n  web:\n    command: x\n    ready_when: {http: 'http://x/a b'}\n",
    "services:\n  web:\n    command: x\n    ready_when: {http: 'http://x/', expect_status: 99}\n",
    "services:\n  web:\n    command: x\n    ready_when: {port: 80, timeout_ms: 0}\n",
    "services:\n  web:\n    command: x\n    ready_when: {port: 80, on_timeout: restart}\n",
    "services:\n  web:\n    command: x\n    ready_when: {port: 80, retries: 3}\n",
    "services:\n  web:\n    command: x\n    expose: {}\n",
    "services:\n  web:\n    command: x\n    expose: {port: 80, as: 8080}\n",
    "services:\n  web:\n    command: x\n    expose: {port: 80, default: 'yes'}\n",
    "services:\n  web:\n    command: x\n    expose: 8000\n",
    "services:\n  web:\n    command: x\n    env: [A=1]\n",
    "services:\n  web:\n    command: x\n    env: {A: ~}\n",
    "services:\n  web:\n    command: x\n    env: {A: {b: c}}\n",
    "services:\n  web:\n    command: x\n    env: {'A=B': c}\n",
    "services:\n  web:\n    command: x\n    needs: db\n",
    "services:\n  web:\n    command: x\n    needs: ['d b']\n",
    "services:\n  web:\n    command: x\n    stop_grace_ms: -5\n",
    "tasks:\n  t:\n    command: x\n    expose: {port: 80}\n",
    "tasks:\n  t:\n    command: x\n    restart: always\n",
    "tasks:\n  t:\n    command: x\n    run_once: 'true'\n",
    "tasks:\n  t:\n    command: x\n    run_once: 1\n",
    "tasks:\n  t:\n    command: x\n    run_once: {}\n",
    "tasks:\n  t:\n    command: x\n    run_once: {check: ''}\n",
    "tasks:\n  t:\n    command: x\n    run_once: {check: x, also: y}\n",
    "ide: ~\n",
    "defaults: [a]\n",
    "defaults: 5\n",
];

/// Documents the parser refuses and the schema cannot: the rules in the docs' "What only
/// `agentbox-ctl` checks".
const PARSER_ONLY: &[&str] = &[
    "tasks:\n  web:\n    command: x\nservices:\n  web:\n    command: y\n",
    "services:\n  web:\n    command: x\n    needs: [db]\n",
    "services:\n  a:\n    command: x\n    needs: [b]\n  b:\n    command: x\n    needs: [a]\n",
    "services:\n  a:\n    command: x\n    needs: [a]\n",
    "services:\n  a:\n    command: x\n    expose: {port: 1, default: true}\n  b:\n    command: x\n    expose: {port: 2, default: true}\n",
    "services:\n  a:\n    command: x\n    backoff: {initial_ms: 1000, max_ms: 10}\n",
    "services:\n  a:\n    command: x\n    ready_when: {http: 'http://:80/'}\n",
    "services:\n  a:\n    command: x\n    ready_when: {http: 'http://x:99999/'}\n",
    "services:\n  a:\n    command: x\n    ready_when: {log_match: '('}\n",
];

#[test]
fn schema_and_parser_agree_on_good_and_broken_documents() {
    let validator = validator();
    for doc in GOOD {
        both_accept(&validator, "this good document", doc);
    }
    for doc in BAD {
        let schema = schema_verdict(&validator, doc);
        let parser = parser_verdict(doc);
        assert!(
            schema.is_err() && parser.is_err(),
            "this broken document must be refused by the schema and by agentbox-ctl\nschema: {schema:?}\nparser: {parser:?}\n---\n{doc}"
        );
    }
    for doc in PARSER_ONLY {
        let schema = schema_verdict(&validator, doc);
        let parser = parser_verdict(doc);
        assert!(
            schema.is_ok() && parser.is_err(),
            "a rule the docs list under \"What only agentbox-ctl checks\": expected the schema to accept and agentbox-ctl to refuse (if the schema checks it now, move the document to BAD and the rule out of that list)\nschema: {schema:?}\nparser: {parser:?}\n---\n{doc}"
        );
    }
}
