"""runtime.threads: torch's thread count follows --threads, else the cores other work leaves idle; ONNX Runtime's
threads are free when a run returns."""

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


def test_onnx_runtime_threads_stop_spinning_when_a_run_returns(exported_onnx):
    from instseg_deploy.runtime.ort import FORCE_SPINNING_STOP, SessionSettings, load_ort_runner

    runner = load_ort_runner(exported_onnx["raw"], SessionSettings(threads=2))
    options = runner.session.get_session_options()
    assert options.get_session_config_entry(FORCE_SPINNING_STOP) == "1" and options.intra_op_num_threads == 2
