//! The owner's dashboard summary: computed from PostgreSQL on every request, never cached.

use super::{
    auth::ScopeAccess,
    encoding::{Format, Query},
};
use crate::{
    error::Result,
    state::AppState,
    summary,
    wire::{ErrorBody, Summary, SummaryQuery},
};
use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::Response,
};

/// Today's revenue and takings by payment method, cash, M-Pesa and card balances, receivables, and products at
/// or below their reorder level. Owners and managers only.
#[utoipa::path(get, path = "/v1/scopes/{scope}/summary", tag = "money",
    params(("scope" = String, Path, description = "Scope id"), SummaryQuery),
    responses(
        (status = 200, body = Summary),
        (status = 400, body = ErrorBody, description = "invalid_query"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_summary(
    State(state): State<AppState>,
    access: ScopeAccess,
    Query(query): Query<SummaryQuery>,
    format: Format,
) -> Result<Response> {
    access.require_admin()?;
    let (day, offset) = summary::business_day(query.day.as_deref(), query.utc_offset_minutes)?;
    let report = summary::summary(&state.db, &access.scope, day, offset).await?;
    let mut response = format.reply(StatusCode::OK, &report);
    // Financial figures must never be served from any cache, the browser's included.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
