//! The one entry point for every benchmark of the project (run through
//! `scripts/bench.sh SCENARIO`). Each scenario prints a readable table and,
//! as its last line, one JSON object with its figures.

mod apply;
mod propagate;
mod schedule;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().map(String::as_str).unwrap_or("");
    let rest = &args[args.len().min(1)..];
    match scenario {
        "apply" => apply::apply(rest),
        "write" => apply::write(rest),
        "propagate" => propagate::propagate(rest),
        "heal" => propagate::heal(rest),
        "schedule" => schedule::schedule(rest),
        _ => {
            eprintln!("usage: drengine-bench apply|write|propagate|heal|schedule [options]");
            std::process::exit(2);
        }
    }
}
