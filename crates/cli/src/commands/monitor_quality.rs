//! The data quality and SLO sections of `mlctl monitor run`'s output.

use mlctl_core::monitoring::MonitorResult;

/// Prints the breached quality checks (all of them would be one line per feature and check)
/// and every SLO objective.
pub(super) fn print(r: &MonitorResult) {
    if !r.quality.is_empty() {
        let breached: Vec<_> = r.quality.iter().filter(|q| q.breached).collect();
        if breached.is_empty() {
            println!("  quality: {} checks passed", r.quality.len());
        } else {
            println!(
                "  {:<18} {:<24} {:>10} {:>10}  EXAMPLES",
                "QUALITY CHECK", "COLUMN", "RATE", "THRESHOLD"
            );
            for q in breached {
                print!(
                    "  {:<18} {:<24} {:>10} {:>10}  {}",
                    q.check,
                    q.column,
                    format!("{:.4}", q.rate),
                    q.threshold,
                    q.examples.join(", ")
                );
                if let Some(n) = &q.note {
                    print!(" ({n})");
                }
                println!();
            }
        }
    }
    if let Some(slo) = &r.slo {
        println!(
            "  {:<18} {:>12} {:>12}  VERDICT ({} requests)",
            "SLO", "VALUE", "LIMIT", slo.requests
        );
        for o in &slo.objectives {
            let value = o.value.map_or("-".to_string(), |v| format!("{v:.4}"));
            let verdict = match (o.value, o.breached) {
                (None, _) => "not measured",
                (_, true) => "breached",
                (_, false) => "ok",
            };
            print!(
                "  {:<18} {:>12} {:>12}  {verdict}",
                o.objective, value, o.limit
            );
            if let Some(n) = &o.note {
                print!(" ({n})");
            }
            println!();
        }
        if let Some(n) = &slo.note {
            println!("  ({n})");
        }
    }
}
