//! The OpenAPI 3 document of a process: each module contributes the paths of its routes
//! ([`Module::openapi`](crate::Module::openapi), derived from its handlers and their request
//! and response types with `utoipa`), the host adds its own endpoints and serves the merged
//! document at `/openapi.json` with a browsable Swagger UI at `/swagger-ui/`.

use serde::Serialize;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::{OpenApi, OpenApiBuilder, RefOr, Schema};
use utoipa::{OpenApi as _, ToSchema};

/// The error body of every REST error (`google.rpc.Status`, spec/api.md §1.5), for handlers'
/// `responses(...)` annotations.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ApiErrorBody {
    /// gRPC status code (3 invalid argument, 5 not found, 6 conflict, 13 internal, ...).
    pub code: i32,
    /// The error text clients match on.
    pub message: String,
    /// One `errors.ErrorType` for application errors; empty for router-level ones.
    pub details: Vec<ApiErrorDetail>,
}

/// The `errors.ErrorType` detail of an error body.
#[derive(Debug, Serialize, ToSchema)]
#[allow(non_snake_case)]
#[schema(as = ErrorDetail)]
pub struct ApiErrorDetail {
    /// Always `type.googleapis.com/errors.ErrorType`.
    #[serde(rename = "@type")]
    pub type_url: String,
    /// `BAD_REQUEST`, `NOT_FOUND`, ...
    pub TypeCode: String,
    /// The HTTP status, as a string.
    pub HTTPCode: String,
    /// The gRPC code, as a string.
    pub GRPCCode: String,
}

/// `{}`: the body of a successful command.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Empty)]
pub struct EmptyBody {}

/// `{"id"}`: the body of a successful create.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Created)]
pub struct IdBody {
    /// The new resource's id.
    pub id: String,
}

/// The host's own endpoints.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "MallBots",
        description = "The MallBots REST API (spec/api.md), health, readiness and metrics."
    ),
    paths(healthz, readyz, liveness, metrics, openapi_json)
)]
struct HostDoc;

/// Alive.
#[utoipa::path(get, path = "/healthz", tag = "host",
    responses((status = 200, description = "The process serves HTTP", content_type = "application/json")))]
#[allow(dead_code)]
fn healthz() {}

/// Ready: NATS, PostgreSQL and every consumer; the body names each check.
#[utoipa::path(get, path = "/readyz", tag = "host",
    responses(
        (status = 200, description = "Every check passes", content_type = "application/json"),
        (status = 503, description = "A check fails; the body says which", content_type = "application/json")
    ))]
#[allow(dead_code)]
fn readyz() {}

/// The original's liveness endpoint: `.` as plain text.
#[utoipa::path(get, path = "/liveness", tag = "host",
    responses((status = 200, description = "`.`", body = String, content_type = "text/plain")))]
#[allow(dead_code)]
fn liveness() {}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "host",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
#[allow(dead_code)]
fn metrics() {}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "host",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json")))]
#[allow(dead_code)]
fn openapi_json() {}

/// The process's document: the host's endpoints and every module's paths.
///
/// Panics when two modules define one component name with different schemas: the references
/// would silently point at the wrong one. Like a duplicate route, that is a wiring bug the first
/// start in any test finds.
pub fn document(modules: Vec<OpenApi>) -> OpenApi {
    let mut doc = HostDoc::openapi();
    for module in modules {
        let theirs = module.components.as_ref().map(|c| &c.schemas);
        let ours = doc.components.as_ref().map(|c| &c.schemas);
        if let (Some(theirs), Some(ours)) = (theirs, ours) {
            for (name, schema) in theirs {
                if let Some(existing) = ours.get(name) {
                    assert!(
                        existing == schema,
                        "OpenAPI: two modules define the schema {name} differently; rename one (#[schema(as = ...)])"
                    );
                }
            }
        }
        doc.merge(module);
    }
    constrain_path_ids(&mut doc);
    doc
}

/// What the host accepts as a path id (http.rs refuses anything else with a 400 before any
/// handler): 1 to [`MAX_PATH_ID_LEN`](crate::MAX_PATH_ID_LEN) characters, none of them a
/// control character. Written into every string path parameter so clients and fuzzers know.
fn constrain_path_ids(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            for parameter in operation.parameters.iter_mut().flatten() {
                if let RefOr::T(parameter) = parameter
                    && parameter.parameter_in == ParameterIn::Path
                    && let Some(RefOr::T(Schema::Object(schema))) = &mut parameter.schema
                {
                    schema.min_length = Some(1);
                    schema.max_length = Some(crate::MAX_PATH_ID_LEN);
                    schema.pattern = Some("^[^\\u0000-\\u001F\\u007F-\\u009F]+$".to_owned());
                }
            }
        }
    }
}

/// An empty document, the default of [`Module::openapi`](crate::Module::openapi).
pub fn empty() -> OpenApi {
    OpenApiBuilder::new().build()
}
