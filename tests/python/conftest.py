"""Fixtures: `bulkget serve` (the installed console script) on 127.0.0.1,
on a port it picks and prints."""

import hashlib
import os
import shutil
import subprocess
import sys

import pytest

BULKGET = shutil.which("bulkget", path=os.path.dirname(sys.executable)) or "bulkget"


class Served:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [BULKGET, "serve", "--addr", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline()
        assert "http://" in line, line
        self.url = line[line.index("http://") :].split()[0]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def serve():
    started = []

    def start(*args: str) -> Served:
        s = Served(*args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def synthetic(name: str) -> bytes:
    """A 100-byte synthetic file's content (bulkget::synthetic::content):
    the hex of BLAKE2b-400 of its name."""
    return hashlib.blake2b(name.encode(), digest_size=50).hexdigest().encode()


def name(i: int) -> str:
    return f"f{i:09d}"


@pytest.fixture
def nginx(tmp_path):
    """nginx serving the list API from static files: `list` (one page of
    200 names) and `get/NAME`, on a socket bound and listening here and
    handed to nginx (its NGINX variable), so no port is guessed or waited
    for."""
    import json
    import socket

    www = tmp_path / "www"
    (www / "get").mkdir(parents=True)
    names = [name(i) for i in range(200)]
    for n in names:
        (www / "get" / n).write_bytes(synthetic(n))
    (www / "list").write_text(json.dumps({"FileNames": names}))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log warn;\nevents {{ worker_connections 256; }}\n"
        f"http {{ access_log off; default_type application/octet-stream;\n"
        f"  client_body_temp_path {tmp_path}; proxy_temp_path {tmp_path};\n"
        f"  fastcgi_temp_path {tmp_path}; uwsgi_temp_path {tmp_path}; scgi_temp_path {tmp_path};\n"
        f"  server {{ listen 127.0.0.1:{port}; root {www}; }} }}\n"
    )
    exe = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin") or "nginx"
    proc = subprocess.Popen(
        [exe, "-p", str(tmp_path), "-c", str(conf)],
        env=dict(os.environ, NGINX=f"{sock.fileno()};"),
        pass_fds=[sock.fileno()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sock.close()  # nginx holds its own copy
    url = f"http://127.0.0.1:{port}"
    yield url
    proc.terminate()
    proc.wait(10)
