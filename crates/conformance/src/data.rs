//! DataStore: blobs and dataset versions.

use crate::{Check, Fixture, attempt, call};
use mlctl_core::{DatasetVersion, ErrorKind, Stack};

/// Blobs are stored under their blake3 digest; put is idempotent; get returns the bytes;
/// has/get of a missing digest say so.
pub async fn datastore_blobs(stack: &Stack, fx: &Fixture) {
    let c = Check::new("datastore_blobs", stack);
    let data = &stack.data;
    let bytes = format!("conformance blob {}", fx.unique("blob")).into_bytes();
    let want = blake3::hash(&bytes).to_hex().to_string();
    let missing = blake3::hash(format!("never stored {}", fx.unique("missing")).as_bytes())
        .to_hex()
        .to_string();

    let had = call!(
        c,
        "has_blob of a digest never stored",
        data.has_blob(&missing).await
    );
    c.ensure(!had, "has_blob must be false for a digest never stored");
    match attempt!(data.get_blob(&missing).await) {
        Err(e) => c.ensure(
            e.kind == ErrorKind::NotFound,
            format!(
                "get_blob of a missing digest must fail with NotFound, got {:?}: {e}",
                e.kind
            ),
        ),
        Ok(_) => c.fail("get_blob of a digest never stored must fail"),
    }

    let d = call!(c, "put_blob", data.put_blob(bytes.clone()).await);
    c.ensure(
        d == want,
        format!(
            "put_blob must return the blake3 hex digest of the bytes: expected {want}, got {d}"
        ),
    );
    c.ensure(
        call!(c, "has_blob after put", data.has_blob(&d).await),
        "has_blob must be true after put_blob",
    );
    let back = call!(c, "get_blob after put", data.get_blob(&d).await);
    c.ensure(back == bytes, "get_blob must return exactly the bytes put");
    let again = call!(
        c,
        "put_blob of the same bytes again",
        data.put_blob(bytes.clone()).await
    );
    c.ensure(
        again == d,
        "putting the same bytes again must return the same digest",
    );

    let empty = call!(c, "put_blob of zero bytes", data.put_blob(Vec::new()).await);
    c.ensure(
        empty == blake3::hash(b"").to_hex().as_str(),
        "the empty blob is a blob too, under blake3(\"\")",
    );
    c.ensure(
        call!(c, "get_blob of the empty blob", data.get_blob(&empty).await).is_empty(),
        "the empty blob reads back empty",
    );

    let big: Vec<u8> = (0..(3 << 20))
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let bd = call!(c, "put_blob of 3 MiB", data.put_blob(big.clone()).await);
    c.ensure(
        bd == blake3::hash(&big).to_hex().as_str(),
        "a large blob's digest is its blake3",
    );
    c.ensure(
        call!(c, "get_blob of 3 MiB", data.get_blob(&bd).await) == big,
        "a large blob reads back intact",
    );
}

fn file_digest(fx: &Fixture, rel: &str) -> String {
    blake3::hash(&std::fs::read(fx.dir().join(rel)).unwrap_or_default())
        .to_hex()
        .to_string()
}

/// Registering reads the data (digest, rows, columns, splits); the same fingerprint gives
/// the same version; a new fingerprint a new version; delete is idempotent.
pub async fn dataset_register_idempotent(stack: &Stack, fx: &Fixture) {
    let c = Check::new("dataset_register_idempotent", stack);
    let name = fx.unique("dataset");
    let req = fx.dataset_request(&name, "dataset-v1");
    let v = call!(
        c,
        "registering the iris dataset",
        stack.data.register_dataset(&fx.ctx, &req).await
    );
    c.ensure(
        v.name == name,
        format!(
            "the version must carry the dataset name `{name}`, got `{}`",
            v.name
        ),
    );
    c.ensure(
        v.fingerprint == req.fingerprint,
        "the version must carry the request's fingerprint",
    );
    c.ensure(
        v.digest == file_digest(fx, "data/iris.csv"),
        format!(
            "the digest must be blake3 of the source file, got {}",
            v.digest
        ),
    );
    c.ensure(
        v.rows == 150,
        format!("iris.csv has 150 data rows, the version says {}", v.rows),
    );
    // The profile a Monitor's baseline is: stored with the version, one entry per column.
    let profile = call!(
        c,
        "reading the version's profile",
        stack.data.read_profile(&fx.ctx, &v).await
    );
    let profiled: Option<serde_json::Value> = profile
        .as_deref()
        .and_then(|b| serde_json::from_slice(b).ok());
    c.ensure(
        profiled
            .as_ref()
            .and_then(|p| p["columns"].as_array())
            .is_some_and(|cols| cols.len() == 5),
        format!(
            "the version must have a profile with one entry per column (a Monitor's baseline), got {}",
            profile.map_or("none".to_string(), |b| String::from_utf8_lossy(&b).chars().take(200).collect())
        ),
    );
    let cols = [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
        "species",
    ];
    c.ensure(
        v.columns == cols,
        format!(
            "the columns must be the file's header in order, got {:?}",
            v.columns
        ),
    );
    c.ensure(
        !v.uri.is_empty(),
        "the version must say where the table is stored",
    );
    c.ensure(
        v.splits.contains_key("train") && v.splits.contains_key("test"),
        format!(
            "a dataset with split train/test must have `train` and `test` parts, got {:?}",
            v.splits.keys().collect::<Vec<_>>()
        ),
    );

    let again = call!(
        c,
        "registering the same fingerprint again",
        stack.data.register_dataset(&fx.ctx, &req).await
    );
    c.ensure(again == v, format!("registering the same fingerprint must return the same version: first {v:?}, then {again:?}"));

    let mut req2 = fx.dataset_request(&name, "dataset-v2");
    if let Some(split) = req2.spec.split.as_mut() {
        split.seed = Some(7);
    }
    let v2 = call!(
        c,
        "registering a new fingerprint",
        stack.data.register_dataset(&fx.ctx, &req2).await
    );
    c.ensure(
        v2.fingerprint == req2.fingerprint,
        "a new fingerprint must give a version with that fingerprint",
    );
    c.ensure(
        v2.digest == v.digest,
        "the same file must give the same digest under any fingerprint",
    );
    let v1 = call!(
        c,
        "registering the first fingerprint after the second",
        stack.data.register_dataset(&fx.ctx, &req).await
    );
    c.ensure(
        v1.fingerprint == v.fingerprint && v1.digest == v.digest,
        "an earlier fingerprint must still register as its own version",
    );

    call!(
        c,
        "deleting the dataset",
        stack.data.delete_dataset(&fx.ctx, &name).await
    );
    call!(
        c,
        "deleting the dataset again (must be idempotent)",
        stack.data.delete_dataset(&fx.ctx, &name).await
    );
    let back = call!(
        c,
        "registering after delete",
        stack.data.register_dataset(&fx.ctx, &req).await
    );
    c.ensure(
        back.digest == v.digest && back.rows == v.rows,
        "a deleted dataset can be registered again",
    );
    call!(
        c,
        "cleaning up",
        stack.data.delete_dataset(&fx.ctx, &name).await
    );
}

fn expect_permanent_failure(
    c: &Check,
    r: Result<DatasetVersion, mlctl_core::ProviderError>,
    what: &str,
    must_mention: &str,
) {
    match r {
        Ok(v) => c.fail(format!("{what} must fail, but registered {v:?}")),
        Err(e) => {
            c.ensure(
                !e.is_retryable(),
                format!(
                    "{what} must fail permanently (retrying cannot help), got retryable {:?}: {e}",
                    e.kind
                ),
            );
            c.ensure(
                e.message.contains(must_mention),
                format!("the error for {what} must mention `{must_mention}`, got: {e}"),
            );
        }
    }
}

/// A dataset whose source file is missing fails permanently, naming the file.
pub async fn dataset_missing_source_fails(stack: &Stack, fx: &Fixture) {
    let c = Check::new("dataset_missing_source_fails", stack);
    let mut req = fx.dataset_request(&fx.unique("dataset-missing"), "dataset-missing");
    req.spec.source = Some("data/missing.csv".into());
    let r = attempt!(stack.data.register_dataset(&fx.ctx, &req).await);
    expect_permanent_failure(
        &c,
        r,
        "registering a dataset whose source does not exist",
        "data/missing.csv",
    );
}

/// A dataset whose file lacks a column its schema declares fails permanently, naming it.
pub async fn dataset_schema_violation_fails(stack: &Stack, fx: &Fixture) {
    let c = Check::new("dataset_schema_violation_fails", stack);
    let mut req = fx.dataset_request(&fx.unique("dataset-schema"), "dataset-schema");
    if let Some(schema) = req.spec.schema.as_mut() {
        let mut col = schema.columns[0].clone();
        col.name = "petal_colour".into();
        schema.columns.push(col);
    }
    let r = attempt!(stack.data.register_dataset(&fx.ctx, &req).await);
    expect_permanent_failure(
        &c,
        r,
        "registering data without a column the schema declares",
        "petal_colour",
    );
}

/// The transform the check runs: numbers the rows of its input (POSIX `awk`, so every
/// machine and container has it), from a script in the project (`transform.code`).
const NUMBER_ROWS: &str = "awk 'NR == 1 { print $0 \",row\"; next } { print $0 \",\" (NR - 1) }' \"$MLCTL_INPUT_IRIS\" > \"$MLCTL_OUTPUT\"\n";

/// What [`NUMBER_ROWS`] makes of `csv`.
fn numbered(csv: &str) -> String {
    let mut out = String::new();
    for (i, line) in csv.lines().enumerate() {
        if i == 0 {
            out.push_str(&format!("{line},row\n"));
        } else {
            out.push_str(&format!("{line},{i}\n"));
        }
    }
    out
}

/// A Dataset `transform` runs its command on its inputs (`MLCTL_INPUT_<NAME>`, the code at
/// its project path) and the derived version is exactly what the command wrote to
/// `MLCTL_OUTPUT`: its digest, rows and columns, registered once per fingerprint. A command
/// that fails makes a permanent error that carries what it said.
pub async fn dataset_transform_is_its_commands_output(stack: &Stack, fx: &Fixture) {
    let c = Check::new("dataset_transform_is_its_commands_output", stack);
    let input = fx.dataset_request("iris", "transform-input");
    let iris = call!(
        c,
        "registering the transform's input",
        stack.data.register_dataset(&fx.ctx, &input).await
    );
    let script = fx.dir().join("transforms/number.sh");
    if let Err(e) = std::fs::create_dir_all(fx.dir().join("transforms"))
        .and_then(|()| std::fs::write(&script, NUMBER_ROWS))
    {
        c.fail(format!("writing {}: {e}", script.display()));
    }
    let name = fx.unique("derived");
    let mut req = fx.dataset_request(&name, "transform");
    req.spec.source = None;
    req.spec.schema = None;
    req.spec.split = None;
    req.spec.transform = Some(mlctl_spec::Transform {
        command: "sh transforms/number.sh".into(),
        inputs: vec!["iris".into()],
        code: Some("transforms/number.sh".into()),
        output: Some("numbered.csv".into()),
        image: None,
    });
    req.inputs.insert("iris".into(), iris);
    let want =
        numbered(&std::fs::read_to_string(fx.dir().join("data/iris.csv")).unwrap_or_default());
    let v = call!(
        c,
        "registering a transform's output",
        stack.data.register_dataset(&fx.ctx, &req).await
    );
    c.ensure(
        v.digest == blake3::hash(want.as_bytes()).to_hex().as_str(),
        format!(
            "the derived version must be the command's output (digest {}), got digest {}",
            blake3::hash(want.as_bytes()).to_hex(),
            v.digest
        ),
    );
    c.ensure(
        v.rows == 150 && v.columns.last().map(String::as_str) == Some("row"),
        format!(
            "the derived table has iris's 150 rows and a `row` column, the version says {} rows, columns {:?}",
            v.rows, v.columns
        ),
    );
    let again = call!(
        c,
        "registering the same transform again",
        stack.data.register_dataset(&fx.ctx, &req).await
    );
    c.ensure(
        again == v,
        "the same fingerprint must return the same version",
    );

    let mut failing = req.clone();
    failing.name = fx.unique("derived-failing");
    failing.fingerprint = fx.fingerprint("transform-failing");
    if let Some(t) = failing.spec.transform.as_mut() {
        t.command = "echo 'no column petal_colour' >&2; exit 3".into();
        t.code = None;
    }
    let r = attempt!(stack.data.register_dataset(&fx.ctx, &failing).await);
    expect_permanent_failure(
        &c,
        r,
        "a transform whose command fails",
        "no column petal_colour",
    );
}
