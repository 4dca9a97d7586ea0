//! Every string value in every file read: `${env:NAME}` syntax, and literal credentials, which
//! must never be written in a spec.

use super::Ctx;
use crate::env;
use crate::yaml;

/// Every string value in every file: env reference syntax and literal credentials.
pub(super) fn check_literals(ctx: &mut Ctx) {
    let files: Vec<(String, String)> = ctx
        .sources
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (file, text) in files {
        let Ok(docs) = yaml::parse(&text) else {
            continue;
        };
        for doc in &docs {
            let mut found = Vec::new();
            doc.walk(&mut Vec::new(), &mut |path, node| {
                let Some(s) = node.as_str() else { return };
                // Commands are shell: `${MLCTL_OUTPUT}` there is the shell's, not mlctl's.
                let is_command = path.last().is_some_and(|k| k == "command");
                match env::references(s) {
                    Err(e) if !is_command => found.push(("bad-env-reference", node.span, e.to_string(), None)),
                    _ => {
                        if let Some(what) = env::looks_like_credential(s) {
                            found.push((
                                "literal-secret",
                                node.span,
                                format!("this value looks like {what}; secrets must not be written in the spec"),
                                Some("remove it from the file (and from git history), rotate it, and write `${env:NAME}` instead".to_string()),
                            ));
                        }
                    }
                }
            });
            for (code, span, msg, hint) in found {
                ctx.hint(code, &file, Some(span), msg, hint);
            }
        }
    }
}
