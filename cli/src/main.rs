//! The `agenttier` binary: `serve` runs the control plane, the client subcommands talk to it over
//! REST, and the hidden `__agent` subcommand is the first process inside every local sandbox.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__agent") {
        return agenttier_actors::runtime::local::agent::main(args[2..].to_vec());
    }
    ExitCode::SUCCESS
}
