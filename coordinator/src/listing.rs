//! Paginated listings of the admin API (`GET /v1/releases`, `GET /v1/reports`), which the
//! dashboard pages through: a coordinator with hundreds of releases answers one page at a
//! time.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use edgegen_shared::api::{ErrorBody, PageQuery, ReleasePage, ReportPage};

use crate::error::AppError;
use crate::server::AppState;

/// `GET /v1/releases?offset=&limit=`.
#[utoipa::path(get, path = "/v1/releases", tag = "releases", security(("admin" = [])),
    params(PageQuery),
    responses((status = 200, description = "One page of releases (rollbacks included), newest first", body = ReleasePage),
        (status = 400, description = "A query parameter breaks its rule: the message names it", body = ErrorBody)))]
pub async fn list_releases(
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ReleasePage>, AppError> {
    let page = checked(query)?;
    let (total, releases) = state.store.releases(page.offset, page.limit).await?;
    Ok(Json(ReleasePage { total, offset: page.offset, limit: page.limit, releases }))
}

/// `GET /v1/reports?offset=&limit=`.
#[utoipa::path(get, path = "/v1/reports", tag = "releases", security(("admin" = [])),
    params(PageQuery),
    responses((status = 200, description = "One page of the edge's reports, newest first", body = ReportPage),
        (status = 400, description = "A query parameter breaks its rule: the message names it", body = ErrorBody)))]
pub async fn list_reports(
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ReportPage>, AppError> {
    let page = checked(query)?;
    let (total, reports) = state.store.reports(page.offset, page.limit).await?;
    Ok(Json(ReportPage { total, offset: page.offset, limit: page.limit, reports }))
}

/// The page query, or a 400 naming the parameter.
fn checked(query: Result<Query<PageQuery>, QueryRejection>) -> Result<PageQuery, AppError> {
    let Query(page) = query.map_err(|e| AppError::bad_request("invalid_query", e.body_text()))?;
    if page.limit == 0 || page.limit > PageQuery::MAX_LIMIT {
        return Err(AppError::bad_request(
            "invalid_query",
            format!("limit: must be 1-{} (got {})", PageQuery::MAX_LIMIT, page.limit),
        ));
    }
    Ok(page)
}
