//! The ceiling `bench/capture.sh` compares `mlctl serve` with: a bare axum server on the same
//! runtime settings that only parses the JSON body (`dataframe_split` with rows of numbers)
//! and answers a fixed prediction per row. No model, no metrics, no capture.
//!
//! `cargo run --release -p mlctl-serve --example bare_axum -- PORT`

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use serde::Deserialize;

#[derive(Deserialize)]
struct Split {
    #[allow(dead_code)]
    columns: Vec<String>,
    data: Vec<Vec<f64>>,
}

#[derive(Deserialize)]
struct Body {
    dataframe_split: Split,
}

async fn invocations(body: Bytes) -> (axum::http::StatusCode, String) {
    match serde_json::from_slice::<Body>(&body) {
        Ok(b) => {
            let n = b.dataframe_split.data.len();
            let mut out = String::from("{\"predictions\":[");
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("\"setosa\"");
            }
            out.push_str("]}");
            (axum::http::StatusCode::OK, out)
        }
        Err(e) => (axum::http::StatusCode::BAD_REQUEST, e.to_string()),
    }
}

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: bare_axum PORT");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let app = Router::new().route("/invocations", post(invocations));
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        axum::serve(l, app).await.expect("serve");
    });
}
