"""Fixtures for the conformance tests: where the emulator's clusters listen.

scripts/conformance.sh starts `storpool-emulator` with two clusters and exports
SP_EMULATOR_ADDRS (a JSON file {"cluster": "host:port"}) and SP_EMULATOR_TOKEN.
"""

import json
import os
import urllib.request

import pytest
from storpool import spapi


def _addrs():
    path = os.environ.get("SP_EMULATOR_ADDRS")
    if not path:
        pytest.skip("SP_EMULATOR_ADDRS is not set; run scripts/conformance.sh")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def addrs():
    return _addrs()


@pytest.fixture(scope="session")
def token():
    return os.environ["SP_EMULATOR_TOKEN"]


@pytest.fixture(scope="session")
def make_api(addrs, token):
    """Builds StorPool's own `spapi.Api` for a cluster, unchanged."""

    def make(cluster, **kwargs):
        host, port = addrs[cluster].rsplit(":", 1)
        kwargs.setdefault("auth", token)
        kwargs.setdefault("timeout", 10)
        kwargs.setdefault("transientRetries", 0)
        return spapi.Api(host=host, port=int(port), **kwargs)

    return make


@pytest.fixture(scope="session")
def admin(addrs):
    """POSTs/GETs the emulator's admin endpoints on a cluster's port."""

    def call(cluster, path, body=None):
        url = "http://{}/_emulator/{}".format(addrs[cluster], path)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)

    return call
