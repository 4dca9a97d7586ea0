//! Runs one fuzz target on files: `cargo run -p mlctl-fuzz --example replay -- TARGET FILE...`
//! (a crash prints its panic and backtrace).

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("usage: replay TARGET FILE...");
    let f = mlctl_fuzz::TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no target `{target}`"));
    for file in args {
        let data = std::fs::read(&file).expect("read the input");
        eprintln!("{target} {file} ({} bytes)", data.len());
        f(&data);
    }
}
