//! The probes: `/healthz` answers while the process serves; `/readyz` once the
//! controller has listed the Applications and read the emergency stop.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;

/// `GET /healthz`: alive.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 when ready, 503 before; the body says what is missing and
/// whether this replica leads or stands by.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let c = &state.controller;
    let ready = c.is_ready();
    let body = json!({
        "ready": ready,
        "applicationsListed": c.applications_listed(),
        "emergencyStopRead": c.stop.is_known(),
        "role": if c.leader.is_leader() { "leader" } else { "standby" },
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
