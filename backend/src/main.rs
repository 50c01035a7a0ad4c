//! The `mailroom` binary: all logic lives in the library.
use std::process::ExitCode;

fn main() -> ExitCode {
    mailroom_backend::cli::main()
}
