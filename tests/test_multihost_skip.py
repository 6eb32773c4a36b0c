"""Where network namespaces cannot be created, the multihost bench scenario
writes no keys and says why in one line (bench/multihost.py)."""

import subprocess

from bench import multihost


class _Bench:
    size = "tiny"

    def __init__(self):
        self.lines = []

    def log(self, line):
        self.lines.append(line)


def test_without_root_the_scenario_writes_no_keys_and_says_it_needs_root(monkeypatch):
    monkeypatch.setattr(multihost.os, "geteuid", lambda: 1000)
    bench = _Bench()
    assert multihost.multihost(bench) == {}
    assert bench.lines == ["multihost skipped: creating network namespaces needs root (running as uid 1000)"]


def test_without_the_ip_command_the_reason_names_iproute2(monkeypatch):
    monkeypatch.setattr(multihost.os, "geteuid", lambda: 0)
    monkeypatch.setattr(multihost.shutil, "which", lambda name: None)
    assert multihost.unavailable_reason() == "multihost skipped: the `ip` command (iproute2) is not installed"


def test_when_ip_netns_add_is_refused_the_reason_quotes_the_error(monkeypatch):
    calls = []

    def refused(*args, check=True):
        calls.append(args)
        return subprocess.CompletedProcess(["ip", *args], 1, "", "mount --make-shared /run/netns failed: Operation not permitted\n")

    monkeypatch.setattr(multihost.os, "geteuid", lambda: 0)
    monkeypatch.setattr(multihost.shutil, "which", lambda name: "/usr/sbin/ip")
    monkeypatch.setattr(multihost, "_ip", refused)
    assert multihost.unavailable_reason() == (
        "multihost skipped: `ip netns add` failed: mount --make-shared /run/netns failed: Operation not permitted")
    assert calls[-1][:2] == ("netns", "del")  # the probe is cleaned up whatever happened
