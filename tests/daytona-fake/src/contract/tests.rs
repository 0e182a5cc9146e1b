//! The validator's own tests: good bodies pass, each kind of wrong shape is named.

use serde_json::{json, Value};

use super::spec::Contract;

fn contract() -> Contract {
    Contract::load().expect("the vendored spec loads")
}

/// A sandbox as the fake makes one, valid by Daytona's `Sandbox`.
fn sandbox() -> Value {
    json!({
        "id": "sbx-1", "organizationId": "org", "name": "n", "user": "daytona",
        "env": {}, "labels": {"a": "b"}, "public": false, "networkBlockAll": false,
        "target": "us", "cpu": 1, "gpu": 0, "memory": 1, "disk": 3,
        "state": "started", "desiredState": "started",
        "toolboxProxyUrl": "https://127.0.0.1:1/toolbox",
    })
}

fn answer(c: &Contract, method: &str, path: &str, status: u16, body: &Value) -> Vec<String> {
    let bytes = serde_json::to_vec(body).expect("json");
    c.check_response(method, path, status, Some(&bytes))
}

fn request(c: &Contract, method: &str, path: &str, body: &Value) -> Vec<String> {
    let bytes = serde_json::to_vec(body).expect("json");
    c.check_request(method, path, None, Some(&bytes))
}

#[test]
fn every_schema_of_the_vendored_spec_compiles() {
    let c = contract();
    for area in [&c.api, &c.toolbox] {
        for name in area.defs.as_object().expect("defs").keys() {
            let prefix = if area.swagger2 {
                "#/definitions/"
            } else {
                "#/components/schemas/"
            };
            let schema = json!({"$ref": format!("{prefix}{name}")});
            c.validator(area, format!("{} {name}", area.name), &schema)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn a_good_sandbox_passes_and_wrong_shapes_are_caught() {
    let c = contract();
    assert_eq!(
        answer(&c, "GET", "/api/sandbox/sbx-1", 200, &sandbox()),
        Vec::<String>::new()
    );
    // A wrong type, a missing required field, an enum value Daytona does not have,
    // and a field Daytona's Sandbox does not have: each is named.
    let mut bad = sandbox();
    bad["cpu"] = json!("two");
    bad.as_object_mut()
        .expect("object")
        .remove("toolboxProxyUrl");
    bad["state"] = json!("sleeping");
    bad["invented"] = json!(true);
    let wrong = answer(&c, "GET", "/api/sandbox/sbx-1", 200, &bad).join("\n");
    for expected in [
        "/cpu",
        "toolboxProxyUrl",
        "sleeping",
        "invented",
        "getSandbox",
    ] {
        assert!(wrong.contains(expected), "{expected} in:\n{wrong}");
    }
}

#[test]
fn nullable_fields_take_null_and_others_do_not() {
    let c = contract();
    // `SnapshotDto.size` is nullable; `SnapshotDto.name` is not.
    let snapshot = json!({
        "id": "s", "general": false, "name": "n", "imageName": "i", "state": "active",
        "size": null, "entrypoint": null, "cpu": 1, "gpu": 0, "mem": 1, "disk": 3,
        "errorReason": null, "createdAt": "2026-11-29T00:00:00.000Z",
        "updatedAt": "2026-11-29T00:00:00.000Z", "lastUsedAt": null,
    });
    let ok = answer(&c, "GET", "/api/snapshots/s", 200, &snapshot);
    assert_eq!(ok, Vec::<String>::new());
    let mut bad = snapshot;
    bad["name"] = Value::Null;
    let wrong = answer(&c, "GET", "/api/snapshots/s", 200, &bad).join("\n");
    assert!(wrong.contains("/name"), "{wrong}");
}

#[test]
fn request_bodies_and_query_parameters_are_checked() {
    let c = contract();
    assert_eq!(
        request(
            &c,
            "POST",
            "/api/sandbox",
            &json!({"snapshot": "s", "cpu": 2})
        ),
        Vec::<String>::new()
    );
    let wrong = request(
        &c,
        "POST",
        "/api/sandbox",
        &json!({"cpu": "2", "size": "big"}),
    )
    .join("\n");
    assert!(wrong.contains("/cpu") && wrong.contains("size"), "{wrong}");
    // The toolbox (Swagger 2): `command` is required.
    let wrong = request(
        &c,
        "POST",
        "/toolbox/sbx-1/process/execute",
        &json!({"timeout": 5}),
    )
    .join("\n");
    assert!(wrong.contains("command"), "{wrong}");
    // Query parameters: known, of their type.
    assert_eq!(
        c.check_request(
            "GET",
            "/api/snapshots",
            Some("page=1&limit=10&name=a"),
            None
        ),
        Vec::<String>::new()
    );
    let wrong = c
        .check_request("GET", "/api/snapshots", Some("page=first&colour=red"), None)
        .join("\n");
    assert!(
        wrong.contains("page") && wrong.contains("colour"),
        "{wrong}"
    );
}

#[test]
fn unknown_routes_undocumented_statuses_and_error_bodies_are_caught() {
    let c = contract();
    let wrong = c.check_request("POST", "/api/sandbox/x/teleport", None, None);
    assert!(wrong.join("").contains("no path"), "{wrong:?}");
    let wrong = c.check_request("PUT", "/api/sandbox/x/start", None, None);
    assert!(wrong.join("").contains("no PUT"), "{wrong:?}");
    // createSandbox answers 200, not 201.
    let wrong = answer(&c, "POST", "/api/sandbox", 201, &sandbox());
    assert!(wrong.join("").contains("does not answer 201"), "{wrong:?}");
    // An error is Daytona's error body.
    let good = json!({"path": "/api/sandbox/x", "timestamp": "2026-11-29T00:00:00.000Z",
        "statusCode": 404, "error": "Not Found", "message": "Sandbox with ID or name x not found"});
    assert_eq!(
        answer(&c, "GET", "/api/sandbox/x", 404, &good),
        Vec::<String>::new()
    );
    let wrong = answer(&c, "GET", "/api/sandbox/x", 404, &json!({"detail": "gone"}));
    assert!(wrong.join("").contains("message"), "{wrong:?}");
    // The fake's controls and the preview proxy are not Daytona's API.
    assert!(c
        .check_request("POST", "/_fake/faults", None, None)
        .is_empty());
    assert!(c
        .check_request("GET", "/_preview/8788-x/v1/bridge/poll", None, None)
        .is_empty());
}
