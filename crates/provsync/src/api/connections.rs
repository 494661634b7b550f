//! `GET /v1/connections`: the sources and targets a job request may name.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;

use super::auth::Caller;
use super::error::ApiError;
#[allow(unused_imports)] // named in the OpenAPI annotations
use super::openapi::ConnectionList;
use super::{json, AppState};
use crate::config::Role;

#[utoipa::path(
    get,
    path = "/v1/connections",
    operation_id = "list_connections",
    tag = "jobs",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The configured sources and targets: name, type, where each points (no secret, no secret reference)", body = ConnectionList),
        (status = 401, description = "No bearer token, or an unknown one (`unauthorized`)", body = ApiError),
        (status = 403, description = "The token's role is weaker than read (`forbidden`)", body = ApiError)
    )
)]
/// `GET /v1/connections` (read).
pub async fn list(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    caller.require(Role::Read)?;
    Ok(json(StatusCode::OK, st.connections.listing()))
}
