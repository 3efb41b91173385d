//! Paginated listings of the admin API (`GET /v1/releases`), which the dashboard pages
//! through: a coordinator with hundreds of releases answers one page at a time.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use edgegen_shared::api::{ErrorBody, ReleasePage, ReleasePageQuery};

use crate::error::AppError;
use crate::server::AppState;

/// `GET /v1/releases?offset=&limit=`.
#[utoipa::path(get, path = "/v1/releases", tag = "releases", security(("admin" = [])),
    params(ReleasePageQuery),
    responses((status = 200, description = "One page of releases (rollbacks included), newest first", body = ReleasePage),
        (status = 400, description = "A query parameter breaks its rule: the message names it", body = ErrorBody)))]
pub async fn list_releases(
    State(state): State<AppState>,
    query: Result<Query<ReleasePageQuery>, QueryRejection>,
) -> Result<Json<ReleasePage>, AppError> {
    let Query(page) = query.map_err(|e| AppError::bad_request("invalid_query", e.body_text()))?;
    if page.limit == 0 || page.limit > ReleasePageQuery::MAX_LIMIT {
        return Err(AppError::bad_request(
            "invalid_query",
            format!("limit: must be 1-{} (got {})", ReleasePageQuery::MAX_LIMIT, page.limit),
        ));
    }
    let (total, releases) = state.store.releases(page.offset, page.limit).await?;
    Ok(Json(ReleasePage { total, offset: page.offset, limit: page.limit, releases }))
}
