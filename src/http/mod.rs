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
use axum::{extract::DefaultBodyLimit, middleware, Router};
use tower::ServiceBuilder;
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
    let (routes, _) = api();
    // One layer per route, and the rest around the whole router, for speed: a layer given to `Router::layer`
    // wraps every route on its own, in a boxed service that axum clones for each request, and each clone clones
    // the boxed layers inside it. With seven such layers that chain of clones, allocations and boxed futures
    // cost as much server CPU as the rest of a cached page's answer (benches/README.md, "Layers around every
    // route"). Observation is the one that must sit on the routes, because it names the matched route: it
    // also sets the request id, bounds the body and the time, and catches panics (`observe`), so it sees every
    // answer of those as well. Around the router, set once: CORS, outermost (`http::cors` says why), and the
    // body limit the body extractor applies.
    let routed = routes
        .fallback(|| async { Error::RouteNotFound })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(state.clone(), observe::observe))
        .with_state(state.clone());
    let around = ServiceBuilder::new()
        .option_layer(cors::layer(&state.config.cors_origins))
        .layer(DefaultBodyLimit::max(state.config.limits.max_body_bytes))
        .service(routed);
    Router::new().fallback_service(around)
}
