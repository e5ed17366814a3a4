//! The `bulkget` command: all of it is [`bulkget::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    bulkget::cli::abort_on_panic();
    bulkget::cli::main(std::env::args_os())
}
