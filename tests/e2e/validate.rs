//! `mlctl validate`, `schema`, `init`.

use crate::common::*;

#[test]
fn the_iris_example_is_valid() {
    let p = TestProject::example("iris");
    let run = p.mlctl(&["validate"]).expect_code(0);
    assert!(run.stdout.contains("project `iris` is valid"), "{}", run.stdout);
}
