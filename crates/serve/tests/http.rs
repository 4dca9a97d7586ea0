//! The server over real HTTP on 127.0.0.1 (ports from the OS), with small in-test models.
//! No assertion depends on timing: waits are bounded and generous.

use bytes::Bytes;
use mlctl_serve::client::{Client, Response};
use mlctl_serve::metrics::Scrape;
use mlctl_serve::{
    Column, DynPredictor, InputSchema, Output, Predictor, ServerOptions, VariantConfig,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Predicts class `answer` for every row; class 2 ("virginica") when the first value is > 5.
struct Fixed {
    schema: InputSchema,
    output: Output,
    answer: f64,
    fail: bool,
}

impl Predictor for Fixed {
    fn schema(&self) -> &InputSchema {
        &self.schema
    }
    fn output(&self) -> &Output {
        &self.output
    }
    fn predict(
        &self,
        raw: &[f64],
        rows: usize,
        out: &mut Vec<f64>,
    ) -> Result<(), mlctl_serve::ServeError> {
        if self.fail {
            return Err(mlctl_serve::ServeError::Predict("injected failure".into()));
        }
        let w = self.schema.width();
        out.extend((0..rows).map(|i| if raw[i * w] > 5.0 { 2.0 } else { self.answer }));
        Ok(())
    }
}

fn schema() -> InputSchema {
    InputSchema::new(vec![
        Column::number("sepal_length"),
        Column::number("sepal_width"),
        Column::number("petal_length"),
        Column::number("petal_width"),
    ])
}

/// Model directories named `a`, `b`, `fail` map to in-test models.
fn loader() -> mlctl_serve::Loader {
    Arc::new(
        |dir: &Path| -> Result<DynPredictor, Box<dyn std::error::Error + Send + Sync>> {
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let (answer, fail) = match name {
                "a" => (0.0, false),
                "b" => (1.0, false),
                "fail" => (0.0, true),
                _ => return Err(format!("no model in {}", dir.display()).into()),
            };
            Ok(Arc::new(Fixed {
                schema: schema(),
                output: Output::Classes(vec![
                    "setosa".into(),
                    "versicolor".into(),
                    "virginica".into(),
                ]),
                answer,
                fail,
            }))
        },
    )
}

fn variant(name: &str, dir: &str, weight: u32) -> VariantConfig {
    let mut v = VariantConfig::model_dir(name, PathBuf::from("/models").join(dir), weight);
    v.model = "iris".into();
    v.version = name.into();
    v
}

/// Requests answered on two threads of their own, as `mlctl serve` answers them.
fn options() -> ServerOptions {
    let mut o = ServerOptions::new(loader());
    o.addr = "127.0.0.1:0".parse().unwrap();
    o.threads = 2;
    o
}

struct Server {
    running: Option<mlctl_serve::Running>,
    base: String,
    client: Client,
}

impl Server {
    async fn start(opts: ServerOptions, variants: Vec<VariantConfig>) -> Server {
        let running = mlctl_serve::start(opts, variants)
            .await
            .expect("server starts");
        let base = format!("http://{}", running.addr);
        Server {
            running: Some(running),
            base,
            client: Client::new(),
        }
    }

    async fn post(&self, ct: &str, body: impl Into<Bytes>, extra: &[(&str, &str)]) -> Response {
        let mut h = vec![("content-type", ct)];
        h.extend_from_slice(extra);
        self.client
            .send(
                "POST",
                &format!("{}/invocations", self.base),
                &h,
                body.into(),
                Duration::from_secs(60),
            )
            .await
            .expect("answer")
    }

    async fn json(&self, body: &str) -> Response {
        self.post("application/json", body.to_string(), &[]).await
    }

    async fn get(&self, path: &str, h: &[(&str, &str)]) -> Response {
        self.client
            .get(&format!("{}{path}", self.base), h, Duration::from_secs(60))
            .await
            .expect("answer")
    }

    async fn put_variants(&self, token: &str, variants: &[VariantConfig]) -> Response {
        let body = serde_json::to_vec(&mlctl_serve::Variants {
            variants: variants.to_vec(),
        })
        .unwrap();
        let auth = format!("Bearer {token}");
        self.client
            .send(
                "PUT",
                &format!("{}/-/variants", self.base),
                &[
                    ("content-type", "application/json"),
                    ("authorization", &auth),
                ],
                body.into(),
                Duration::from_secs(60),
            )
            .await
            .expect("answer")
    }

    async fn stop(mut self) {
        self.running.take().unwrap().stop().await.unwrap();
    }
}

fn body_json(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

#[tokio::test]
async fn every_request_format_predicts() {
    let s = Server::start(options(), vec![variant("a", "a", 100)]).await;
    let want = serde_json::json!({"predictions": ["setosa", "virginica"]});
    let bodies = [
        (
            "application/json",
            r#"{"instances": [[1, 2, 3, 4], [6, 2, 3, 4]]}"#,
        ),
        ("application/json", r#"[[1, 2, 3, 4], [6, 2, 3, 4]]"#),
        (
            "application/json",
            r#"{"inputs": [[1, 2, 3, 4], [6, 2, 3, 4]]}"#,
        ),
        (
            "application/json",
            r#"{"inputs": {"sepal_length": [1, 6], "sepal_width": [2, 2], "petal_length": [3, 3], "petal_width": [4, 4]}}"#,
        ),
        (
            "application/json",
            r#"{"dataframe_split": {"columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"], "data": [[1, 2, 3, 4], [6, 2, 3, 4]]}}"#,
        ),
        (
            "application/json; format=pandas-records",
            r#"{"dataframe_records": [{"sepal_length": 1, "sepal_width": 2, "petal_length": 3, "petal_width": 4}, {"sepal_length": 6, "sepal_width": 2, "petal_length": 3, "petal_width": 4}]}"#,
        ),
        ("text/csv", "1,2,3,4\n6,2,3,4\n"),
        (
            "text/csv",
            "sepal_length,sepal_width,petal_length,petal_width,species\n1,2,3,4,setosa\n6,2,3,4,virginica\n",
        ),
        ("text/csv; header=absent", "1,2,3,4\n6,2,3,4"),
    ];
    for (ct, body) in bodies {
        let r = s.post(ct, body.to_string(), &[]).await;
        assert_eq!(r.status, 200, "{ct} {body}: {}", r.text());
        assert_eq!(body_json(&r), want, "{ct} {body}");
    }
    // Batches: 1,000 rows in one request.
    let rows: Vec<String> = (0..1000)
        .map(|i| format!("[{}, 1, 1, 1]", i % 10))
        .collect();
    let r = s
        .json(&format!("{{\"instances\": [{}]}}", rows.join(",")))
        .await;
    assert_eq!(body_json(&r)["predictions"].as_array().unwrap().len(), 1000);
    // CSV out when asked.
    let r = s
        .post("text/csv", "1,2,3,4\n6,2,3,4", &[("accept", "text/csv")])
        .await;
    assert_eq!(r.text(), "setosa\nvirginica\n");
    assert_eq!(s.get("/ping", &[]).await.status, 200);
    let h = body_json(&s.get("/health", &[]).await);
    assert_eq!(h["status"], "healthy");
    s.stop().await;
}

#[tokio::test]
async fn without_threads_of_its_own_the_server_answers_on_the_calling_runtime() {
    let mut o = options();
    o.threads = 0;
    let s = Server::start(o, vec![variant("a", "a", 100)]).await;
    let r = s
        .json(r#"{"instances": [[1, 2, 3, 4], [6, 2, 3, 4]]}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        body_json(&r),
        serde_json::json!({"predictions": ["setosa", "virginica"]})
    );
    s.stop().await;
}

#[tokio::test]
async fn malformed_bodies_get_4xx_with_a_message() {
    let mut opts = options();
    opts.max_body_bytes = 64 << 10;
    let s = Server::start(opts, vec![variant("a", "a", 100)]).await;
    let huge = format!(
        "{{\"instances\": [{}]}}",
        vec!["[1,2,3,4]"; 20_000].join(",")
    );
    let garbage: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let cases: Vec<(&str, Bytes, u16, &str)> = vec![
        ("application/json", Bytes::from_static(b"{\"instances\": [[1,2,3"), 400, "invalid JSON"),
        ("application/json", Bytes::from_static(b"{\"instances\": [[1,2,3,NaN]]}"), 400, "invalid JSON"),
        ("application/json", Bytes::from_static(b"{\"instances\": [[1,2,3]]}"), 400, "row 0 has 3 values; the model takes 4"),
        ("application/json", Bytes::from_static(b"{\"instances\": [{\"sepal_length\": 1, \"sepal_width\": 2, \"petal_length\": 3, \"petal_widht\": 4}]}"), 400, "row 0 has no column `petal_width`"),
        ("application/json", Bytes::from_static(b"{\"instances\": [[1,2,3,\"four\"]]}"), 400, "column `petal_width`: expected a number"),
        ("application/json", Bytes::from_static(b"{\"instances\": [[1,2,3,null]]}"), 400, "missing value"),
        ("application/json", Bytes::from_static(b"{\"instances\": []}"), 400, "no rows"),
        ("application/json", Bytes::new(), 400, "invalid JSON"),
        ("application/json", Bytes::from(garbage.clone()), 400, "invalid JSON"),
        ("text/csv", Bytes::from(garbage), 400, "CSV"),
        ("text/csv", Bytes::from_static(b"1,2,3,NaN"), 400, "column `petal_width`: missing value"),
        ("text/csv", Bytes::from_static(b""), 400, "no rows"),
        ("text/plain", Bytes::from_static(b"1,2,3,4"), 415, "unsupported content type"),
        ("application/json", Bytes::from(huge), 413, "larger than the limit"),
    ];
    let n = cases.len() as u64;
    for (ct, body, status, msg) in cases {
        let r = s.post(ct, body, &[]).await;
        assert_eq!(r.status, status, "{ct}: {}", r.text());
        let j = body_json(&r);
        assert!(j["message"].as_str().unwrap().contains(msg), "{ct}: {j}");
        assert!(j["error_code"].is_string());
    }
    assert_eq!(
        body_json(&s.json(r#"{"instances": [[1,2,3,4]]}"#).await)["predictions"][0],
        "setosa",
        "still serving after all that"
    );
    let m = Scrape::parse(&s.get("/metrics", &[]).await.text());
    assert_eq!(m.variants["a"].client_errors, n);
    s.stop().await;
}

#[tokio::test]
async fn a_too_large_body_is_read_before_the_413_so_the_connection_serves_the_next_request() {
    let mut opts = options();
    opts.max_body_bytes = 64 << 10;
    let s = Server::start(opts, vec![variant("a", "a", 100)]).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let answers = tokio::task::spawn_blocking(move || {
        use std::io::{BufRead, BufReader, Read, Write};
        let c = std::net::TcpStream::connect(addr).unwrap();
        let mut w = c.try_clone().unwrap();
        let mut r = BufReader::new(c);
        // One response: its head, then exactly its Content-Length of body.
        let mut read_one = || {
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 {
                    return head + "<connection closed>";
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            head + &String::from_utf8_lossy(&body)
        };
        let big = vec![b' '; 200 << 10];
        w.write_all(
            format!(
                "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                big.len()
            )
            .as_bytes(),
        )
        .unwrap();
        w.write_all(&big).unwrap();
        let first = read_one();
        let ok = br#"{"instances": [[1,2,3,4]]}"#;
        w.write_all(
            format!(
                "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                ok.len()
            )
            .as_bytes(),
        )
        .unwrap();
        w.write_all(ok).unwrap();
        (first, read_one())
    })
    .await
    .unwrap();
    assert!(answers.0.starts_with("HTTP/1.1 413"), "{}", answers.0);
    assert!(answers.0.contains("larger than the limit"), "{}", answers.0);
    assert!(
        !answers.0.to_ascii_lowercase().contains("connection: close"),
        "{}",
        answers.0
    );
    assert!(
        answers.1.starts_with("HTTP/1.1 200"),
        "the same connection serves on: {}",
        answers.1
    );
    assert!(answers.1.contains("setosa"), "{}", answers.1);
    s.stop().await;
}

#[tokio::test]
async fn a_failing_model_answers_500_and_counts_it() {
    let s = Server::start(options(), vec![variant("f", "fail", 100)]).await;
    let r = s.json(r#"{"instances": [[1,2,3,4]]}"#).await;
    assert_eq!(r.status, 500);
    assert!(
        body_json(&r)["message"]
            .as_str()
            .unwrap()
            .contains("injected failure")
    );
    let m = Scrape::parse(&s.get("/metrics", &[]).await.text());
    assert_eq!(m.variants["f"].error_rate(), 1.0);
    s.stop().await;
}

#[tokio::test]
async fn traffic_split_follows_the_weights() {
    let s = Server::start(
        options(),
        vec![variant("blue", "a", 75), variant("green", "b", 25)],
    )
    .await;
    let mut green = 0;
    for _ in 0..400 {
        let r = s.json(r#"{"instances": [[1,2,3,4]]}"#).await;
        if body_json(&r)["predictions"][0] == "versicolor" {
            green += 1;
        }
    }
    assert_eq!(green, 100);
    // A variant by name, also with weight 0.
    let mut o = options();
    o.control_token = Some("ctl".into());
    let s2 = Server::start(o, vec![variant("blue", "a", 100), variant("green", "b", 0)]).await;
    for _ in 0..20 {
        assert_eq!(
            body_json(&s2.json(r#"[[1,2,3,4]]"#).await)["predictions"][0],
            "setosa"
        );
    }
    let r = s2
        .post(
            "application/json",
            "[[1,2,3,4]]",
            &[("x-mlctl-variant", "green")],
        )
        .await;
    assert_eq!(body_json(&r)["predictions"][0], "versicolor");
    let r = s2
        .post(
            "application/json",
            "[[1,2,3,4]]",
            &[("x-mlctl-variant", "nope")],
        )
        .await;
    assert_eq!(r.status, 400);
    let m = Scrape::parse(&s.get("/metrics", &[]).await.text());
    assert_eq!((m.variants["blue"].ok, m.variants["green"].ok), (300, 100));
    s.stop().await;
    s2.stop().await;
}

#[tokio::test]
async fn bearer_token_guards_invocations_and_metrics() {
    let mut o = options();
    o.auth_token = Some("s3cret".into());
    let s = Server::start(o, vec![variant("a", "a", 100)]).await;
    let body = r#"[[1,2,3,4]]"#;
    assert_eq!(s.post("application/json", body, &[]).await.status, 401);
    assert_eq!(
        s.post(
            "application/json",
            body,
            &[("authorization", "Bearer wrong")]
        )
        .await
        .status,
        401
    );
    assert_eq!(
        s.post("application/json", body, &[("authorization", "s3cret")])
            .await
            .status,
        401
    );
    assert_eq!(
        s.post(
            "application/json",
            body,
            &[("authorization", "Bearer s3cret")]
        )
        .await
        .status,
        200
    );
    assert_eq!(s.get("/metrics", &[]).await.status, 401);
    let m = s
        .get("/metrics", &[("authorization", "Bearer s3cret")])
        .await;
    assert!(
        m.text().contains("mlctl_unauthorized_total 4"),
        "{}",
        m.text()
    );
    assert_eq!(
        s.get("/ping", &[]).await.status,
        200,
        "health checks stay open"
    );
    s.stop().await;
}

/// A rotation: `PUT /-/auth` with `keepPrevious` accepts the new token beside the old, then
/// without it the new one only; only the control token may change it, the body is never
/// echoed, and a server started open stays open.
#[tokio::test]
async fn the_bearer_token_rotates_without_a_restart() {
    let mut o = options();
    o.auth_token = Some("token-old".into());
    o.control_token = Some("control-token".into());
    let s = Server::start(o, vec![variant("a", "a", 100)]).await;
    let status = |token: &'static str| {
        let s = &s;
        async move {
            let auth = format!("Bearer {token}");
            s.post(
                "application/json",
                "[[1,2,3,4]]",
                &[("authorization", &auth)],
            )
            .await
            .status
        }
    };
    let put = |token: &'static str, body: serde_json::Value| {
        let s = &s;
        async move {
            let auth = format!("Bearer {token}");
            s.client
                .send(
                    "PUT",
                    &format!("{}/-/auth", s.base),
                    &[
                        ("content-type", "application/json"),
                        ("authorization", &auth),
                    ],
                    serde_json::to_vec(&body).unwrap().into(),
                    Duration::from_secs(60),
                )
                .await
                .expect("answer")
        }
    };
    assert_eq!(status("token-old").await, 200);
    assert_eq!(status("token-new").await, 401);

    // Neither the client token nor a wrong one changes the token.
    for who in ["token-old", "wrong"] {
        let r = put(who, serde_json::json!({"token": "token-evil"})).await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    assert_eq!(status("token-evil").await, 401);

    // Step one: both work.
    let r = put(
        "control-token",
        serde_json::json!({"token": "token-new", "keepPrevious": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(body_json(&r), serde_json::json!({"accepted": 2}));
    assert!(!r.text().contains("token-"), "{}", r.text());
    assert_eq!(status("token-old").await, 200);
    assert_eq!(status("token-new").await, 200);
    // Repeated (a re-run of an interrupted rotation): still both, never a third.
    let r = put(
        "control-token",
        serde_json::json!({"token": "token-new", "keepPrevious": true}),
    )
    .await;
    assert_eq!(body_json(&r), serde_json::json!({"accepted": 2}));
    assert_eq!(status("token-old").await, 200);

    // Step two: the new one only.
    let r = put("control-token", serde_json::json!({"token": "token-new"})).await;
    assert_eq!(body_json(&r), serde_json::json!({"accepted": 1}));
    assert_eq!(status("token-old").await, 401);
    assert_eq!(status("token-new").await, 200);

    // A broken body is refused without being quoted back.
    let r = put("control-token", serde_json::json!({"tokn": "token-typo"})).await;
    assert_eq!(r.status, 400);
    assert!(!r.text().contains("token-typo"), "{}", r.text());
    let r = put("control-token", serde_json::json!({"token": " "})).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(status("token-new").await, 200);
    s.stop().await;

    // Started open: a token cannot be switched on under running clients.
    let mut o = options();
    o.control_token = Some("control-token".into());
    let s = Server::start(o, vec![variant("a", "a", 100)]).await;
    let r = s
        .client
        .send(
            "PUT",
            &format!("{}/-/auth", s.base),
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer control-token"),
            ],
            serde_json::to_vec(&serde_json::json!({"token": "t"}))
                .unwrap()
                .into(),
            Duration::from_secs(60),
        )
        .await
        .expect("answer");
    assert_eq!(r.status, 409);
    assert!(
        r.text().contains("started without a bearer token"),
        "{}",
        r.text()
    );
    assert_eq!(s.json("[[1,2,3,4]]").await.status, 200);
    s.stop().await;
}

/// `/health` is open, so it says only what serves and whether it is ready; the model
/// directory, command and code directory are for the holder of the control token.
#[tokio::test]
async fn health_without_the_control_token_shows_no_paths_or_commands() {
    let mut o = options();
    o.auth_token = Some("client-token".into());
    o.control_token = Some("control-token".into());
    let mut script = variant("b", "b", 0);
    script.command = Some("python3 serve.py --secret-flag".into());
    script.code_dir = Some(PathBuf::from("/srv/code"));
    // Script variants need python; the server is tested with model variants and the script's
    // fields through the two views' types below.
    let s = Server::start(o, vec![variant("a", "a", 100), variant("b", "b", 0)]).await;
    let open = [
        vec![],
        vec![("authorization", "Bearer wrong")],
        // The client token opens /invocations, not the server's configuration.
        vec![("authorization", "Bearer client-token")],
    ];
    for headers in &open {
        let r = s.get("/health", headers).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let h = body_json(&r);
        assert_eq!(h["status"], "healthy");
        assert_eq!(
            h["variants"],
            serde_json::json!([
                {"name": "a", "model": "iris", "version": "a", "weight": 100, "healthy": true},
                {"name": "b", "model": "iris", "version": "b", "weight": 0, "healthy": true},
            ]),
            "{headers:?}"
        );
        assert!(!r.text().contains("/models"), "{}", r.text());
    }
    let r = s
        .get("/health", &[("authorization", "Bearer control-token")])
        .await;
    let h = body_json(&r);
    assert_eq!(h["variants"][0]["modelDir"], "/models/a", "{h}");
    assert_eq!(h["variants"][0]["healthy"], true, "{h}");
    // The full view carries a script variant's command and code directory.
    let full = serde_json::to_value(mlctl_serve::VariantStatus {
        config: script.clone(),
        healthy: true,
    })
    .unwrap();
    let summary = serde_json::to_value(mlctl_serve::VariantHealth::from(
        &mlctl_serve::VariantStatus {
            config: script,
            healthy: true,
        },
    ))
    .unwrap();
    assert_eq!(full["command"], "python3 serve.py --secret-flag");
    assert_eq!(
        summary,
        serde_json::json!({"name": "b", "model": "iris", "version": "b", "weight": 0, "healthy": true})
    );
    s.stop().await;
}

/// With `reuse_port`, a second server binds the first one's port; without it, it cannot. A
/// control listener answers on its own port and is announced while the server runs.
#[tokio::test]
async fn servers_share_a_port_with_reuse_port_and_announce_their_control_port() {
    let dir = tempfile::tempdir().unwrap();
    let announce = dir.path().join("instances");
    let mut o = options();
    o.reuse_port = true;
    o.control = Some(mlctl_serve::config::ControlListener {
        dir: announce.clone(),
    });
    let first = Server::start(o, vec![variant("a", "a", 100)]).await;
    let addr = first.running.as_ref().unwrap().addr;
    let control = first.running.as_ref().unwrap().control_addr.unwrap();
    assert_ne!(control.port(), addr.port());
    let announced = mlctl_serve::config::Announcement::read_all(&announce);
    assert_eq!(announced.len(), 1);
    assert_eq!(announced[0].pid, std::process::id());
    assert_eq!(announced[0].control, control);
    // The control port answers the same routes as the shared one.
    let r = first
        .client
        .get(
            &format!("http://{control}/ping"),
            &[],
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    let mut lone = options();
    lone.addr = addr;
    let e = mlctl_serve::start(lone, vec![variant("b", "b", 100)])
        .await
        .err()
        .expect("a server without reuse_port cannot share the port");
    assert!(e.to_string().contains("cannot listen on"), "{e}");
    let mut sharing = options();
    sharing.addr = addr;
    sharing.reuse_port = true;
    let second = Server::start(sharing, vec![variant("b", "b", 100)]).await;
    assert_eq!(second.running.as_ref().unwrap().addr, addr);
    second.stop().await;
    first.stop().await;
    assert!(
        mlctl_serve::config::Announcement::read_all(&announce).is_empty(),
        "a clean stop removes the announcement"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_under_load_loses_no_request() {
    let mut o = options();
    o.control_token = Some("ctl".into());
    let s = Arc::new(Server::start(o, vec![variant("a", "a", 100)]).await);
    let clients = 8;
    let per_client = 300;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = [0usize; 2];
            for _ in 0..per_client {
                let r = s.json(r#"{"instances": [[1,2,3,4]]}"#).await;
                assert_eq!(r.status, 200, "{}", r.text());
                match body_json(&r)["predictions"][0].as_str() {
                    Some("setosa") => seen[0] += 1,
                    Some("versicolor") => seen[1] += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
            seen
        }));
    }
    // Swap back and forth while the clients run (a, b, a+b split, ...).
    let configs = [
        vec![variant("b", "b", 100)],
        vec![variant("a", "a", 50), variant("b", "b", 50)],
        vec![variant("a", "a", 100)],
    ];
    let mut swaps = 0;
    while tasks.iter().any(|t| !t.is_finished()) && swaps < 300 {
        let r = s.put_variants("ctl", &configs[swaps % 3]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        swaps += 1;
    }
    let mut total = 0;
    for t in tasks {
        let seen = t.await.unwrap();
        total += seen[0] + seen[1];
    }
    assert_eq!(total, clients * per_client);
    assert!(swaps > 0);
    // A bad swap changes nothing.
    let r = s.put_variants("ctl", &[variant("x", "missing", 100)]).await;
    assert_eq!(r.status, 400);
    assert!(
        body_json(&r)["message"]
            .as_str()
            .unwrap()
            .contains("cannot load the model")
    );
    assert_eq!(
        s.put_variants("wrong", &[variant("a", "a", 100)])
            .await
            .status,
        401
    );
    let info: mlctl_serve::ServerInfo =
        serde_json::from_slice(&s.get("/-/variants", &[]).await.body).unwrap();
    assert_eq!(info.pid, std::process::id());
    assert!(!info.variants.is_empty());
    Arc::try_unwrap(s).ok().unwrap().stop().await;
}

#[tokio::test]
async fn capture_writes_sampled_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options();
    o.capture = Some(mlctl_serve::capture::CaptureConfig::new(dir.path(), 50.0));
    let s = Server::start(o, vec![variant("a", "a", 100)]).await;
    for i in 0..10 {
        let r = s
            .json(&format!("{{\"instances\": [[{i}, 2, 3, 4]]}}"))
            .await;
        assert_eq!(r.status, 200);
    }
    s.stop().await;
    let lines = captured_records(dir.path(), 5).await;
    assert_eq!(lines.len(), 5);
    let first = &lines[0];
    assert_eq!(first["model"], "iris");
    assert_eq!(first["version"], "a");
    assert_eq!(
        first["columns"],
        serde_json::json!(["sepal_length", "sepal_width", "petal_length", "petal_width"])
    );
    assert_eq!(first["rows"], serde_json::json!([[1, 2, 3, 4]]));
    assert_eq!(first["predictions"], serde_json::json!(["setosa"]));
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    assert!(first["latencyMs"].is_number());
}

/// Every captured request has an id: the client's `x-request-id`, or one the server made;
/// it is what `mlctl monitor feedback` joins labels on.
#[tokio::test]
async fn captured_requests_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options();
    o.capture = Some(mlctl_serve::capture::CaptureConfig::new(dir.path(), 100.0));
    let s = Server::start(o, vec![variant("a", "a", 100)]).await;
    let row = "{\"instances\": [[1, 2, 3, 4]]}";
    let r = s
        .post("application/json", row, &[("x-request-id", "client-7")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(s.json(row).await.status, 200);
    s.stop().await;
    let ids: Vec<String> = captured_records(dir.path(), 2)
        .await
        .iter()
        .map(|v| v["requestId"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], "client-7", "the client's id is kept");
    assert!(ids[1].len() > 3 && ids[1] != ids[0], "one is made: {ids:?}");
}

fn have_python() -> bool {
    let ok = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "python3 is required for script-mode tests under CI"
    );
    ok
}

fn script_variant(name: &str, weight: u32, fail: bool) -> VariantConfig {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let command = if fail {
        "FAIL=1 exec python3 script_server.py"
    } else {
        "exec python3 script_server.py"
    };
    VariantConfig {
        name: name.into(),
        model: "sum".into(),
        version: name.into(),
        weight,
        model_dir: Some(fixtures.clone()),
        command: Some(command.into()),
        code_dir: Some(fixtures),
    }
}

#[tokio::test]
async fn script_mode_is_fronted_with_metrics_capture_and_split() {
    if !have_python() {
        eprintln!("skipped: no python3");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut o = options();
    o.capture = Some(mlctl_serve::capture::CaptureConfig::new(dir.path(), 100.0));
    o.control_token = Some("ctl".into());
    let s = Server::start(
        o,
        vec![
            script_variant("ok", 50, false),
            script_variant("bad", 50, true),
        ],
    )
    .await;
    let mut ok = 0;
    let mut failed = 0;
    for _ in 0..10 {
        let r = s.json(r#"{"instances": [[1, 2], [3, 4]]}"#).await;
        match r.status {
            200 => {
                assert_eq!(body_json(&r)["predictions"], serde_json::json!([3, 7]));
                ok += 1;
            }
            500 => failed += 1,
            other => panic!("{other}: {}", r.text()),
        }
    }
    assert_eq!((ok, failed), (5, 5));
    let m = Scrape::parse(&s.get("/metrics", &[]).await.text());
    assert_eq!(m.variants["bad"].error_rate(), 1.0);
    assert_eq!(m.variants["ok"].error_rate(), 0.0);
    // Swap the failing script out: its child is stopped, the other keeps running.
    let r = s
        .put_variants("ctl", &[script_variant("ok", 100, false)])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..5 {
        assert_eq!(s.json(r#"{"instances": [[1, 2]]}"#).await.status, 200);
    }
    s.stop().await;
    let records = captured_records(dir.path(), 15).await;
    let first = &records[0];
    assert_eq!(
        first["request"],
        serde_json::json!({"instances": [[1, 2], [3, 4]]})
    );
}

/// The records captured under `dir` (every writer, every file), oldest first, once there are
/// at least `n` (or what there is after a generous deadline).
async fn captured_records(dir: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut records: Vec<serde_json::Value> = mlctl_serve::capture::capture_files(dir)
            .iter()
            .flat_map(|f| mlctl_serve::capture::read_records(f).unwrap_or_default())
            .collect();
        records.sort_by(|a, b| a["time"].as_str().cmp(&b["time"].as_str()));
        if records.len() >= n || std::time::Instant::now() > deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// --- Hostile clients (issue 11): every connection is bounded in time and number, and the
// server keeps answering valid requests while it sheds the rest.

use mlctl_serve::config::ConnectionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous bound for "the server acts within": the limits in these tests are 1 s.
const WITHIN: Duration = Duration::from_secs(10);

fn limited(limits: ConnectionLimits) -> ServerOptions {
    let mut o = options();
    o.limits = limits;
    o
}

impl Server {
    /// A raw connection, for a client that misbehaves.
    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.running.as_ref().unwrap().addr)
            .await
            .expect("connects")
    }

    /// A valid prediction still succeeds.
    async fn still_predicts(&self) {
        let r = self.json(r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

/// Whether the server closes `conn` within `within` (reading whatever it still sends).
async fn closed_within(conn: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Sends one request and reads its answer (head and `Content-Length` body), within `within`.
async fn exchange(conn: &mut TcpStream, request: &str, within: Duration) -> Option<String> {
    conn.write_all(request.as_bytes()).await.ok()?;
    read_answer(conn, within).await
}

async fn read_answer(conn: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    return Some(text);
                }
            }
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
    .flatten()
}

const PING: &str = "GET /ping HTTP/1.1\r\nhost: test\r\n\r\n";

#[tokio::test]
async fn slowloris_headers_are_cut_off_at_the_header_timeout() {
    let s = Server::start(
        limited(ConnectionLimits {
            header_timeout_ms: 1000,
            ..ConnectionLimits::default()
        }),
        vec![variant("a", "a", 1)],
    )
    .await;
    // A head of 100 bytes at one byte per 250 ms would take 25 s to arrive.
    let head = format!(
        "GET /ping HTTP/1.1\r\nhost: test\r\nx-slow: {}\r\n\r\n",
        "z".repeat(60)
    );
    let mut conn = s.connect().await;
    let (mut rd, mut wr) = conn.split();
    let dribble = async {
        for b in head.as_bytes() {
            if wr.write_all(&[*b]).await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        true
    };
    let closed = async {
        let mut buf = [0u8; 256];
        matches!(rd.read(&mut buf).await, Ok(0) | Err(_))
    };
    let outcome = tokio::time::timeout(WITHIN, async {
        tokio::select! {
            sent_all = dribble => !sent_all,
            closed = closed => closed,
        }
    })
    .await;
    assert_eq!(outcome, Ok(true), "the slow connection is closed");

    // A connection that sends nothing at all is closed too.
    let mut silent = s.connect().await;
    assert!(closed_within(&mut silent, WITHIN).await);
    s.still_predicts().await;
    s.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let s = Server::start(
        limited(ConnectionLimits {
            // Longer than the bound below: only the idle timeout can close it in time.
            header_timeout_ms: 60_000,
            idle_timeout_ms: 1000,
            ..ConnectionLimits::default()
        }),
        vec![variant("a", "a", 1)],
    )
    .await;
    let mut conn = s.connect().await;
    let answer = exchange(&mut conn, PING, WITHIN).await.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        closed_within(&mut conn, WITHIN).await,
        "idle connection closed"
    );
    s.still_predicts().await;
    s.stop().await;
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_and_the_connection_closed() {
    let s = Server::start(
        limited(ConnectionLimits {
            body_timeout_ms: 1000,
            ..ConnectionLimits::default()
        }),
        vec![variant("a", "a", 1)],
    )
    .await;
    let mut conn = s.connect().await;
    // Promises 100 bytes, sends 10, then nothing.
    let stalled = "POST /invocations HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"instance";
    let answer = exchange(&mut conn, stalled, WITHIN)
        .await
        .expect("answered");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let json: serde_json::Value = serde_json::from_str(body).expect("JSON error body");
    assert_eq!(json["error_code"], "REQUEST_TIMEOUT");
    assert!(closed_within(&mut conn, WITHIN).await);
    s.still_predicts().await;
    s.stop().await;
}

#[tokio::test]
async fn over_the_connection_cap_a_connection_waits_while_open_ones_are_served() {
    let s = Server::start(
        limited(ConnectionLimits {
            max_connections: 2,
            ..ConnectionLimits::default()
        }),
        vec![variant("a", "a", 1)],
    )
    .await;
    let mut first = s.connect().await;
    let mut second = s.connect().await;
    for conn in [&mut first, &mut second] {
        let a = exchange(conn, PING, WITHIN).await.expect("answered");
        assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    }
    // The third is not accepted while two are open...
    let mut third = s.connect().await;
    third.write_all(PING.as_bytes()).await.unwrap();
    assert_eq!(
        read_answer(&mut third, Duration::from_millis(500)).await,
        None,
        "over the cap: not served yet"
    );
    // ...while the open ones go on being served...
    let a = exchange(&mut second, PING, WITHIN).await.expect("answered");
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    // ...and it is served as soon as one closes.
    drop(first);
    let a = read_answer(&mut third, WITHIN).await.expect("answered");
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    drop((second, third));
    s.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_the_json_error_shape() {
    let s = Server::start(options(), vec![variant("a", "a", 1)]).await;
    let r = s.get("/nowhere", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(body_json(&r)["error_code"], "NOT_FOUND");
    assert_eq!(r.content_type.as_deref(), Some("application/json"));

    let r = s.get("/invocations", &[]).await;
    assert_eq!(r.status, 405);
    let json = body_json(&r);
    assert_eq!(json["error_code"], "METHOD_NOT_ALLOWED");
    assert!(json["message"].as_str().unwrap().contains("/invocations"));
    assert_eq!(r.content_type.as_deref(), Some("application/json"));

    let mut conn = s.connect().await;
    let a = exchange(
        &mut conn,
        "DELETE /ping HTTP/1.1\r\nhost: test\r\n\r\n",
        WITHIN,
    )
    .await
    .expect("answered");
    assert!(a.starts_with("HTTP/1.1 405"), "{a}");
    assert!(
        a.to_ascii_lowercase().contains("\r\nallow: get,head"),
        "{a}"
    );
    s.still_predicts().await;
    s.stop().await;
}

/// A boosted two-class model and a logistic regression on the same small table, saved.
fn explained_models(dir: &Path) -> (PathBuf, PathBuf) {
    use mlctl_ml::table::{ColumnData, Table};
    let n = 300;
    let x: Vec<f64> = (0..n).map(|i| (i % 50) as f64).collect();
    let z: Vec<f64> = (0..n).map(|i| ((i * 7) % 13) as f64).collect();
    let c: Vec<Option<String>> = (0..n)
        .map(|i| Some(["red", "blue", "green"][i % 3].to_string()))
        .collect();
    let y: Vec<Option<String>> = (0..n)
        .map(|i| {
            let yes =
                (x[i] > 20.0) != (i % 9 == 0) || c[i].as_deref() == Some("green") && z[i] > 9.0;
            Some(if yes { "yes" } else { "no" }.to_string())
        })
        .collect();
    let t = Table::from_columns([
        ("x", ColumnData::Float(x)),
        ("z", ColumnData::Float(z)),
        ("c", ColumnData::Str(c)),
        ("y", ColumnData::Str(y)),
    ])
    .unwrap();
    let save = |algorithm, hp: serde_json::Value, name: &str| {
        let hp = serde_json::from_value(hp).unwrap();
        let m = mlctl_ml::train(mlctl_ml::TrainRequest {
            algorithm,
            hyperparameters: &hp,
            train: &t,
            validation: None,
            target: Some("y"),
            seed: 1,
            schema: None,
        })
        .unwrap();
        let d = dir.join(name);
        m.save(&d).unwrap();
        d
    };
    (
        save(
            mlctl_spec::Algorithm::GradientBoosting,
            serde_json::json!({"n_estimators": 40}),
            "gb",
        ),
        save(
            mlctl_spec::Algorithm::LogisticRegression,
            serde_json::json!({}),
            "lr",
        ),
    )
}

async fn ask(s: &Server, body: &'static str, query: &str, accept: &str) -> Response {
    s.client
        .send(
            "POST",
            &format!("{}/invocations?{query}", s.base),
            &[("content-type", "application/json"), ("accept", accept)],
            Bytes::from(body),
            Duration::from_secs(60),
        )
        .await
        .expect("answer")
}

#[tokio::test]
async fn explain_true_answers_contributions_that_add_up_to_the_log_odds() {
    let tmp = tempfile::tempdir().unwrap();
    let (gb, lr) = explained_models(tmp.path());
    let mut o = ServerOptions::new(mlctl_serve::model::default_loader());
    o.addr = "127.0.0.1:0".parse().unwrap();
    o.threads = 2;
    let mut v = VariantConfig::model_dir("gb", gb, 100);
    v.model = "m".into();
    v.version = "1".into();
    let s = Server::start(o, vec![v]).await;
    let body = r#"{"dataframe_split": {"columns": ["x", "z", "c"], "data": [[3, 10, "green"], [42, 1, "red"], [25, 12, "blue"]]}}"#;
    let r = ask(
        &s,
        body,
        "predict_method=predict_proba&explain=true",
        "application/json",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = body_json(&r);
    let e = &v["explanations"];
    assert_eq!(e["space"], "margin", "{v}");
    assert_eq!(e["outputs"], serde_json::json!(["yes"]));
    assert_eq!(e["features"], serde_json::json!(["x", "z", "c"]));
    let base = e["base_values"][0].as_f64().unwrap();
    let yes = v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c == "yes")
        .unwrap();
    for (row, p) in v["predictions"].as_array().unwrap().iter().enumerate() {
        let p = p[yes].as_f64().unwrap();
        let contributions = e["contributions"][row].as_array().unwrap();
        assert_eq!(contributions.len(), 3);
        let sum: f64 = contributions.iter().map(|c| c[0].as_f64().unwrap()).sum();
        let log_odds = (p / (1.0 - p)).ln();
        assert!(
            (base + sum - log_odds).abs() < 1e-6,
            "row {row}: {base} + {sum} vs {log_odds}"
        );
    }
    // Plain predictions carry none; CSV answers cannot carry them.
    let plain = body_json(&ask(&s, body, "", "application/json").await);
    assert!(plain.get("explanations").is_none(), "{plain}");
    let csv = ask(&s, body, "explain=true", "text/csv").await;
    assert_eq!(csv.status, 400);
    assert!(
        csv.text().contains("explanations come as JSON"),
        "{}",
        csv.text()
    );
    s.stop().await;

    // A model that is not a tree model says so.
    let mut o = ServerOptions::new(mlctl_serve::model::default_loader());
    o.addr = "127.0.0.1:0".parse().unwrap();
    o.threads = 1;
    let mut v = VariantConfig::model_dir("lr", lr, 100);
    v.model = "m".into();
    v.version = "1".into();
    let s = Server::start(o, vec![v]).await;
    let r = ask(&s, body, "explain=true", "application/json").await;
    assert_eq!(r.status, 400);
    assert!(
        r.text()
            .contains("cannot explain: explanations are computed for tree models"),
        "{}",
        r.text()
    );
    s.stop().await;
}
