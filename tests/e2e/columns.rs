//! Column roles and the model's signature, through the CLI and HTTP as a user meets them: an
//! id column that is never a feature, an int column that is categorical, a text category, an
//! int 0/1 label; the endpoint enforces the signature (or warns) and returns probabilities.

use crate::common::*;

/// A loans project on the local target: `loan_id` (role id, unique per row), `term_months`
/// (int, categorical over 12/24/36/60), `grade` (text category), `income` and an int 0/1
/// label `defaulted`. Destroyed on drop.
struct Loans {
    p: TestProject,
    port: u16,
}

const DATA: &str = "\
apiVersion: mlctl/v1
kind: Dataset
metadata:
  name: loans
spec:
  source: data/loans.csv
  target: defaulted
  schema:
    columns:
      - {name: loan_id, type: string, role: id}
      - {name: term_months, type: int, categories: [12, 24, 36, 60]}
      - {name: grade, type: category, categories: [a, b, c]}
      - {name: income, type: float, min: 0, max: 20}
      - {name: defaulted, type: int}
  split:
    train: 0.8
    test: 0.2
    stratify: defaulted
---
apiVersion: mlctl/v1
kind: TrainingJob
metadata:
  name: loans-train
spec:
  dataset: loans
  algorithm: logistic_regression
---
apiVersion: mlctl/v1
kind: Model
metadata:
  name: loans
spec:
  from: loans-train
  stage: production
  approval: auto
";

impl Loans {
    fn new() -> Loans {
        let p = TestProject::empty();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        p.write(
            "mlctl.yaml",
            "apiVersion: mlctl/v1\nkind: Project\nmetadata: {name: loans}\nspec:\n  manifests: [ml/]\n  defaultTarget: local\n  targets:\n    local: {provider: local}\n",
        );
        // Defaults follow term and grade; every loan id is unique, so an id seen in training
        // tells nothing about a new loan.
        let mut csv = String::from("loan_id,term_months,grade,income,defaulted\n");
        for i in 0..240 {
            let term = [12, 24, 36, 60][i % 4];
            let grade = ["a", "b", "c"][(i / 4) % 3];
            let income = (i % 17) as f64 + 0.5;
            let defaulted = u8::from(term >= 36 && grade != "a");
            csv.push_str(&format!("L{i:04},{term},{grade},{income},{defaulted}\n"));
        }
        p.write("data/loans.csv", &csv);
        p.write("ml/loans.yaml", DATA);
        p.write(
            "ml/endpoint.yaml",
            &format!(
                "apiVersion: mlctl/v1\nkind: Endpoint\nmetadata: {{name: loans}}\nspec:\n  model: loans\n  port: {port}\n  strategy: {{type: all-at-once}}\n"
            ),
        );
        std::fs::write(p.path().join(".gitignore"), ".mlctl/\n").unwrap();
        p.git(&["init", "-q", "-b", "main"]);
        p.git(&["config", "user.email", "test@example.com"]);
        p.git(&["config", "user.name", "Test"]);
        p.commit_all("loans on local");
        Loans { p, port }
    }

    /// `POST path` with a JSON body: (status, headers, body as JSON).
    fn post(&self, path: &str, body: &str) -> (u16, String, serde_json::Value) {
        use std::io::{Read, Write};
        let mut s =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("endpoint listens");
        write!(s, "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {out}"));
        (status, head.to_ascii_lowercase(), json)
    }
}

impl Drop for Loans {
    fn drop(&mut self) {
        let _ = self.p.mlctl(&["destroy", "--auto-approve"]);
        kill_endpoints(&self.p.path().join(".mlctl/local"));
    }
}

/// A new loan, with an id training never saw.
const NEW_LOAN: &str = r#"{"loan_id": "NEW-0001", "term_months": 60, "grade": "c", "income": 4.0}"#;

#[test]
fn roles_categories_and_the_signature_from_training_to_the_endpoint() {
    let t = Loans::new();
    t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);

    // The id is not a feature, so an id unseen in training predicts; the int 0/1 label comes
    // back as an int.
    let (status, _, body) = t.post(
        "/invocations",
        &format!(r#"{{"dataframe_records": [{NEW_LOAN}, {{"loan_id": "NEW-0002", "term_months": 12, "grade": "a", "income": 9.0}}]}}"#),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["predictions"], serde_json::json!([1, 0]));

    // An unknown category of the int column, in the second row: a 400 naming row, column
    // and value. The text category likewise.
    let (status, _, body) = t.post(
        "/invocations",
        &format!(r#"{{"dataframe_records": [{NEW_LOAN}, {{"loan_id": "X", "term_months": 48, "grade": "a", "income": 1.0}}]}}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["message"],
        "row 1, column `term_months`: unknown category \"48\" (known: 12, 24, 36, 60)"
    );
    let (status, _, body) = t.post(
        "/invocations",
        r#"{"dataframe_split": {"columns": ["loan_id", "term_months", "grade", "income"], "data": [["X", 24, "z", 1.0]]}}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["message"],
        "row 0, column `grade`: unknown category \"z\" (known: a, b, c)"
    );
    // A wrong type: 400, naming the row and column.
    let (status, _, body) = t.post(
        "/invocations",
        r#"{"dataframe_records": [{"term_months": 12, "grade": "a", "income": "lots"}]}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["message"],
        "row 0, column `income`: expected a number, got the string \"lots\""
    );

    // Probabilities, as MLflow's `predict_method` parameter asks: one list per row, in the
    // order of `classes`, which keep the label's type.
    let (status, _, body) = t.post(
        "/invocations",
        &format!(r#"{{"dataframe_records": [{NEW_LOAN}], "params": {{"predict_method": "predict_proba"}}}}"#),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["classes"], serde_json::json!([0, 1]));
    let probs: Vec<f64> = body["predictions"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    assert_eq!(probs.len(), 2);
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{probs:?}");
    assert!(
        probs[1] > 0.5,
        "a 60-month grade-c loan defaults: {probs:?}"
    );
    // The same through the query string (for CSV bodies).
    let (status, _, body) = t.post(
        "/invocations?predict_method=predict_proba",
        &format!(r#"{{"dataframe_records": [{NEW_LOAN}]}}"#),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["predictions"][0].as_array().unwrap().len(), 2);

    // `models show` prints the signature.
    let run = t.p.mlctl(&["models", "show", "loans"]).expect_code(0);
    for line in [
        "  signature:",
        "term_months  int, categorical: 12, 24, 36, 60",
        "grade        category, categorical: a, b, c",
        "income       float, 0..20",
        "not inputs: loan_id (id)",
        "output: defaulted, 2 classes (int): 0, 1",
    ] {
        assert!(run.stdout.contains(line), "{line:?} in\n{}", run.stdout);
    }
    assert!(!run.stdout.contains("loan_id  "), "{}", run.stdout);
    let json =
        t.p.mlctl(&["models", "show", "loans", "-o", "json"])
            .expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let inputs = &v["versions"][0]["signature"]["inputs"];
    assert_eq!(inputs[0]["name"], "term_months");
    assert_eq!(inputs[0]["storage"], "int");

    // `enforce: warn`: the same unknown category is answered, the value taken as missing,
    // and says so in a header and in the endpoint's status.
    t.p.replace(
        "ml/endpoint.yaml",
        "  strategy:",
        "  enforce: warn\n  strategy:",
    );
    t.p.commit_all("warn instead of refusing");
    t.p.mlctl(&["apply", "--auto-approve"]).expect_code(0);
    let (status, head, body) = t.post(
        "/invocations",
        r#"{"dataframe_records": [{"term_months": 48, "grade": "a", "income": 1.0}]}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("x-mlctl-signature-warnings: 1"), "{head}");
    assert!(
        head.contains(
            "x-mlctl-signature-warning: row 0, column `term_months`: unknown category \"48\""
        ),
        "{head}"
    );
    let status = t.p.mlctl(&["status", "-o", "json"]).expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let endpoint = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "Endpoint/loans")
        .unwrap()
        .clone();
    assert_eq!(endpoint["health"], "healthy");
    assert!(
        endpoint["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("1 request broke the model's input signature")),
        "{endpoint}"
    );
}

/// Script-mode models read requests themselves: an endpoint that asks mlctl to enforce the
/// signature for one is refused at plan, with what to do instead.
#[test]
fn enforcing_a_signature_for_a_script_mode_model_is_refused_at_plan() {
    let t = Loans::new();
    t.p.replace(
        "ml/loans.yaml",
        "  algorithm: logistic_regression\n",
        "  command: python train.py\n  code: src\n",
    );
    t.p.write("src/train.py", "print('training')\n");
    t.p.replace(
        "ml/endpoint.yaml",
        "  strategy:",
        "  enforce: strict\n  strategy:",
    );
    t.p.commit_all("script mode");
    let run = t.p.mlctl(&["plan"]).expect_code(1);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains("ml/endpoint.yaml:")
            && out.contains("mlctl cannot check them against a signature"),
        "{out}"
    );
    assert!(out.contains("set `enforce: off`"), "{out}");
}

/// On SageMaker, what its built-in algorithms and endpoints cannot do is refused at plan
/// (here `validate --target`, which needs no credentials): sample weights and an endpoint
/// that warns instead of enforcing. An int column taken as categorical is mlctl's own
/// preprocessing there too, so it is not refused.
#[test]
fn sagemaker_refuses_weights_and_warn_enforcement_at_plan() {
    let t = Loans::new();
    t.p.write(
        "mlctl.yaml",
        "apiVersion: mlctl/v1\nkind: Project\nmetadata: {name: loans}\nspec:\n  manifests: [ml/]\n  defaultTarget: local\n  targets:\n    local: {provider: local}\n    staging: {provider: sagemaker, region: eu-west-1, roleArn: \"${env:MLCTL_SM_ROLE}\", bucket: \"s3://loans-bucket/loans\"}\n",
    );
    t.p.replace(
        "ml/loans.yaml",
        "      - {name: income, type: float, min: 0, max: 20}\n",
        "      - {name: income, type: float, min: 0, max: 20}\n      - {name: w, type: float, min: 0, role: weight}\n",
    );
    t.p.replace(
        "ml/endpoint.yaml",
        "  strategy:",
        "  enforce: warn\n  strategy:",
    );
    t.p.commit_all("loans on sagemaker");
    let run =
        t.p.mlctl(&["validate", "--target", "staging"])
            .expect_code(1);
    let out = format!("{}{}", run.stdout, run.stderr);
    for expected in [
        "mlctl does not pass sample weights to SageMaker's built-in algorithms",
        "signature enforcement `warn` is not available here",
    ] {
        assert!(out.contains(expected), "{expected:?} in\n{out}");
    }
    assert!(!out.contains("term_months"), "{out}");
    // Without the weight and with `enforce: strict`, the same project validates there.
    t.p.replace(
        "ml/loans.yaml",
        "      - {name: w, type: float, min: 0, role: weight}\n",
        "",
    );
    t.p.replace(
        "ml/endpoint.yaml",
        "  enforce: warn\n",
        "  enforce: strict\n",
    );
    t.p.commit_all("no weights, strict");
    t.p.mlctl(&["validate", "--target", "staging"])
        .expect_code(0);
    // The local target honours all three.
    t.p.mlctl(&["validate", "--target", "local"]).expect_code(0);
}
