"""The Python package, as installed (not the source tree): every call
against `bulkget serve` on 127.0.0.1, every byte checked."""

import asyncio
import os
import resource
import signal
import subprocess
import threading
import time

import pytest

import bulkget
from conftest import BULKGET, name, synthetic


def assert_tree(dest, n):
    got = sorted(f for f in os.listdir(dest) if f != ".bulkget")
    assert got == [name(i) for i in range(n)]
    for i in range(0, n, 7):
        with open(os.path.join(dest, name(i)), "rb") as f:
            assert f.read() == synthetic(name(i)), name(i)


def test_the_console_script_is_the_command():
    out = subprocess.run([BULKGET, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"bulkget {bulkget.__version__}"
    bad = subprocess.run([BULKGET, "mirror"], capture_output=True, text=True)
    assert bad.returncode == 2 and "required" in bad.stderr


def test_mirror_then_a_rerun_skips_what_landed(serve, tmp_path):
    s = serve("--synthetic", "3000")
    dest = tmp_path / "out"
    r = bulkget.mirror(s.url, dest)
    assert (r.files, r.failed, r.skipped, r.listed) == (3000, 0, 0, 3000)
    assert r.bytes == 300_000 and r.files_per_s > 0
    assert list(r.failures()) == []
    assert_tree(dest, 3000)
    again = bulkget.mirror(s.url, dest, max_per_host=4, pipeline=8)
    assert again.files == 0 and again.failed == 0


def test_download_reads_a_generator_as_it_goes(serve, tmp_path):
    s = serve("--synthetic", "2000")
    taken = []

    def urls():
        for i in range(2000):
            taken.append(i)
            yield (f"{s.url}/get/{name(i)}", f"n{i}")
        # a wrong checksum: this file fails, as data
        yield (f"{s.url}/get/{name(0)}", "bad", "00" * 32)

    dest = tmp_path / "out"
    r = bulkget.download(urls(), dest, retries=1)
    assert len(taken) == 2000
    assert (r.files, r.failed) == (2000, 1)
    for i in range(0, 2000, 13):
        assert (dest / f"n{i}").read_bytes() == synthetic(name(i))
    (f,) = list(r.failures())
    assert f.name == "bad" and "sha256" in f.error.lower()
    with pytest.raises(bulkget.Error, match="1 files failed: bad"):
        r.raise_for_failures()
    assert not (dest / "bad").exists()


def test_a_long_generator_is_never_held(serve, tmp_path):
    """10^6 URLs into the null sink: the peak RSS grows by far less than
    the URLs would take held in memory (~100 MB of strings)."""
    s = serve("--synthetic", "1000000")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gen = (f"{s.url}/get/{name(i)}" for i in range(1_000_000))
    r = bulkget.download(gen, tmp_path / "out", sink="null")
    grew_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert r.files == 1_000_000 and r.failed == 0
    assert grew_kib < 30_000, f"peak RSS grew {grew_kib} KiB"


def test_exists_and_stat_answer_in_input_order(serve, tmp_path):
    s = serve("--synthetic", "100")
    local = tmp_path / "here"
    local.write_bytes(b"12345")
    paths = [f"{s.url}/get/{name(5)}", str(local), f"{s.url}/get/nope", str(tmp_path / "no")]
    assert bulkget.exists(paths) == [True, True, False, False]
    st = bulkget.stat(paths)
    assert st[0].size == 100 and st[1].size == 5 and st[2] is None and st[3] is None
    assert st[1].path == str(local) and st[1].mtime.endswith("Z")
    # an error is not absence
    assert bulkget.exists(["http://127.0.0.1:1/x"], retries=0, connect_timeout=1) == [None]
    big = [f"{s.url}/get/{name(i % 150)}" for i in range(20_000)]
    got = list(bulkget.iter_exists(big))
    assert got == [i % 150 < 100 for i in range(20_000)]


def test_eight_threads_call_exists_at_once(serve):
    s = serve("--synthetic", "500")
    out = {}

    def work(k):
        paths = [f"{s.url}/get/{name((i * 7 + k) % 600)}" for i in range(2000)]
        out[k] = (paths, bulkget.exists(paths))

    ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for k in range(8):
        paths, got = out[k]
        assert got == [int(p.rsplit("f", 1)[1]) < 500 for p in paths]


def test_the_gil_is_released_while_a_call_runs(serve, tmp_path):
    s = serve("--synthetic", "20000", "--latency", "1")
    ticks = [0]
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks[0] += 1
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    t0 = time.monotonic()
    bulkget.mirror(s.url, tmp_path / "out", sink="null")
    took = time.monotonic() - t0
    done.set()
    t.join()
    # A thread that sleeps 1 ms a turn gets hundreds of turns a second
    # only if the call lets go of the GIL.
    assert ticks[0] > 100 * took, (ticks[0], took)


def test_ctrl_c_raises_soon_and_the_same_call_resumes(serve, tmp_path):
    # 20 000 files at ~1 000/s: still running when Ctrl-C comes at 1 s.
    s = serve("--synthetic", "20000", "--latency", "50")
    dest = tmp_path / "out"
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        bulkget.mirror(s.url, dest, max_per_host=2, pipeline=25)
    stopped = time.monotonic() - t0
    assert stopped < 3.0, f"KeyboardInterrupt {stopped - 1:.1f} s after Ctrl-C"
    landed = len(os.listdir(dest)) - 1
    assert 0 < landed < 20000
    r = bulkget.mirror(s.url, dest)
    assert r.files + r.skipped >= 20000 - landed and r.failed == 0
    assert r.files < 20000
    assert_tree(dest, 20000)


def test_map_keeps_failures_and_timeouts_with_their_inputs():
    def f(x):
        if x == 3:
            raise ValueError("three")
        if x == 5:
            time.sleep(2)
        return x * 10

    r = bulkget.map(f, range(8), max_workers=4, timeout=0.5)
    assert r.failures
    failed = dict(r.failed)
    assert set(failed) == {3, 5}
    assert isinstance(failed[3], ValueError) and isinstance(failed[5], TimeoutError)
    assert r.succeeded == [0, 10, 20, 40, 60, 70]
    assert r.replace_failed(-1).results == [0, 10, 20, -1, 40, -1, 60, 70]
    keyed = bulkget.map(lambda v: 1 / v, {"a": 1, "b": 0}, max_workers=2)
    assert keyed.succeeded == {"a": 1.0} and list(keyed.failed) == ["b"]
    assert isinstance(keyed["b"], ZeroDivisionError)


def test_map_of_sleeps_runs_them_side_by_side():
    t0 = time.monotonic()
    r = bulkget.map(time.sleep, [0.01] * 2000, max_workers=256)
    took = time.monotonic() - t0
    assert not r.failures and len(r) == 2000
    # ideal: 2000 * 0.01 / 256 = 0.08 s; one at a time would be 20 s
    assert took < 2.0, took


def test_imap_yields_in_completion_order_taking_little_ahead():
    taken = []

    def items():
        for i in range(1000):
            taken.append(i)
            yield i

    it = bulkget.imap(lambda x: x, items(), max_workers=4)
    first = next(it)
    assert first[0] == first[1]
    assert len(taken) <= 2 * 4 + 1
    rest = list(it)
    assert sorted([first] + rest) == [(i, i) for i in range(1000)]


def test_errors_are_typed(serve, tmp_path):
    s = serve("--synthetic", "10")
    with pytest.raises(bulkget.UsageError, match="no-such-flag"):
        bulkget.mirror(s.url, tmp_path / "a", no_such_flag=1)
    with pytest.raises(bulkget.ServerError):
        bulkget.mirror("http://127.0.0.1:1", tmp_path / "b", retries=0, connect_timeout=1)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(bulkget.DestinationError):
        bulkget.mirror(s.url, f / "sub")
    with pytest.raises(ValueError):
        bulkget.download(["http://x/a b"], tmp_path / "c")


def test_the_async_twins_run_under_asyncio(serve, tmp_path):
    s = serve("--synthetic", "300")

    async def main():
        ticker = asyncio.create_task(asyncio.sleep(0))
        r, e = await asyncio.gather(
            bulkget.mirror_async(s.url, tmp_path / "out"),
            bulkget.exists_async([f"{s.url}/get/{name(1)}", f"{s.url}/get/x"]),
        )
        await ticker
        st = await bulkget.stat_async([f"{s.url}/get/{name(2)}"])
        d = await bulkget.download_async([f"{s.url}/get/{name(3)}"], tmp_path / "dl")
        return r, e, st, d

    r, e, st, d = asyncio.run(main())
    assert r.files == 300 and e == [True, False] and st[0].size == 100 and d.files == 1


def test_fetch_one_large_file_over_ranges_checked(serve, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(9 << 20)
    (src / "big.bin").write_bytes(data)
    s = serve(str(src))
    want = __import__("hashlib").sha256(data).hexdigest()
    dest = tmp_path / "got" / "big.bin"
    r = bulkget.fetch(f"{s.url}/get/big.bin", dest, split=4, split_size="1M", sha256=want)
    assert r.files == 1 and dest.read_bytes() == data
    with pytest.raises(bulkget.Error, match="sha256"):
        bulkget.fetch(f"{s.url}/get/big.bin", tmp_path / "bad.bin", sha256="0" * 64, retries=0)
    assert not (tmp_path / "bad.bin").exists()


def test_ls_and_copytree_of_a_local_tree(tmp_path):
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    for i in range(50):
        (src / "a" / "b" / f"f{i}").write_bytes(b"x" * i)
    (src / "top").write_bytes(b"top")
    got = sorted(e.path for e in bulkget.ls(src, recursive=True))
    assert got == sorted([str(src / "top")] + [str(src / "a" / "b" / f"f{i}") for i in range(50)])
    assert [e.path for e in bulkget.ls(src)] != got  # one level only
    dst = tmp_path / "dst"
    r = bulkget.copytree(src, dst)
    assert (r.files, r.failed, r.ledger) == (51, 0, None)
    assert (dst / "a" / "b" / "f49").read_bytes() == b"x" * 49
    again = bulkget.copytree(src, dst)
    assert again.files == 0 and again.skipped == 51


def test_a_progress_callable_gets_the_figures(serve, tmp_path):
    s = serve("--synthetic", "3000", "--latency", "20")
    seen = []
    r = bulkget.mirror(s.url, tmp_path / "out", progress=seen.append, max_per_host=4, pipeline=4)
    assert r.files == 3000
    assert len(seen) >= 2, seen
    assert all(isinstance(p, bulkget.Progress) for p in seen)
    assert seen[0].files <= seen[-1].files <= 3000 and seen[-1].seconds > seen[0].seconds


def _child_exists(path):
    import bulkget as b

    return b.exists([path])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_it_works_under_multiprocessing(method, tmp_path):
    import multiprocessing

    f = tmp_path / "here"
    f.write_text("x")
    assert bulkget.exists([str(f)]) == [True]  # used in the parent first
    with multiprocessing.get_context(method).Pool(2) as pool:
        got = pool.map(_child_exists, [str(f), str(tmp_path / "no")])
    assert got == [[True], [False]]


def test_against_nginx_as_well(nginx, tmp_path):
    r = bulkget.mirror(nginx, tmp_path / "m")
    assert (r.files, r.failed) == (200, 0)
    assert_tree(tmp_path / "m", 200)
    urls = [f"{nginx}/get/{name(i)}" for i in range(0, 200, 3)]
    d = bulkget.download(iter(urls), tmp_path / "d")
    assert d.files == len(urls)
    assert (tmp_path / "d" / name(3)).read_bytes() == synthetic(name(3))
    assert bulkget.exists(urls[:3] + [f"{nginx}/get/nope"]) == [True, True, True, False]
    assert [s.size for s in bulkget.stat(urls[:2])] == [100, 100]
    listed = [e.path for e in bulkget.ls(nginx)]
    assert listed == [f"{nginx}/get/{name(i)}" for i in range(200)]
