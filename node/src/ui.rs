//! The web UI: static files built into the binary (`node/ui/`: plain ES modules, no build step, uPlot for
//! charts), served by every node at `/` and `/ui/...`. The files hold no data: the pages read it from the
//! node's API (`/query`, `/api/alerts`, ...) with the browser's token, so the files themselves need none.

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// (path, content type, bytes)
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    ("/", "text/html; charset=utf-8", include_bytes!("../ui/index.html")),
    ("/ui/app.js", "text/javascript; charset=utf-8", include_bytes!("../ui/app.js")),
    ("/ui/style.css", "text/css; charset=utf-8", include_bytes!("../ui/style.css")),
    ("/ui/vendor/uPlot.esm.js", "text/javascript; charset=utf-8", include_bytes!("../ui/vendor/uPlot.esm.js")),
    ("/ui/vendor/uPlot.min.css", "text/css; charset=utf-8", include_bytes!("../ui/vendor/uPlot.min.css")),
    ("/ui/vendor/uPlot.LICENSE", "text/plain; charset=utf-8", include_bytes!("../ui/vendor/uPlot.LICENSE")),
];

/// Serves one of [`ASSETS`] by the request's path.
pub async fn asset(uri: Uri) -> Response {
    let Some((_, ctype, bytes)) = ASSETS.iter().find(|(p, _, _)| *p == uri.path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, *ctype),
            // Revalidated on every load, so a node upgrade shows at once.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; object-src 'none'; \
                 frame-ancestors 'none'",
            ),
        ],
        *bytes,
    )
        .into_response()
}
