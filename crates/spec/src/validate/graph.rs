//! The resources of a project as a graph: each manifest's typed spec, references by name
//! (from each spec's `references()`, the same list the apply graph is built from), and cycles.

use super::files::Doc;
use super::{Ctx, Shadow, dataset, endpoint, model, monitor, point_at, training};
use crate::builtins;
use crate::metrics::{self, Direction, Family};
use crate::model::*;
use crate::suggest::{did_you_mean, list};
use crate::yaml::{Node, Span};
use crate::{Kind, Location, Resource, ResourceId, ResourceSpec};
use std::collections::{BTreeMap, HashMap};

pub(super) fn resources_from(docs: Vec<Doc>, ctx: &mut Ctx) -> Vec<Resource> {
    // Sized once: growing by doubling would hold two copies at the end of a big project.
    let mut out: Vec<Resource> = Vec::with_capacity(docs.len());
    // Position in `out` of each resource, so a name defined twice is found without a scan.
    let mut seen: HashMap<ResourceId, usize> = HashMap::new();
    for doc in docs {
        let Some(kind) = doc.kind else { continue };
        let what = format!("{kind} spec");
        let (file, node) = (doc.file.as_str(), doc.node.as_ref());
        let spec = match kind {
            Kind::Dataset => ctx
                .typed::<DatasetSpec>(file, node, "spec", &what)
                .map(ResourceSpec::Dataset),
            Kind::TrainingJob => ctx
                .typed::<TrainingJobSpec>(file, node, "spec", &what)
                .map(ResourceSpec::TrainingJob),
            Kind::Model => ctx
                .typed::<ModelSpec>(file, node, "spec", &what)
                .map(ResourceSpec::Model),
            Kind::Endpoint => ctx
                .typed::<EndpointSpec>(file, node, "spec", &what)
                .map(ResourceSpec::Endpoint),
            Kind::Monitor => ctx
                .typed::<MonitorSpec>(file, node, "spec", &what)
                .map(ResourceSpec::Monitor),
        };
        let typos = std::mem::take(&mut ctx.last_typos);
        let id = ResourceId::new(kind, doc.metadata.name.clone());
        let name_span = |n: &Node| {
            n.at(&["metadata", "name"])
                .map(|n| n.span)
                .unwrap_or(n.span)
        };
        if let Some(&i) = seen.get(&id) {
            let first = &out[i];
            let first_at = name_span(&first.node);
            let first_loc = format!("{}:{}:{}", first.location.file, first_at.line, first_at.col);
            ctx.err(
                "duplicate-name",
                file,
                Some(name_span(node)),
                format!("{kind} `{}` is defined twice", id.name),
            )
            .hint = Some(format!(
                "first defined at {first_loc}; names must be unique per kind, so rename one of them"
            ));
            continue;
        }
        let Some(spec) = spec else {
            ctx.shadows.push(Shadow {
                kind: Some(kind),
                name: Some(id.name),
            });
            continue;
        };
        if !typos.is_empty() {
            ctx.typos.insert(id.clone(), typos);
        }
        let location = Location {
            file: doc.file.clone(),
            span: doc.node.span,
        };
        let mut r = Resource {
            id,
            metadata: doc.metadata,
            spec,
            location,
            node: doc.node.clone(),
            depends_on: Vec::new(),
        };
        ctx.current = Some(r.id.clone());
        check_resource(ctx, &mut r);
        ctx.current = None;
        seen.insert(r.id.clone(), out.len());
        out.push(r);
    }
    // Ids are unique here (a second definition was skipped above), so an unstable sort gives
    // the same order without the stable sort's buffer of half the resources.
    out.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Checks ranges and cross-field rules of one resource, applies defaults, and records what
/// it must wait for (the references that order the graph).
fn check_resource(ctx: &mut Ctx, r: &mut Resource) {
    let file = r.location.file.clone();
    let node = r.node.clone();
    let at = |path: &[&str]| -> Option<Span> {
        let mut full = vec!["spec"];
        full.extend_from_slice(path);
        // The closest node that exists, so a missing field points at its parent.
        (0..=full.len())
            .rev()
            .find_map(|n| point_at(&node, &full[..n]))
    };
    let name = r.id.name.clone();
    match &mut r.spec {
        ResourceSpec::Dataset(s) => dataset::check(ctx, &file, &at, &name, s),
        ResourceSpec::TrainingJob(s) => training::check(ctx, &file, &at, &name, s, &node),
        ResourceSpec::Model(s) => model::check(ctx, &file, &at, s),
        ResourceSpec::Endpoint(s) => endpoint::check(ctx, &file, &at, s),
        ResourceSpec::Monitor(s) => monitor::check(ctx, &file, &at, &name, s),
    }
    check_paths(ctx, &file, &at, r);
    r.depends_on = r
        .spec
        .references()
        .into_iter()
        .filter(|x| x.orders)
        .map(|x| x.target)
        .collect();
    r.depends_on.sort();
    r.depends_on.dedup();
}

/// Every path the resource reads (its `content_inputs()`: `source`, `code`, `transform.code`,
/// `serve.code`) and the transform's `output` stay inside, as written: no absolute path and no
/// `..`. Links that lead out are the plan's to find, where the files are.
fn check_paths(ctx: &mut Ctx, file: &str, at: &dyn Fn(&[&str]) -> Option<Span>, r: &Resource) {
    let escapes = |p: &str| p.starts_with('/') || p.split('/').any(|part| part == "..");
    for input in r.spec.content_inputs() {
        if escapes(&input.path) {
            let field: Vec<&str> = input.field.iter().map(String::as_str).collect();
            ctx.err(
                "bad-value",
                file,
                at(&field),
                format!(
                    "{} `{}` is outside the project",
                    field.join("."),
                    input.path
                ),
            )
            .hint = Some(
                "use a path relative to the project directory, so the spec in git is reproducible"
                    .into(),
            );
        }
    }
    let output = r
        .as_dataset()
        .and_then(|d| d.transform.as_ref())
        .and_then(|t| t.output.as_deref());
    if let Some(out) = output.filter(|o| escapes(o)) {
        ctx.err(
            "bad-value",
            file,
            at(&["transform", "output"]),
            format!("transform.output `{out}` is outside the transform's output directory"),
        )
        .hint =
            Some("name a file relative to $MLCTL_OUTPUT_DIR, e.g. `output: features.csv`".into());
    }
}

/// References, cycles and target-independent cross-resource checks.
pub(super) fn check_graph(resources: Vec<Resource>, ctx: &mut Ctx) -> Vec<Resource> {
    let by_id: HashMap<&ResourceId, &Resource> = resources.iter().map(|r| (&r.id, r)).collect();
    // Defined names per kind, in name order (resources are sorted by id).
    let mut names: BTreeMap<Kind, Vec<&str>> = BTreeMap::new();
    for r in &resources {
        names.entry(r.id.kind).or_default().push(&r.id.name);
    }
    let shadows = ctx.shadow_index();
    for r in &resources {
        for Reference { target, path, .. } in r.spec.references() {
            if by_id.contains_key(&target) || shadows.cover(&target) {
                continue;
            }
            let mut full = vec!["spec"];
            full.extend(path.iter().map(String::as_str));
            let span = r.node.at(&full).map(|n| n.span);
            let defined = names.get(&target.kind).map(Vec::as_slice).unwrap_or(&[]);
            let listed = if defined.is_empty() {
                "none".to_string()
            } else {
                list(defined)
            };
            let hint = did_you_mean(&target.name, defined.iter().copied())
                .map(|s| format!("did you mean `{s}`?"));
            ctx.hint(
                "unknown-reference",
                &r.location.file,
                span,
                format!(
                    "{} `{}` is not defined; defined {}: {listed}",
                    target.kind.noun(),
                    target.name,
                    target.kind.plural(),
                ),
                hint,
            );
        }
        // Cross-resource checks that need the referenced resource.
        if let ResourceSpec::Endpoint(e) = &r.spec
            && e.serve.is_none()
            && let Some(ResourceSpec::Model(m)) = by_id
                .get(&ResourceId::new(Kind::Model, e.model.clone()))
                .map(|m| &m.spec)
            && m.mlflow
                .as_ref()
                .is_some_and(|f| f.serve_mode() == crate::MlflowServe::Pyfunc)
        {
            let span = r.node.at(&["spec", "model"]).map(|n| n.span);
            ctx.err(
                "missing-field",
                &r.location.file,
                span,
                format!(
                    "model `{}` is served as an MLflow python_function (`mlflow.serve: pyfunc`), which this endpoint needs a `serve.command` for",
                    e.model
                ),
            )
            .hint = Some(
                "add `serve: {command: 'mlflow models serve -m \"$SM_MODEL_DIR\" -h 127.0.0.1 -p \"$SAGEMAKER_BIND_TO_PORT\" --env-manager virtualenv'}`, or import it with `mlflow.serve: native`".into(),
            );
        }
        match &r.spec {
            ResourceSpec::TrainingJob(t) => {
                let ds_id = ResourceId::new(Kind::Dataset, t.dataset.clone());
                if let Some(ds_res) = by_id.get(&ds_id)
                    && let Some(ds) = ds_res.as_dataset()
                {
                    let supervised = !matches!(t.algorithm, Some(Algorithm::Kmeans) | None);
                    if supervised && ds.target.is_none() && !ctx.mistyped_in(&ds_id, &["target"]) {
                        let span = r.node.at(&["spec", "algorithm"]).map(|n| n.span);
                        ctx.err(
                            "missing-field",
                            &r.location.file,
                            span,
                            format!(
                                "algorithm `{}` needs a label column, but dataset `{}` has no `target`",
                                t.algorithm.map(Algorithm::as_str).unwrap_or(""),
                                t.dataset
                            ),
                        )
                        .hint = Some(format!(
                            "add `target: <label column>` to dataset `{}` in {}, or use `kmeans`, which needs no labels",
                            t.dataset, ds_res.location.file
                        ));
                    }
                    if let (Some(a), Some(w)) = (
                        t.algorithm,
                        ds.schema.as_ref().and_then(|s| s.weight_column()),
                    ) && !crate::builtins::takes_sample_weights(a)
                    {
                        let span = r.node.at(&["spec", "algorithm"]).map(|n| n.span);
                        let can: Vec<&str> = crate::builtins::WEIGHTED
                            .iter()
                            .map(|a| a.as_str())
                            .collect();
                        ctx.err(
                            "conflicting-fields",
                            &r.location.file,
                            span,
                            format!(
                                "algorithm `{}` cannot train with sample weights, but column `{}` of dataset `{}` has `role: weight`",
                                a.as_str(),
                                w.name,
                                t.dataset
                            ),
                        )
                        .hint = Some(format!(
                            "use {} (they take weights), or make `{}` `role: ignore` in {}",
                            match can.split_last() {
                                Some((last, rest)) if !rest.is_empty() =>
                                    format!("{} or {last}", rest.join(", ")),
                                _ => can.join(" or "),
                            },
                            w.name,
                            ds_res.location.file
                        ));
                    }
                }
                if let Some(tuning) = &t.tuning
                    && let Some(reports) = Reports::of(&r.id.name, t, &by_id)
                {
                    let metric = &tuning.objective.metric;
                    let span = r
                        .node
                        .at(&["spec", "tuning", "objective", "metric"])
                        .map(|n| n.span);
                    if !reports.has(metric) {
                        ctx.hint(
                            "unknown-metric",
                            &r.location.file,
                            span,
                            format!(
                                "tuning objective `{metric}`: {} does not report it",
                                reports.subject
                            ),
                            Some(reports.hint(metric)),
                        );
                    } else if let Some(m) = metrics::metric(metric) {
                        let wrong = match (tuning.objective.goal, m.direction) {
                            (Goal::Maximize, Direction::LowerIsBetter) => Some("minimize"),
                            (Goal::Minimize, Direction::HigherIsBetter) => Some("maximize"),
                            _ => None,
                        };
                        if let Some(goal) = wrong {
                            let span = r
                                .node
                                .at(&["spec", "tuning", "objective", "goal"])
                                .map(|n| n.span);
                            let d = ctx.err(
                                "objective-direction",
                                &r.location.file,
                                span,
                                format!(
                                    "tuning looks for the worst `{metric}`: {} is better",
                                    m.direction.as_str()
                                ),
                            );
                            d.hint = Some(format!("write `goal: {goal}`"));
                            d.severity = crate::Severity::Warning;
                        }
                    }
                }
            }
            ResourceSpec::Model(m) => {
                let job = m
                    .from
                    .as_ref()
                    .and_then(|f| by_id.get(&ResourceId::new(Kind::TrainingJob, f.clone())));
                // A regression is worse in one direction: the job's spec must say which.
                if let Some((j, t)) = job.and_then(|j| Some((j, j.as_training_job()?))) {
                    for (i, g) in m.gates.iter().enumerate() {
                        if g.max_regression.is_none()
                            || metrics::direction_in(t, &g.metric).is_some()
                            || t.algorithm.is_some()
                        {
                            continue;
                        }
                        let span = r
                            .node
                            .at(&["spec", "gates", &i.to_string(), "maxRegression"])
                            .map(|n| n.span);
                        ctx.err(
                            "missing-field",
                            &r.location.file,
                            span,
                            format!(
                                "gate on `{}`: maxRegression needs to know whether larger `{}` is better, and training job `{}` does not say",
                                g.metric, g.metric, j.id.name
                            ),
                        )
                        .hint = Some(format!(
                            "declare it in {}: `metrics: [{{name: {}, regex: '...', goal: maximize}}]` (or `minimize`)",
                            j.location.file, g.metric
                        ));
                    }
                }
                let reports = job
                    .and_then(|j| Some((j, j.as_training_job()?)))
                    .and_then(|(j, t)| Reports::of(&j.id.name, t, &by_id));
                if let Some(reports) = reports {
                    for (i, g) in m.gates.iter().enumerate() {
                        if reports.has(&g.metric) {
                            continue;
                        }
                        let span = r
                            .node
                            .at(&["spec", "gates", &i.to_string(), "metric"])
                            .map(|n| n.span);
                        ctx.hint(
                            "unknown-metric",
                            &r.location.file,
                            span,
                            format!(
                                "gate on `{}`: {} does not report it",
                                g.metric, reports.subject
                            ),
                            Some(reports.hint(&g.metric)),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    check_ports(&resources, ctx);
    // Cycles can only form through dataset transforms; each is reported once, at the
    // dataset it was entered from, pointing at the input that closes it.
    for cycle in find_cycles(&resources) {
        let (Some(first), Some(next)) = (cycle.first(), cycle.get(1)) else {
            continue;
        };
        let Some(r) = by_id.get(&ResourceId::new(Kind::Dataset, first.clone())) else {
            continue;
        };
        let index = r
            .as_dataset()
            .and_then(|d| d.transform.as_ref())
            .and_then(|t| t.inputs.iter().position(|i| i == next));
        let span = match index {
            Some(i) => r
                .node
                .at(&["spec", "transform", "inputs", &i.to_string()])
                .map(|n| n.span),
            None => point_at(&r.node, &["spec", "transform", "inputs"]),
        };
        // A cycle through thousands of datasets is shown by its ends.
        let shown = if cycle.len() > 10 {
            format!(
                "{} -> ... ({} more) -> {}",
                cycle[..8].join(" -> "),
                crate::suggest::thousands(cycle.len() - 9),
                cycle[cycle.len() - 1]
            )
        } else {
            cycle.join(" -> ")
        };
        ctx.err("cycle", &r.location.file, span, format!("dataset transforms form a cycle: {shown}")).hint =
            Some("each dataset's transform reads the next one; a transform cannot read its own output, directly or through other datasets".into());
    }
    drop(by_id);
    resources
}

/// Two endpoints cannot listen on one port: the second one written (in file order) is
/// reported, naming where the first is.
fn check_ports(resources: &[Resource], ctx: &mut Ctx) {
    let mut with_port: Vec<(&Resource, u16)> = resources
        .iter()
        .filter_map(|r| Some((r, r.as_endpoint()?.port?)))
        .filter(|(_, p)| *p != 0)
        .collect();
    with_port.sort_by(|a, b| {
        (a.0.location.file.as_str(), a.0.location.span)
            .cmp(&(b.0.location.file.as_str(), b.0.location.span))
    });
    let mut first: HashMap<u16, &Resource> = HashMap::new();
    for (r, port) in with_port {
        let span_of = |r: &Resource| r.node.at(&["spec", "port"]).map(|n| n.span);
        match first.get(&port) {
            None => {
                first.insert(port, r);
            }
            Some(other) => {
                let at = span_of(other).unwrap_or(other.location.span);
                ctx.err(
                    "duplicate-port",
                    &r.location.file,
                    span_of(r),
                    format!(
                        "port {port} is already taken by endpoint `{}` ({}:{}:{})",
                        other.id.name, other.location.file, at.line, at.col
                    ),
                )
                .hint = Some(
                    "give each endpoint its own port, or leave `port` out to let mlctl pick a free one"
                        .into(),
                );
            }
        }
    }
}

/// What a built-in training job reports, and why: for gates and tuning objectives.
struct Reports {
    /// `training job `iris-train` (logistic_regression)`.
    subject: String,
    /// The families it may train (two when the spec cannot tell).
    families: Vec<Family>,
    /// Why those families, for the hint ("`species`, the target column of dataset `iris`, is
    /// a category"); empty when the algorithm alone decides.
    why: String,
    algorithm: Algorithm,
}

impl Reports {
    /// `None` for a script-mode job, which reports any metric it likes.
    fn of(
        name: &str,
        t: &TrainingJobSpec,
        by_id: &HashMap<&ResourceId, &Resource>,
    ) -> Option<Self> {
        let algorithm = t.algorithm?;
        let subject = format!("training job `{name}` ({})", algorithm.as_str());
        let fixed = builtins::families(algorithm);
        let (families, why) = match builtins::task_hyperparameter(algorithm) {
            None => (fixed.to_vec(), String::new()),
            Some(key) => {
                let tuned = t
                    .tuning
                    .as_ref()
                    .is_some_and(|tu| tu.search_space.contains_key(key));
                let set = t
                    .hyperparameters
                    .get(key)
                    .and_then(serde_json::Value::as_str)
                    .and_then(|v| Some((v, builtins::family_of_task_value(v)?)));
                let dataset = by_id
                    .get(&ResourceId::new(Kind::Dataset, t.dataset.clone()))
                    .and_then(|r| r.as_dataset());
                let label = dataset.and_then(|d| {
                    let target = d.target.as_deref()?;
                    let column = d
                        .schema
                        .as_ref()?
                        .columns
                        .iter()
                        .find(|c| c.name == target)?;
                    Some((target, column.ty))
                });
                match (tuned, set, label) {
                    (true, _, _) => (fixed.to_vec(), format!("`{key}` is tuned")),
                    (false, Some((v, f)), _) => (vec![f], format!("`{key}: {v}`")),
                    (false, None, Some((target, ty))) => (
                        metrics::families_for_label(Some(ty)).to_vec(),
                        format!(
                            "`{target}`, the target column of dataset `{}`, is {}",
                            t.dataset,
                            match ty {
                                ColumnType::Float => "a float",
                                ColumnType::Int =>
                                    "an int (classified with at most 20 distinct values, else regressed)",
                                ColumnType::Bool => "a bool",
                                ColumnType::Category => "a category",
                                ColumnType::String => "a string",
                            }
                        ),
                    ),
                    (false, None, None) => (
                        fixed.to_vec(),
                        format!(
                            "dataset `{}` declares no type for its target column",
                            t.dataset
                        ),
                    ),
                }
            }
        };
        Some(Reports {
            subject,
            families,
            why,
            algorithm,
        })
    }

    fn names(&self) -> Vec<&'static str> {
        metrics::METRICS
            .iter()
            .filter(|m| m.families.iter().any(|f| self.families.contains(f)))
            .map(|m| m.name)
            .collect()
    }

    fn has(&self, metric: &str) -> bool {
        self.names().contains(&metric)
    }

    fn hint(&self, metric: &str) -> String {
        let names = self.names();
        let did = did_you_mean(metric, names.iter().copied())
            .map(|s| format!("did you mean `{s}`? "))
            .unwrap_or_default();
        let what = match self.families.as_slice() {
            [Family::Classification] => "trains a classifier here",
            [Family::Regression] => "trains a regressor here",
            [Family::Clustering] => "clusters rows",
            _ => "trains a classifier or a regressor here",
        };
        let alg = self.algorithm.as_str();
        let why = if self.why.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.why)
        };
        format!(
            "{did}{alg} {what}{why}, which reports: {}; see docs/metrics.md",
            list(&names)
        )
    }
}

/// Every cycle among dataset transforms, each once, as `a -> b -> ... -> a` where each
/// dataset reads the next. Depth-first search with three colours: linear in the graph.
fn find_cycles(resources: &[Resource]) -> Vec<Vec<String>> {
    let inputs: BTreeMap<&str, Vec<&str>> = resources
        .iter()
        .filter_map(|r| Some((r.id.name.as_str(), r.as_dataset()?)))
        .map(|(name, d)| {
            (
                name,
                d.transform
                    .iter()
                    .flat_map(|t| t.inputs.iter().map(String::as_str))
                    .collect(),
            )
        })
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        New,
        OnPath,
        Done,
    }
    // Depth-first, with an explicit stack of (dataset, next input to follow): a chain of
    // transforms as long as the project is must not become as many stack frames.
    let mut colour: BTreeMap<&str, Colour> = inputs.keys().map(|k| (*k, Colour::New)).collect();
    let mut cycles = Vec::new();
    let mut stack: Vec<(&str, usize)> = Vec::new();
    for &root in inputs.keys() {
        if colour.get(root) != Some(&Colour::New) {
            continue;
        }
        colour.insert(root, Colour::OnPath);
        stack.push((root, 0));
        while let Some(&mut (name, ref mut i)) = stack.last_mut() {
            let Some(&next) = inputs.get(name).and_then(|v| v.get(*i)) else {
                colour.insert(name, Colour::Done);
                stack.pop();
                continue;
            };
            *i += 1;
            match colour.get(next).copied() {
                Some(Colour::New) => {
                    colour.insert(next, Colour::OnPath);
                    stack.push((next, 0));
                }
                Some(Colour::OnPath) => {
                    let from = stack.iter().position(|(n, _)| *n == next).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[from..].iter().map(|(n, _)| n.to_string()).collect();
                    cycle.push(next.to_string());
                    cycles.push(cycle);
                }
                // Done, or not a dataset (reported as an unknown reference).
                _ => {}
            }
        }
    }
    cycles
}
