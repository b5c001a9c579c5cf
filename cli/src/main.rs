//! The `agenttier` binary: `serve` runs the control plane, the client subcommands talk to it over
//! REST, and the hidden `__agent` subcommand is the first process inside every local sandbox.

mod args;
mod client;
mod serve;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    // The in-sandbox agent must start in milliseconds: dispatch before clap and before tokio.
    if argv.get(1).map(String::as_str) == Some("__agent") {
        return agenttier_actors::runtime::local::agent::main(argv[2..].to_vec());
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await.map(|()| ExitCode::SUCCESS),
            Command::Version => {
                println!("agenttier {}", env!("CARGO_PKG_VERSION"));
                Ok(ExitCode::SUCCESS)
            }
            Command::Sandbox(command) => client::sandbox(cli.client, command).await,
            Command::Template(command) => client::template(cli.client, command).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
