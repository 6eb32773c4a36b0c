"""Flower as documented for production: its HTML pages ask for the same
credentials as its API (flowerconfig.py)."""

import os
import subprocess
import sys

import pytest
import requests

from tests.support.processes import ROOT, free_port, wait_for

pytestmark = pytest.mark.e2e


def flower(redis_server, **env):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_app", "flower", f"--port={port}"],
        cwd=ROOT, env={**os.environ, "CELERY_BROKER_URL": redis_server.url, **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def answers(url):
    try:
        return requests.get(url, timeout=2).status_code
    except requests.RequestException:
        return None


def test_every_flower_page_and_the_api_need_the_credentials(redis_server):
    proc, url = flower(redis_server, FLOWER_BASIC_AUTH="ops:s3cret-flower")
    try:
        wait_for(lambda: answers(url + "/"), timeout=30, interval=0.2, message="Flower to answer")
        for path in ("/", "/workers", "/tasks", "/broker", "/api/workers", "/api/tasks"):
            assert requests.get(url + path, timeout=5).status_code == 401, path
        assert requests.get(url + "/workers", auth=("ops", "s3cret-flower"), timeout=5).status_code == 200
        assert requests.get(url + "/workers", auth=("ops", "wrong"), timeout=5).status_code == 401
    finally:
        proc.kill()
        proc.wait()


def test_flower_refuses_to_listen_beyond_loopback_without_credentials(redis_server):
    proc, _url = flower(redis_server, FLOWER_ADDRESS="0.0.0.0", FLOWER_BASIC_AUTH="")
    try:
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0 and b"FLOWER_BASIC_AUTH" in output
