"""bulkget: move enormous numbers of files over HTTP and object stores, fast,
in constant memory, losing none -- from Python.

Every call runs bulkget's engine in this process (a Rust library) with the
GIL released: other threads go on, and several calls may run at once.
Keyword arguments are the command line's flags (``max_per_host=64`` is
``--max-per-host 64``, ``http2_prior_knowledge=True`` is the bare flag) and
default as the command does; ``bulkget get --help`` lists them all.

The options every transfer takes (``mirror``, ``download``, ``fetch``,
``exists``, ``stat``, ``ls``, ``copytree``), as the command's flags:

- ``connections`` (``-c``): connections in all [2048, or a quarter of the
  open-file limit]; ``max_per_host`` [256]: to one host, on all threads;
- ``pipeline`` [64]: requests in flight per connection (1: no pipelining);
- ``retries`` [8]: attempts after the first for connection errors,
  timeouts, 408, 429 and 5xx; ``timeout`` [30.0]: seconds of silence on an
  open connection; ``connect_timeout`` [10.0];
- ``cacert`` (a PEM file), ``insecure``, ``proxy`` (an ``http://`` URL),
  ``http2_prior_knowledge``, ``http1_1``, ``max_redirs`` [10];
- ``endpoint_url``, ``no_sign_request``: for ``s3://``, ``az://``, ``gs://``;
- ``threads``: threads driving the connections [one per core];
- ``state_dir``: the journal and ledger [DEST/.bulkget];
  ``durability`` ["sync"; "none" for scratch runs].

``mirror`` also takes ``sink`` ("dir", "tar", "null") and ``shard_size``;
``download`` and ``fetch`` take ``split`` and ``split_size``; ``copytree``
takes ``overwrite``, ``checksum``, ``workers`` and ``part_size``.

Failures of single files are data (``Report.failures()``), not exceptions;
what stops a call from running raises :class:`Error` or a subclass. Ctrl-C
raises ``KeyboardInterrupt`` once what was in flight has landed and the
journal is saved: the same call then resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import tempfile
import threading
import time
from typing import (
    Any,
    Callable,
    Dict,
    Generic,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

from ._bulkget import (
    CredentialsError,
    DestinationError,
    Error,
    ServerError,
    UsageError,
    __version__,
)
from ._bulkget import run as _run

__all__ = [
    "Error",
    "UsageError",
    "ServerError",
    "DestinationError",
    "CredentialsError",
    "Report",
    "Stat",
    "Entry",
    "Failure",
    "Progress",
    "Results",
    "mirror",
    "download",
    "fetch",
    "ls",
    "copytree",
    "exists",
    "stat",
    "iter_exists",
    "iter_stat",
    "map",
    "imap",
    "mirror_async",
    "download_async",
    "exists_async",
    "stat_async",
    "__version__",
]

PathLike = Union[str, "os.PathLike[str]"]
T = TypeVar("T")
R = TypeVar("R")


# Flags whose names are not a keyword's with dashes for underscores.
_SPELLED = {"http1_1": "--http1.1"}


def _flags(opts: Mapping[str, Any]) -> List[str]:
    """Keyword arguments as command-line flags: True is the bare flag,
    False and None leave it out, anything else is its value."""
    out: List[str] = []
    for k, v in opts.items():
        if v is None or v is False:
            continue
        flag = _SPELLED.get(k) or "--" + k.replace("_", "-")
        if v is True:
            out.append(flag)
        else:
            out += [flag, os.fspath(v) if isinstance(v, os.PathLike) else str(v)]
    return out


class Progress(NamedTuple):
    """The figures of a run so far, given to a ``progress=`` callable about
    once a second."""

    files: int
    bytes: int
    failed: int
    skipped: int
    retries: int
    listed: int
    seconds: float
    files_per_s: float
    bytes_per_s: float


class _Watch:
    """Reads the run's ``--progress-json`` pipe on a thread and hands each
    line to ``callback`` as a :class:`Progress`."""

    def __init__(self, callback: Callable[[Progress], Any]) -> None:
        self.r, self.w = os.pipe()
        self.callback = callback
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    @property
    def path(self) -> str:
        return f"/dev/fd/{self.w}"

    def _read(self) -> None:
        with os.fdopen(self.r, encoding="utf-8") as f:
            for line in f:
                if self.error is not None:
                    continue  # drain: the run must not block on a full pipe
                d = json.loads(line)
                try:
                    self.callback(
                        Progress(
                            d["files"], d["bytes"], d["failed"], d["skipped"], d["retries"],
                            d["listed"], d["seconds"], d["files_per_sec"], d["bytes_per_sec"],
                        )
                    )
                except BaseException as e:  # noqa: BLE001 - raised after the run
                    self.error = e

    def close(self) -> None:
        os.close(self.w)
        self.thread.join()
        if self.error is not None:
            raise self.error


def _display(progress: Any) -> Tuple[List[str], Optional[_Watch]]:
    """The flags for ``progress``: the command's own bar when stderr is a
    terminal (and progress is not False); a callable gets the figures."""
    if callable(progress):
        w = _Watch(progress)
        return ["-q", "--progress-json", w.path], w
    if progress is False or not (progress or sys.stderr.isatty()):
        return ["-q"], None
    return [], None


class Failure(NamedTuple):
    """One file that failed for good, as the ledger records it."""

    name: str
    url: str
    error: str
    attempts: int


class Report(NamedTuple):
    """What a mirror or download did."""

    files: int
    bytes: int
    failed: int
    skipped: int
    seconds: float
    files_per_s: float
    retries: int
    listed: int
    ledger: Optional[str]
    """The failure ledger (JSON lines), if the run keeps one."""

    def failures(self) -> Iterator[Failure]:
        """The files that failed for good, read from the ledger one at a time."""
        if not self.ledger or not os.path.exists(self.ledger):
            return
        with open(self.ledger, encoding="utf-8") as f:
            for line in f:
                try:
                    d = json.loads(line)
                except ValueError:
                    continue  # a torn last line (a killed run)
                if "path" in d:  # copytree's record
                    yield Failure(d["path"], d["path"], d["error"], 0)
                else:
                    yield Failure(d["name"], d["url"], d["error"], d.get("attempts", 0))

    def raise_for_failures(self) -> None:
        """Raises :class:`Error` naming the first failures, if any file failed."""
        if self.failed:
            first = [f"{f.name}: {f.error}" for _, f in zip(range(3), self.failures())]
            raise Error(f"{self.failed} files failed: " + "; ".join(first))


def _report(stats_path: str, ledger: Optional[str]) -> Report:
    with open(stats_path, encoding="utf-8") as f:
        s = json.load(f)
    return Report(
        files=s.get("files", 0),
        bytes=s.get("bytes", 0),
        failed=s.get("failed", 0),
        skipped=s.get("skipped", 0),
        seconds=s.get("seconds", 0.0),
        files_per_s=s.get("files_per_sec", 0.0),
        retries=s.get("retries", 0),
        listed=s.get("listed", 0),
        ledger=ledger,
    )


def _run_report(argv: List[str], progress: Any, ledger: Optional[str]) -> Report:
    shown, watch = _display(progress)
    try:
        with tempfile.TemporaryDirectory(prefix="bulkget-") as tmp:
            stats = os.path.join(tmp, "stats.json")
            code = _run(argv + shown + ["--stats-json", stats])
            if not os.path.exists(stats):
                raise Error(f"bulkget {argv[0]} ended with status {code} and no report")
            return _report(stats, ledger)
    finally:
        if watch is not None:
            watch.close()


def _ledger(dest: PathLike, state_dir: Optional[PathLike]) -> str:
    sd = os.fspath(state_dir) if state_dir else os.path.join(os.fspath(dest), ".bulkget")
    return os.path.join(sd, "failures.jsonl")


def mirror(
    url: str,
    dest: PathLike,
    *,
    sink: str = "dir",
    progress: Any = None,
    state_dir: Optional[PathLike] = None,
    **opts: Any,
) -> Report:
    """Download every file that ``url`` lists into ``dest``: the list API's
    base URL (``GET /list``, ``GET /get/NAME``), ``s3://BUCKET/PREFIX``,
    ``gs://...`` or ``az://...``. ``sink`` is ``"dir"``, ``"tar"`` or
    ``"null"``. A rerun into the same ``dest`` resumes and fetches only
    what is missing; failures are kept in the ledger (``Report.failures()``).
    Other options: the transfer options listed in ``help(bulkget)``
    (``max_per_host=``, ``pipeline=``, ``retries=``, ``timeout=``,
    ``endpoint_url=``, ...), as ``bulkget mirror --help`` gives them.
    """
    argv = ["mirror", url, os.fspath(dest), "--sink", sink]
    argv += _flags(dict(opts, state_dir=state_dir))
    return _run_report(argv, progress, _ledger(dest, state_dir))


def _line(item: Union[str, Tuple[str, ...]]) -> str:
    cols = [item] if isinstance(item, str) else list(item)
    if not 1 <= len(cols) <= 3:
        raise ValueError(f"{item!r}: give a URL, (url, name) or (url, name, sha256)")
    if len(cols) == 3 and cols[2] is not None:
        cols[2] = "sha256=" + cols[2]
    cols = [c for c in cols if c is not None]
    for c in cols:
        if not c or any(ch.isspace() for ch in c):
            raise ValueError(f"{item!r}: URLs and names cannot be empty or hold white space")
    return " ".join(cols) + "\n"


class _Feed:
    """Writes an iterable's lines into a pipe on a thread of its own, so the
    engine reads it as a list file (``/dev/fd/N``) while it is consumed:
    nothing is held beyond the pipe's buffer."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.r, self.w = os.pipe()
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._write, args=(lines,), daemon=True)
        self.thread.start()

    @property
    def path(self) -> str:
        return f"/dev/fd/{self.r}"

    def _write(self, lines: Iterable[str]) -> None:
        try:
            with os.fdopen(self.w, "w", encoding="utf-8", buffering=1 << 16) as f:
                for line in lines:
                    f.write(line)
        except BrokenPipeError:
            pass  # the run ended first (an error, or Ctrl-C)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            self.error = e

    def close(self) -> None:
        os.close(self.r)
        self.thread.join()
        if self.error is not None:
            raise self.error


def download(
    urls: Union[PathLike, Iterable[Union[str, Tuple[str, ...]]]],
    dest: PathLike,
    *,
    progress: Any = None,
    state_dir: Optional[PathLike] = None,
    **opts: Any,
) -> Report:
    """Download ``urls`` into ``dest``: an iterable of URLs, of ``(url,
    name)`` or ``(url, name, sha256)`` tuples (consumed as it goes, never
    held whole), or the path of a list file (``URL [NAME] [sha256=HEX]`` a
    line). Large files go over several Range connections (``split=``).
    A rerun skips what landed. Other options: the transfer options listed
    in ``help(bulkget)``, as ``bulkget get --help`` gives them.
    """
    if isinstance(urls, (str, os.PathLike)):
        feed, path = None, os.fspath(urls)
    else:
        feed = _Feed(_line(u) for u in urls)
        path = feed.path
    argv = ["get", "-i", path, "-o", os.fspath(dest)]
    argv += _flags(dict(opts, state_dir=state_dir))
    try:
        return _run_report(argv, progress, _ledger(dest, state_dir))
    finally:
        if feed is not None:
            feed.close()


def fetch(
    url: str,
    path: PathLike,
    *,
    split: int = 4,
    sha256: Optional[str] = None,
    progress: Any = None,
    **opts: Any,
) -> Report:
    """Download one (large) file to ``path`` over up to ``split`` Range
    connections, checking its ``sha256`` if given. Killed or failed, the
    same call resumes with the parts that landed. Raises :class:`Error`
    if the file did not land."""
    path = os.fspath(path)
    d, name = os.path.split(os.path.abspath(path))
    item = (url, name) if sha256 is None else (url, name, sha256)
    r = download([item], d, split=split, progress=progress, **opts)
    r.raise_for_failures()
    return r


class Entry(NamedTuple):
    """One path a listing found."""

    path: str
    size: Optional[int]
    mtime: Optional[str]
    etag: Optional[str]


def ls(path: PathLike, recursive: bool = False, **opts: Any) -> Iterator[Entry]:
    """The paths under ``path`` (one level, or all with ``recursive``): a
    local directory, a list-API server's base URL, ``s3://``, ``az://``,
    ``gs://``. Streamed as the listing goes."""
    argv = ["ls", os.fspath(path), "--json"] + _flags(dict(opts, recursive=recursive))
    for d in _answers(argv):
        yield Entry(d["path"], d.get("size"), d.get("mtime"), d.get("etag"))


def copytree(src: PathLike, dst: PathLike, *, progress: Any = None, **opts: Any) -> Report:
    """``cp -r``: a tree between local paths and ``s3://``, ``az://``,
    ``gs://`` (any two), or from a list-API server or a URL. A rerun copies
    only what is missing or changed. Options: as ``bulkget cp --help``.
    Failures: a download keeps them in ``DST/.bulkget/failures.jsonl``;
    other copies in a temporary file that ``Report.ledger`` names (removed
    when nothing failed)."""
    argv = ["cp", "-r", os.fspath(src), os.fspath(dst)] + _flags(opts)
    if "://" not in os.fspath(dst) and "://" in os.fspath(src):
        return _run_report(argv, progress, _ledger(dst, opts.get("state_dir")))
    fd, ledger = tempfile.mkstemp(prefix="bulkget-failures-", suffix=".jsonl")
    os.close(fd)
    try:
        r = _run_report(argv + ["--failures", ledger], progress, ledger)
    except BaseException:
        os.unlink(ledger)
        raise
    if not r.failed:
        os.unlink(ledger)
        return r._replace(ledger=None)
    return r


class Stat(NamedTuple):
    """What ``stat`` knows of a path that exists."""

    path: str
    size: Optional[int]
    mtime: Optional[str]
    """RFC 3339, UTC."""
    etag: Optional[str]


def _answers(argv: List[str]) -> Iterator[Dict[str, Any]]:
    """Runs ``argv`` (a command that writes JSON lines to ``-o FILE``) on a
    thread, yielding its lines as they come through a pipe; its error, if
    any, is raised once they are read."""
    r, w = os.pipe()
    box: Dict[str, Any] = {}

    def work() -> None:
        try:
            _run(argv + ["-o", f"/dev/fd/{w}"])
        except BaseException as e:  # noqa: BLE001 - raised by the reader
            box["error"] = e
        finally:
            os.close(w)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        with os.fdopen(r, encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)
    finally:
        t.join()
    if "error" in box:
        raise box["error"]


def _probe_lines(
    mode: str, paths: Iterable[PathLike], opts: Mapping[str, Any]
) -> Iterator[Dict[str, Any]]:
    """``bulkget exists|stat`` over ``paths``: its answers (JSON objects) in
    input order as they come."""
    feed = _Feed(os.fspath(p) + "\n" for p in paths)
    try:
        yield from _answers([mode, "-i", feed.path, "--json", "-q"] + _flags(opts))
    finally:
        feed.close()


def _exists_of(d: Dict[str, Any]) -> Optional[bool]:
    return d.get("exists")


def _stat_of(d: Dict[str, Any]) -> Optional[Stat]:
    if not d.get("exists"):
        return None
    return Stat(d["path"], d.get("size"), d.get("mtime"), d.get("etag"))


def iter_exists(paths: Iterable[PathLike], **opts: Any) -> Iterator[Optional[bool]]:
    """Whether each path exists, in input order, as the answers come: local
    paths, http(s) URLs, ``s3://``, ``az://``, ``gs://``. ``None`` for a
    path that could not be checked (an error is not absence)."""
    return (_exists_of(d) for d in _probe_lines("exists", paths, opts))


def iter_stat(paths: Iterable[PathLike], **opts: Any) -> Iterator[Optional[Stat]]:
    """:class:`Stat` of each path in input order, ``None`` where it does not
    exist or could not be checked."""
    return (_stat_of(d) for d in _probe_lines("stat", paths, opts))


def exists(paths: Iterable[PathLike], **opts: Any) -> List[Optional[bool]]:
    """:func:`iter_exists` as a list."""
    return list(iter_exists(paths, **opts))


def stat(paths: Iterable[PathLike], **opts: Any) -> List[Optional[Stat]]:
    """:func:`iter_stat` as a list."""
    return list(iter_stat(paths, **opts))


class Results(Generic[T, R]):
    """What :func:`map` did: each input's result or exception, in input
    order. Named as the ``parallel`` library names them: with a dict as
    input, ``failed`` and ``succeeded`` are dicts by key; otherwise lists of
    ``(input, exception)`` and of results."""

    def __init__(
        self, inputs: List[Any], keys: Optional[List[Any]], values: List[Any],
        errors: Dict[int, BaseException],
    ) -> None:
        self._inputs = inputs
        self._keys = keys
        self._values = values
        self._errors = errors

    @property
    def failures(self) -> bool:
        """Whether any input failed."""
        return bool(self._errors)

    @property
    def failed(self) -> Union[Dict[Any, BaseException], List[Tuple[Any, BaseException]]]:
        """The inputs that failed, each with its exception."""
        if self._keys is not None:
            return {self._keys[i]: e for i, e in sorted(self._errors.items())}
        return [(self._inputs[i], e) for i, e in sorted(self._errors.items())]

    @property
    def succeeded(self) -> Union[Dict[Any, Any], List[Any]]:
        """The results of the inputs that succeeded."""
        ok = [i for i in range(len(self._values)) if i not in self._errors]
        if self._keys is not None:
            return {self._keys[i]: self._values[i] for i in ok}
        return [self._values[i] for i in ok]

    def replace_failed(self, value: Any) -> "Results[T, R]":
        """The same results with each failure's place holding ``value``."""
        values = [value if i in self._errors else v for i, v in enumerate(self._values)]
        return Results(self._inputs, self._keys, values, {})

    @property
    def results(self) -> Union[List[Any], Dict[Any, Any]]:
        """Every result in input order (a dict by key when the input was a
        dict); a failed input's place holds its exception."""
        vals = [self._errors.get(i, v) for i, v in enumerate(self._values)]
        if self._keys is not None:
            return dict(zip(self._keys, vals))
        return vals

    def __iter__(self) -> Iterator[Any]:
        r = self.results
        return iter(r.values() if isinstance(r, dict) else r)

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, i: Any) -> Any:
        return self.results[i]

    def __repr__(self) -> str:
        return f"Results({len(self)} items, {len(self._errors)} failed)"


class TimeoutFailure(Error, TimeoutError):
    """An input's call ran past ``timeout`` seconds (it goes on in its
    thread; its result is dropped)."""


class _Raised:
    """An exception ``fn`` raised (told apart from one it returned)."""

    __slots__ = ("e",)

    def __init__(self, e: BaseException) -> None:
        self.e = e


def _imap(
    fn: Callable[[T], R],
    items: Iterable[Tuple[int, T]],
    max_workers: int,
    timeout: Optional[float],
) -> Iterator[Tuple[int, T, bool, Any]]:
    """``(index, item, ok, result or exception)`` in completion order.

    Written by hand rather than on ``ThreadPoolExecutor``: a future, a
    condition and ``wait()`` over every pending future cost more per item
    than the calls they run when those are short (measured in
    BENCHMARKS.md). Here ``max_workers`` threads take ``(i, x)`` from one
    queue and put results on another; at most twice ``max_workers`` items
    are taken ahead of the results. A call past ``timeout`` is given up
    (its thread goes on, and a new one takes its place)."""
    if max_workers < 1:
        raise ValueError("max_workers must be at least 1")
    inq: "queue.SimpleQueue[Optional[Tuple[int, T]]]" = queue.SimpleQueue()
    outq: "queue.SimpleQueue[Tuple[int, T, Any]]" = queue.SimpleQueue()
    # Calls in progress, oldest first (dicts keep insertion order).
    started: Dict[int, Tuple[T, float]] = {}
    clock = time.monotonic

    def worker() -> None:
        while True:
            job = inq.get()
            if job is None:
                return
            i, x = job
            started[i] = (x, clock())
            try:
                r: Any = fn(x)
            except BaseException as e:  # noqa: BLE001 - kept with its input
                r = _Raised(e)
            outq.put((i, x, r))

    def spawn() -> None:
        threading.Thread(target=worker, daemon=True, name="bulkget-map").start()

    workers = max_workers
    for _ in range(workers):
        spawn()
    it = iter(items)
    more, ahead = True, 0
    given_up: set = set()
    try:
        while True:
            while more and ahead < 2 * max_workers:
                try:
                    inq.put(next(it))
                    ahead += 1
                except StopIteration:
                    more = False
            if not ahead:
                return
            wait = None
            if timeout is not None and started:
                _, t0 = next(iter(started.values()))
                wait = max(0.0, t0 + timeout - clock())
            try:
                i, x, r = outq.get(timeout=wait)
            except queue.Empty:
                now = clock()
                for i, (x, t0) in list(started.items()):
                    if t0 + timeout > now:  # type: ignore[operator]
                        break
                    del started[i]
                    given_up.add(i)
                    ahead -= 1
                    workers += 1
                    spawn()
                    yield i, x, False, TimeoutFailure(f"{x!r}: no result after {timeout} s")
                continue
            if i in given_up:
                given_up.discard(i)
                workers -= 1
                inq.put(None)  # one thread too many now
                continue
            started.pop(i, None)
            ahead -= 1
            if isinstance(r, _Raised):
                yield i, x, False, r.e
            else:
                yield i, x, True, r
    finally:
        for _ in range(workers):
            inq.put(None)


def imap(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    max_workers: int = 64,
    timeout: Optional[float] = None,
) -> Iterator[Tuple[T, Union[R, BaseException]]]:
    """Runs ``fn`` over ``items`` on ``max_workers`` threads, yielding
    ``(item, result or exception)`` in completion order. At most twice
    ``max_workers`` items are taken from ``items`` ahead of the results, so
    memory stays flat however many there are. An exception of ``fn`` is
    yielded with its input, never raised; so is a :class:`TimeoutFailure`
    for a call past ``timeout`` seconds."""
    for _, x, _, r in _imap(fn, enumerate(items), max_workers, timeout):
        yield x, r


def map(  # noqa: A001 - the name users know from parallel and concurrent.futures
    fn: Callable[[T], R],
    items: Union[Iterable[T], Mapping[Any, T]],
    *,
    max_workers: int = 64,
    timeout: Optional[float] = None,
) -> Results[T, R]:
    """Runs ``fn`` over ``items`` on ``max_workers`` threads and keeps every
    result and every failure with its input (nothing is raised). A dict's
    values are the inputs and its keys name them in the results."""
    keys: Optional[List[Any]] = None
    if isinstance(items, Mapping):
        keys = list(items.keys())
        indexed: Iterable[Tuple[int, T]] = [(i, items[k]) for i, k in enumerate(keys)]
    else:
        indexed = enumerate(items)
    values: Dict[int, Any] = {}
    errors: Dict[int, BaseException] = {}
    inputs: Dict[int, Any] = {}
    for i, x, ok, r in _imap(fn, indexed, max_workers, timeout):
        inputs[i] = x
        values[i] = r if ok else None
        if not ok:
            errors[i] = r
    n = len(values)
    return Results([inputs[i] for i in range(n)], keys, [values[i] for i in range(n)], errors)


async def mirror_async(url: str, dest: PathLike, **opts: Any) -> Report:
    """:func:`mirror` for asyncio programs (on a thread; the loop runs on)."""
    import asyncio  # here: importing it costs a cold start ~50 ms

    return await asyncio.to_thread(mirror, url, dest, **opts)


async def download_async(urls: Any, dest: PathLike, **opts: Any) -> Report:
    """:func:`download` for asyncio programs."""
    import asyncio  # here: importing it costs a cold start ~50 ms

    return await asyncio.to_thread(download, urls, dest, **opts)


async def exists_async(paths: Iterable[PathLike], **opts: Any) -> List[Optional[bool]]:
    """:func:`exists` for asyncio programs."""
    import asyncio  # here: importing it costs a cold start ~50 ms

    return await asyncio.to_thread(exists, paths, **opts)


async def stat_async(paths: Iterable[PathLike], **opts: Any) -> List[Optional[Stat]]:
    """:func:`stat` for asyncio programs."""
    import asyncio  # here: importing it costs a cold start ~50 ms

    return await asyncio.to_thread(stat, paths, **opts)
