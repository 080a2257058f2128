//! The `hookforge` binary.

use clap::Parser;

fn main() -> std::process::ExitCode {
    hookforge::cli::run(hookforge::cli::Cli::parse())
}
