//! Every HTTP request's latency and status class by route: an axum middleware on the whole
//! surface ([`layer`]). The route is axum's [`MatchedPath`], the template (`/m/{id}`, rendered
//! `/m/:id`), never the raw path; a request no route matched counts as `route="unmatched"`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::{Metrics, RouteLabel};

/// `router` with every request measured into `metrics`; `router` unchanged when they are
/// disabled (then nothing is added to the request path at all).
pub fn layer(router: axum::Router, metrics: &Metrics) -> axum::Router {
    if !metrics.is_enabled() {
        return router;
    }
    router.layer(axum::middleware::from_fn_with_state(metrics.clone(), track))
}

/// The route label of a request, as the router left it.
pub fn route_of(request: &Request) -> RouteLabel {
    match request.extensions().get::<MatchedPath>() {
        // A clone of the template's `Arc`: no allocation per request.
        Some(path) => RouteLabel::Matched(path.clone()),
        None => RouteLabel::Unmatched,
    }
}

async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = route_of(&request);
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.http_request(route, response.status().as_u16(), started.elapsed());
    response
}
