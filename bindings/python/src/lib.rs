//! `bulkget._bulkget`: bulkget's engine in a Python process. It binds the
//! library only: every call is one command line ([`bulkget::cli::run`]),
//! run on a thread of its own with the GIL released, so that other Python
//! threads go on and several calls may run at once. The Python API in
//! `python/bulkget/` turns keyword arguments into the command's flags and
//! reads back its report (`--stats-json`) and answers (`-o`).
//!
//! Ctrl-C: the calling thread wakes every 100 ms to let Python run its
//! signal handlers; a `KeyboardInterrupt` stops the command as the CLI's
//! first Ctrl-C does (files in flight finish, the journal is saved), and is
//! raised once it has stopped, so the same call resumes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use bulkget::cli::CliError;
use bulkget::error::RunError;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    _bulkget,
    Error,
    PyException,
    "What stopped a bulkget call from running (per-file failures are data in its Report)."
);
create_exception!(
    _bulkget,
    UsageError,
    Error,
    "The call's arguments cannot be used (an unknown option, a bad URL)."
);
create_exception!(
    _bulkget,
    ServerError,
    Error,
    "The source could not be listed or answered wrongly."
);
create_exception!(
    _bulkget,
    DestinationError,
    Error,
    "The destination cannot be written (missing, not a directory, disk full)."
);
create_exception!(
    _bulkget,
    CredentialsError,
    Error,
    "No usable credentials for the object store."
);

fn to_py(e: CliError) -> PyErr {
    let msg = e.to_string();
    match e {
        CliError::Args(_) | CliError::Usage(_) | CliError::Run(RunError::Url { .. }) => {
            UsageError::new_err(msg)
        }
        CliError::Run(RunError::List { .. } | RunError::ListLoop { .. }) => {
            ServerError::new_err(msg)
        }
        CliError::Run(RunError::Dest { .. } | RunError::DiskFull(_)) => {
            DestinationError::new_err(msg)
        }
        // The stores say so in their message (no type of its own yet).
        CliError::Run(RunError::Other(ref m)) if m.contains("credentials") => {
            CredentialsError::new_err(msg)
        }
        _ => Error::new_err(msg),
    }
}

/// Runs `bulkget ARGV...` (without the program's name) in this process and
/// returns its exit status (0: all done, 1: some inputs failed). Errors that
/// stop it are raised as `bulkget.Error` and its subclasses; Ctrl-C stops it
/// and raises `KeyboardInterrupt` once its state is saved.
#[pyfunction]
fn run(py: Python<'_>, argv: Vec<String>) -> PyResult<u8> {
    // As the command does: the default connection ceiling follows it.
    static RAISED: std::sync::Once = std::sync::Once::new();
    RAISED.call_once(bulkget::pipeline::raise_fd_limit);
    let stop = Arc::new(AtomicBool::new(false));
    let args: Vec<String> = std::iter::once("bulkget".to_string()).chain(argv).collect();
    let (tx, mut rx) = mpsc::channel::<()>();
    let s = stop.clone();
    let worker = std::thread::Builder::new()
        .name("bulkget".into())
        .spawn(move || {
            let r = bulkget::cli::run(args, Some(s));
            drop(tx);
            r
        })?;
    loop {
        // Moved in and out: a receiver is not Sync, so not borrowed here.
        let (r, back) = py.detach(move || (rx.recv_timeout(Duration::from_millis(100)), rx));
        rx = back;
        match r {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
        if let Err(e) = py.check_signals() {
            stop.store(true, Ordering::Relaxed);
            py.detach(move || {
                let _ = worker.join();
            });
            return Err(e);
        }
    }
    match py.detach(move || worker.join()) {
        Ok(r) => r.map_err(to_py),
        Err(_) => Err(Error::new_err("bulkget: internal error (a panic)")),
    }
}

/// The `bulkget` console script: the command line as the binary runs it
/// (its own Ctrl-C handling, errors on stderr); returns the exit status.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<String>) -> u8 {
    bulkget::cli::abort_on_panic();
    bulkget::pipeline::raise_fd_limit();
    let args: Vec<String> = std::iter::once("bulkget".to_string()).chain(argv).collect();
    py.detach(move || bulkget::cli::exit_status(bulkget::cli::run(args, None)))
}

#[pymodule]
fn _bulkget(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(main, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("UsageError", py.get_type::<UsageError>())?;
    m.add("ServerError", py.get_type::<ServerError>())?;
    m.add("DestinationError", py.get_type::<DestinationError>())?;
    m.add("CredentialsError", py.get_type::<CredentialsError>())?;
    Ok(())
}
