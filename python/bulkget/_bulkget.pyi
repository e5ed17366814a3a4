"""Type stubs of the Rust extension (see ``bindings/python/src/lib.rs``)."""

from typing import List

__version__: str

class Error(Exception):
    """What stopped a bulkget call from running."""

class UsageError(Error): ...
class ServerError(Error): ...
class DestinationError(Error): ...
class CredentialsError(Error): ...

def run(argv: List[str]) -> int:
    """Runs ``bulkget ARGV...`` in this process with the GIL released;
    returns its exit status (0 done, 1 some inputs failed)."""

def main(argv: List[str]) -> int:
    """The console script: the command line as the binary runs it."""
