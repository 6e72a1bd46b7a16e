//! The HTTP API's behaviour, one module per area, all in one test binary (each binary is linked on its own, so
//! few binaries build and link faster). Every module drives the real server, PostgreSQL and Redis through the
//! harness of `tests/common/`.

#[path = "../common/mod.rs"]
mod common;

// Authentication (device tokens and JWTs of the ERP backend), the Authorization scheme, CORS, error bodies,
// readiness, metrics, start-up and shutdown.
mod bearer_scheme;
mod cors;
mod foundation;
mod metrics;
// Enrollment by pairing code; device tokens' expiry, rotation and revocation.
mod pairing;
mod tokens;
// Backend tokens (JWT) and their protocol vectors.
mod jwt;
mod jwt_vectors;
// The pull side: pages, resets, long-polls and their admission.
mod feed;
mod longpoll_admission;
// The push side: replay, batches, group commit, concurrency and the model-based property test.
mod batch_apply;
mod group_commit;
mod replay;
mod replay_concurrency;
mod replay_model;
// Commands that move money and stock, and the chart a new business starts with.
mod money;
mod scope_setup;
// What sync could not decide, reference snapshots, the dashboard summary.
mod conflicts;
mod reference;
mod summary;
// The caches seen through the API, and compressed pages of the feed.
mod cache;
mod compression;
// The written contract: the OpenAPI description and the protocol vectors.
mod openapi;
mod vectors;
// Who may write what.
mod schemas;
mod write_rights;
// Writes of the backend: over HTTP (`POST /rows`), and through SQL with capture triggers on its own tables.
mod backend_http;
mod backend_writes;
