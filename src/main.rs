//! The `duet` command: see [`duet::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    duet::cli::main()
}
