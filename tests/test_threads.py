"""runtime.threads: torch's thread count follows --threads, else the cores other work leaves idle."""

from __future__ import annotations

import os

import torch

from instseg_deploy.runtime import threads


def test_default_leaves_out_busy_cores(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setattr(os, "getloadavg", lambda: (2.6, 0.0, 0.0))
    assert threads.default_threads() == 5
    monkeypatch.setattr(os, "getloadavg", lambda: (30.0, 0.0, 0.0))
    assert threads.default_threads() == 1  # never 0
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert threads.default_threads() == 8


def test_explicit_threads_win_and_are_set(monkeypatch):
    monkeypatch.setattr(threads, "default_threads", lambda: 3)
    before = torch.get_num_threads()
    try:
        assert threads.set_torch_threads(1) == 1 and torch.get_num_threads() == 1
        assert threads.set_torch_threads(0) == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
