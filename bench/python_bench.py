"""The Python package's benchmarks (issue 23), one process per case so
that each starts cold; run by bench/python.sh.

    python_bench.py mirror URL OUT STATE     bulkget.mirror from Python
    python_bench.py exists-bulkget URLS      bulkget.exists over a URL file
    python_bench.py exists-pool URLS         multiprocessing.Pool + requests.head (the seed's pattern)
    python_bench.py exists-gevent URLS       a gevent pool of 100 + requests.head
    python_bench.py map-bulkget|map-parallel|map-threads N WIDTH
                                             time.sleep(0.01) over N items at WIDTH

Prints one line: the case, the count, seconds.
"""

import sys
import time


def lines(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def head(url):
    import requests

    return requests.head(url, timeout=30).status_code == 200


_session = None


def head_session(url):
    global _session
    if _session is None:
        import requests

        _session = requests.Session()
    return _session.head(url, timeout=30).status_code == 200


def main():
    case = sys.argv[1]
    t0 = time.monotonic()
    if case == "mirror":
        import bulkget

        r = bulkget.mirror(sys.argv[2], sys.argv[3], state_dir=sys.argv[4], progress=False)
        n = r.files
        assert r.failed == 0
    elif case == "exists-bulkget":
        import bulkget

        got = bulkget.exists(lines(sys.argv[2]))
        n = sum(1 for g in got if g)
    elif case == "exists-pool":
        import multiprocessing

        urls = lines(sys.argv[2])
        with multiprocessing.Pool(64) as pool:
            got = pool.map(head_session, urls, chunksize=64)
        n = sum(got)
    elif case == "exists-gevent":
        from gevent import monkey

        monkey.patch_all()
        from gevent.pool import Pool

        urls = lines(sys.argv[2])
        import requests

        s = requests.Session()
        s.mount("http://", requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=100))
        got = Pool(100).map(lambda u: s.head(u, timeout=30).status_code == 200, urls)
        n = sum(got)
    elif case.startswith("map-"):
        count, width = int(sys.argv[2]), int(sys.argv[3])
        items = [0.01] * count
        if case == "map-bulkget":
            import bulkget

            r = bulkget.map(time.sleep, items, max_workers=width)
            assert not r.failures
        elif case == "map-parallel":
            import parallel

            parallel.map(time.sleep, items, max_workers=width)
        elif case == "map-threads":
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(width) as ex:
                list(ex.map(time.sleep, items))
        n = count
    else:
        raise SystemExit(f"unknown case {case}")
    dt = time.monotonic() - t0
    print(f"{case:16} {n:8d} in {dt:7.2f} s = {n / dt:9.0f}/s")


if __name__ == "__main__":
    main()
