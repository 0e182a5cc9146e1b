//! Daytona's API contract, checked on every call the fake serves (issue 19 #4): each request
//! body the client sends and each answer the fake gives is validated against Daytona's own
//! API description — `spec/daytona-api.json`, the part of Daytona v0.190.0's `openapi.yaml`
//! (the REST API, under `/api`) and `toolbox-swagger.yaml` (the toolbox, under
//! `/toolbox/{sandboxId}`) that `scripts/vendor-daytona-spec` extracts.
//!
//! The spec's schemas become JSON Schema (draft 2020-12) for the `jsonschema` validator:
//! `$ref`s to `#/components/schemas/X` (`#/definitions/X` in the toolbox's Swagger 2) point
//! into `$defs`, OpenAPI's `nullable: true` becomes "or null", and an object schema that
//! lists its properties allows no others (Daytona's DTOs are closed: a field the fake invents
//! is one the client could wrongly rely on, and a field the client sends that Daytona does
//! not know is silently dropped there). Checked: the route exists (method and path
//! template), the query parameters are known and of their type, the request body (JSON) and
//! the answer's body for its status: a status the operation does not document is allowed
//! only for errors, which on the API must have Daytona's error shape
//! ([`schema::error_schema`]).
//!
//! Exempt: the fake's own controls (`/_fake/…`), the preview proxy (`/_preview/…`, whose
//! traffic is the relay's, not Daytona's API), its sign-in page (`/_auth/…`, the identity
//! provider's) and the object storage (`/_s3/…`, the S3 protocol). A violation is printed
//! on stderr, kept for `GET /_fake/violations`, and appended (one line each) to the file
//! `DAYTONA_FAKE_VIOLATIONS` names, which the test harness reads when it drops the fake:
//! any violation fails the test.
//!
//! [`spec`] holds the operations and the checks, [`schema`] the conversion to JSON Schema,
//! [`layer`] the middleware and the report.

mod layer;
mod schema;
mod spec;
#[cfg(test)]
mod tests;

pub use layer::{check, violations};
