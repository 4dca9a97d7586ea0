//! The resources of a project as a graph: each manifest's typed spec, references by name
//! (from each spec's `references()`, the same list the apply graph is built from), and cycles.

use super::files::Doc;
use super::{Ctx, Shadow, dataset, endpoint, model, monitor, point_at, training};
use crate::diag::Diagnostic;
use crate::model::*;
use crate::suggest::did_you_mean;
use crate::yaml::{Node, Span};
use crate::{Kind, Location, Resource, ResourceId, ResourceSpec};
use std::collections::BTreeMap;

pub(super) fn resources_from(docs: Vec<Doc>, ctx: &mut Ctx) -> Vec<Resource> {
    let mut out: Vec<Resource> = Vec::new();
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
        let id = ResourceId::new(kind, doc.metadata.name.clone());
        let name_span = |n: &Node| {
            n.at(&["metadata", "name"])
                .map(|n| n.span)
                .unwrap_or(n.span)
        };
        if let Some(first) = out.iter().find(|r| r.id == id) {
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
        check_resource(ctx, &mut r);
        out.push(r);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
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

/// References, cycles and target-independent cross-resource checks.
pub(super) fn check_graph(resources: Vec<Resource>, ctx: &mut Ctx) -> Vec<Resource> {
    let names = |kind: Kind| -> Vec<String> {
        resources
            .iter()
            .filter(|r| r.id.kind == kind)
            .map(|r| r.id.name.clone())
            .collect()
    };
    for r in &resources {
        for Reference { target, path, .. } in r.spec.references() {
            if resources.iter().any(|x| x.id == target) || ctx.shadowed(&target) {
                continue;
            }
            let mut full = vec!["spec"];
            full.extend(path.iter().map(String::as_str));
            let span = r.node.at(&full).map(|n| n.span);
            let defined = names(target.kind);
            let list = if defined.is_empty() {
                "none".to_string()
            } else {
                defined.join(", ")
            };
            let mut d = Diagnostic::error(
                "unknown-reference",
                &r.location.file,
                ctx.sources
                    .get(&r.location.file)
                    .map(String::as_str)
                    .unwrap_or(""),
                span,
                format!(
                    "{} `{}` is not defined; defined {}: {}",
                    target.kind.noun(),
                    target.name,
                    target.kind.plural(),
                    list
                ),
            );
            if let Some(s) = did_you_mean(&target.name, defined.iter().map(String::as_str)) {
                d.hint = Some(format!("did you mean `{s}`?"));
            }
            ctx.diags.push(d);
        }
        // Cross-resource checks that need the referenced resource.
        if let ResourceSpec::TrainingJob(t) = &r.spec
            && let Some(ds) = resources
                .iter()
                .find(|x| x.id == ResourceId::new(Kind::Dataset, t.dataset.clone()))
                .and_then(Resource::as_dataset)
        {
            let supervised = !matches!(t.algorithm, Some(Algorithm::Kmeans) | None);
            if supervised && ds.target.is_none() {
                let span = r.node.at(&["spec", "algorithm"]).map(|n| n.span);
                let ds_at = resources
                    .iter()
                    .find(|x| x.id.kind == Kind::Dataset && x.id.name == t.dataset)
                    .map(|x| x.location.file.clone())
                    .unwrap_or_default();
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
                    "add `target: <label column>` to dataset `{}` in {ds_at}, or use `kmeans`, which needs no labels",
                    t.dataset
                ));
            }
        }
    }
    // Cycles can only form through dataset transforms; each is reported once, at the
    // dataset it was entered from, pointing at the input that closes it.
    for cycle in find_cycles(&resources) {
        let (Some(first), Some(next)) = (cycle.first(), cycle.get(1)) else {
            continue;
        };
        let Some(r) = resources
            .iter()
            .find(|r| r.id.kind == Kind::Dataset && &r.id.name == first)
        else {
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
        ctx.err("cycle", &r.location.file, span, format!("dataset transforms form a cycle: {}", cycle.join(" -> "))).hint =
            Some("each dataset's transform reads the next one; a transform cannot read its own output, directly or through other datasets".into());
    }
    resources
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
    fn visit<'a>(
        name: &'a str,
        inputs: &BTreeMap<&'a str, Vec<&'a str>>,
        colour: &mut BTreeMap<&'a str, Colour>,
        path: &mut Vec<&'a str>,
        cycles: &mut Vec<Vec<String>>,
    ) {
        colour.insert(name, Colour::OnPath);
        path.push(name);
        for &next in inputs.get(name).into_iter().flatten() {
            match colour.get(next).copied() {
                Some(Colour::New) => visit(next, inputs, colour, path, cycles),
                Some(Colour::OnPath) => {
                    let from = path.iter().position(|n| *n == next).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[from..].iter().map(|n| n.to_string()).collect();
                    cycle.push(next.to_string());
                    cycles.push(cycle);
                }
                // Done, or not a dataset (reported as an unknown reference).
                _ => {}
            }
        }
        path.pop();
        colour.insert(name, Colour::Done);
    }
    let mut colour: BTreeMap<&str, Colour> = inputs.keys().map(|k| (*k, Colour::New)).collect();
    let mut cycles = Vec::new();
    for name in inputs.keys() {
        if colour.get(name) == Some(&Colour::New) {
            visit(name, &inputs, &mut colour, &mut Vec::new(), &mut cycles);
        }
    }
    cycles
}
