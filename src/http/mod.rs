//! The HTTP layer: routing, middleware, and one file per resource. Handlers only extract, call the sync or
//! store layer, and encode; errors map through `error::Error`'s one status table.
//!
//! Every route is registered through `OpenApiRouter::routes(routes!(...))`, which adds the route and its
//! OpenAPI description together; `tests/api/openapi.rs` fails if a route is mounted any other way.

mod admin;
mod auth;
mod changes;
mod chart;
mod conflicts;
mod cors;
pub mod encoding;
mod error;
pub mod negotiate;
mod observe;
mod ops;
mod pairing;
mod reference;
mod rows;
mod scopes;
mod summary;
mod system;
mod tokens;

use crate::{error::Error, state::AppState};
use axum::http::StatusCode;
use axum::{extract::DefaultBodyLimit, middleware, Router};
use std::time::Duration;
use tower_http::{
    catch_panic::CatchPanicLayer,
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(OpenApi)]
#[openapi(
    info(title = "dukasync", description = "Offline-first sync server. The written protocol is protocol/README.md."),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A device token (`dks_` and 64 hex digits, protocol §3) or a JWT signed by the ERP's backend \
                         (EdDSA, ES256, RS256 or HS256; protocol §3.2).",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every route with its description.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(system::metrics))
        .routes(routes!(system::openapi_json))
        .routes(routes!(scopes::list_scopes))
        .routes(routes!(scopes::list_collections))
        .routes(routes!(scopes::list_devices))
        .routes(routes!(changes::get_changes))
        .routes(routes!(changes::get_checksum))
        .routes(routes!(ops::post_ops))
        .routes(routes!(rows::post_rows))
        .routes(routes!(reference::get_reference))
        .routes(routes!(admin::get_cache))
        .routes(routes!(summary::get_summary))
        .routes(routes!(conflicts::list_conflicts))
        .routes(routes!(conflicts::get_conflict))
        .routes(routes!(conflicts::resolve_conflict))
        .routes(routes!(chart::add_account))
        .routes(routes!(chart::add_payment_method))
        .routes(routes!(pairing::create_pairing_code))
        .routes(routes!(pairing::pair))
        .routes(routes!(tokens::rotate_token))
        .routes(routes!(tokens::list_tokens))
        .routes(routes!(tokens::revoke_token))
        .split_for_parts();
    common_v1_responses(&mut doc);
    (router, doc)
}

/// Adds to every `/v1` operation what any of them may answer besides its own responses: 401 `unauthorized`
/// (every `/v1` route needs a token), 408 `timeout`, 503 `unavailable` / `overloaded` (the layers of
/// [`router`]); and gives every `{scope}` path parameter the scope id pattern. Here, once, so no route can
/// lack them (tests/api/openapi.rs checks).
fn common_v1_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{
        path::ParameterIn, schema::SchemaType, Content, ObjectBuilder, Ref, RefOr, ResponseBuilder, Type,
    };
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                )
                .build(),
        )
    };
    let common = [
        (
            "401",
            "unauthorized: missing, malformed, unknown, revoked or expired token",
        ),
        (
            "408",
            "timeout: the request took longer than the server's bound; safe to retry",
        ),
        (
            "503",
            "unavailable (the database is unreachable; nothing was done) or overloaded (too many requests in \
             flight); safe to retry with backoff",
        ),
    ];
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            for (status, description) in common {
                let response = op
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error(description));
                // A route's own description of the status (e.g. "nothing applied") is kept, with the common one.
                if let RefOr::T(own) = response {
                    if !own.description.contains(description) {
                        own.description = format!("{}; {description}", own.description);
                    }
                }
            }
            for param in op.parameters.iter_mut().flatten() {
                if param.name == "scope" && param.parameter_in == ParameterIn::Path {
                    param.schema = Some(RefOr::T(
                        ObjectBuilder::new()
                            .schema_type(SchemaType::Type(Type::String))
                            .pattern(Some(crate::domain::SCOPE_ID_PATTERN))
                            .min_length(Some(1))
                            .max_length(Some(40))
                            .into(),
                    ));
                }
            }
        }
    }
}

/// The OpenAPI description served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

pub fn router(state: AppState) -> Router {
    let limits = &state.config.limits;
    let (routes, _) = api();
    // The longest a request may legitimately take: the longest long-poll plus the ordinary bound.
    let timeout = limits.max_wait + limits.request_timeout;
    // Layers run outside-in in the reverse order of these calls: the request id is set first, then the request
    // is observed (span, metrics, admission and error bodies: span and metrics see every final answer,
    // rejections by the layers below included), then a panic is caught, then the timeout and the body limit.
    // CORS, when configured, is outermost of all (`http::cors` says why).
    let cors = cors::layer(&state.config.cors_origins);
    let router = routes
        .fallback(|| async { Error::RouteNotFound })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout_or_default(timeout),
        ))
        .layer(CatchPanicLayer::custom(panic_answer))
        .layer(middleware::from_fn_with_state(state.clone(), observe::observe))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// A handler that panicked answers the documented 500 `internal` (logged with the panic's message, which the
/// client never sees) instead of the connection being dropped.
fn panic_answer(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    Error::Internal(anyhow::anyhow!("a handler panicked: {message}")).into_response()
}

fn timeout_or_default(timeout: Duration) -> Duration {
    timeout.max(Duration::from_secs(1))
}
