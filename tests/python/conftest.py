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
