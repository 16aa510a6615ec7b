"""``bench/quantized_memory.py`` parses its options and runs its whole path as a CPU dry run on the tiny model."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "quantized_memory.py"


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("quantized_memory_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_options_and_their_errors(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _bench()
    args = bench.parse_args([])
    assert (args.resolution, args.rank, args.steps, args.precision, args.gradient_checkpointing, args.tiny) == (
        1024, 16, 3, "int8-quanto", True, False)
    assert bench.parse_args(["--no-gradient-checkpointing"]).gradient_checkpointing is False
    with pytest.raises(SystemExit):
        bench.parse_args(["--resolution", "1000"])
    assert "multiple of 16" in capsys.readouterr().err


def test_tiny_dry_run_trains_both_configurations() -> None:
    bench = _bench()
    bf16, quantized, summary = bench.main(["--tiny", "--resolution", "128", "--steps", "2", "--rank", "4"])
    assert bf16["precision"] == "no_change" and bf16["quantized_linear_layers"] == 0
    assert quantized["precision"] == "int8-quanto" and quantized["quantized_linear_layers"] > 10
    assert bf16["trainable_parameters"] == quantized["trainable_parameters"] > 0
    assert len(quantized["losses"]) == 2 and all(loss > 0 for loss in quantized["losses"])
    assert bf16["peak_gib"] is None and summary["ratio"] is None  # no GPU: no memory figures
