//! `wxthunk`: probe what this process may do with executable memory, and
//! show wxthunk at work.

mod demo;
mod probe;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wxthunk", version, about, long_about = None)]
/// Executable memory under W^X discipline: probe, demo.
///
/// With no subcommand: the probe report, then the demo.
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Report what this process may do with executable memory, and why.
    Probe {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// JIT small functions into a Block and call them.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Probe { json }) => {
            probe::run(json);
            Ok(())
        }
        Some(Command::Demo) => demo::run(),
        None => {
            probe::run(false);
            println!();
            demo::run()
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxthunk: {e}");
            ExitCode::FAILURE
        }
    }
}
