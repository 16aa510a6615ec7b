"""The GPU suite: speed and memory of a LoRA step at 1024 px for FLUX.1-dev, Sana 1600M and PixArt-Sigma XL sized
transformers with random weights (nothing is downloaded), bare and through the engine with its speed and memory
options, measured one after the other in one process.

usage: python bench/gpu_suite.py [--families sana,pixart,flux] [--rows bare,engine,...] [--steps N] [--warmup 2]
                                [--rank 16] [--budget-s 420] [--grace-s 60] [--workdir DIR] [--dry-run]

Rows (Flux gets every row; Sana and PixArt bare and engine eager unless ``--rows`` names more):

- ``bare``: the bare LoRA step of ``bench/bare_lora_step.py``, a copy of the shared reference script (torch +
  diffusers + peft, random latents and text embeddings straight into the transformer, bf16 weights, fp32 LoRA under
  bf16 autocast, AdamW).
- ``engine``: the engine training the same transformer, LoRA rank and targets from a dataset of images through
  :func:`simpletuner.core.training.run.train` (caches, data loading, noise sampling, the step, metrics, events);
  its ratio to ``bare`` is the engine's overhead (target ≤ 1.05×).
- ``compile``: the engine with ``dynamo_backend: inductor`` and ``dynamo_use_regional_compilation: true`` (each
  repeated block class compiled once); target ≤ 0.42 s/step for Flux.
- ``fp8``: ``compile`` plus ``fp8_training: true`` (torchao float8 matmuls; GPUs of compute capability 8.9 or
  newer, elsewhere the row carries the engine's refusal); stretch target ≤ 0.35 s/step for Flux.
- ``fp8-eager`` (only when ``--rows`` names it; it runs before ``fp8``): ``fp8_training: true`` without
  compilation, which tells a float8 failure from a compiler one.
- ``int8-quanto`` / ``int8-torchao``: ``base_model_precision`` int8 with gradient checkpointing; target peak
  < 16 GiB for Flux.
- ``offload``: ``enable_group_offload`` with ``group_offload_use_stream`` and gradient checkpointing; target peak
  < 12 GiB for Flux.

Every row reports the median s/step of its measured steps (6 for FLUX.1-dev; 20 for Sana and PixArt, whose 0.2 s
steps on an H200 wait on kernel launches more than on arithmetic and so vary more from step to step) after the
warm-up (an engine step is the time between two of its ``step`` events), the peak memory of its steps
(``torch.cuda.max_memory_allocated``, reset when training starts) and its ratio to the family's bare row. A row the
engine refuses or that fails reports why and the suite goes on. One JSON line is printed per row as it completes,
then a Markdown table of them all. The default rows are sized to take about 8 minutes on one H200; rows not started
within ``--budget-s`` are reported skipped, with the command that runs them alone, and the row running when it runs
out stops at its next step (reported cut short, with the median of the steps it measured). A row still running
``--grace-s`` past the budget (a compilation that does not end, say) is reported stopped and the suite ends there
with its table. A row that leaves the GPU unusable (an illegal memory access, a device-side assert) reports its
error, the rows after it are reported skipped, and the suite ends without freeing that row's GPU memory (which would
abort the process before the table is printed). The bare step turns PyTorch's cuDNN attention off for the process
(its backward pass fails for Flux on the reference build, see ``../shared/bench/README.md``), so the engine rows
after it use the same attention kernel. FLUX.1-dev's random weights take 24 GB in the ``--workdir`` folder while its
rows run.

``--dry-run`` runs every row's code path on the CPU in a minute or two with tiny transformers of the same classes
(64–128 px): the compile rows with inductor (``aot_eager`` where no C++ compiler is installed), the FP8 row shows
the engine's refusal, and peaks are the process's peak resident memory (``RSS``) instead of GPU memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_suite_models import Size, build_pipeline, full_sizes, tiny_sizes, transformer_class  # noqa: E402
from step_pairs import BARE_CANDIDATES, DEFAULT_BARE, BareStep, bare_module, write_environment  # noqa: E402

GIB = 1024**3
#: The order rows run in: the small families first and FLUX.1-dev's stretch row last, so that a run past its budget
#: loses the least.
FAMILIES = ("sana", "pixart", "flux")
REGIONAL = {"dynamo_backend": "inductor", "dynamo_use_regional_compilation": True}
#: Measured steps per row unless ``--steps`` says: Sana's and PixArt's launch-bound steps vary more.
DEFAULT_STEPS = {"flux": 6, "sana": 20, "pixart": 20}


@dataclass(frozen=True)
class Target:
    """A target of the issue: ``metric`` (``ratio``, ``step_s`` or ``peak_gib``) at most ``limit`` (below it when
    ``strict``), for the ``families`` it is set for."""

    metric: str
    limit: float
    families: tuple[str, ...] = ("flux",)
    strict: bool = False

    def text(self) -> str:
        """The target as the table shows it."""
        sign = "<" if self.strict else "≤"
        unit = {"ratio": "×", "step_s": " s/step", "peak_gib": " GiB"}[self.metric]
        return f"{sign} {self.limit:g}{unit}"

    def met(self, value: float) -> bool:
        """Whether ``value`` meets the target."""
        return value < self.limit if self.strict else value <= self.limit


@dataclass(frozen=True)
class RowSpec:
    """One kind of row: its title, the engine options it sets (None: the bare step) and its target."""

    title: str
    options: dict[str, Any] | None
    target: Target | None = None
    default_families: tuple[str, ...] = ("flux",)


ROWS: dict[str, RowSpec] = {
    "bare": RowSpec("bare eager", None, default_families=FAMILIES),
    "engine": RowSpec("engine eager", {}, Target("ratio", 1.05, FAMILIES), FAMILIES),
    "compile": RowSpec("engine + regional compile", REGIONAL, Target("step_s", 0.42)),
    "int8-quanto": RowSpec("engine int8-quanto + gradient checkpointing",
                           {"base_model_precision": "int8-quanto", "gradient_checkpointing": True},
                           Target("peak_gib", 16, strict=True)),
    "int8-torchao": RowSpec("engine int8-torchao + gradient checkpointing",
                            {"base_model_precision": "int8-torchao", "gradient_checkpointing": True},
                            Target("peak_gib", 16, strict=True)),
    "offload": RowSpec("engine group offload (stream) + gradient checkpointing",
                       {"enable_group_offload": True, "group_offload_use_stream": True,
                        "gradient_checkpointing": True}, Target("peak_gib", 12, strict=True)),
    # float8 without compilation, on request only: tells a float8 failure from a compiler one
    "fp8-eager": RowSpec("engine + FP8, eager", {"fp8_training": True, "mixed_precision": "bf16"},
                         default_families=()),
    # float8 training computes around its matmuls in bf16: the engine asks for bf16 mixed precision (the GPU rows
    # have it anyway), so that on the CPU the row shows the machine's refusal, not the config's
    "fp8": RowSpec("engine + regional compile + FP8 (stretch)",
                   {**REGIONAL, "fp8_training": True, "mixed_precision": "bf16"}, Target("step_s", 0.35)),
}


@dataclass
class Measured:
    """What one row measured: step times after the warm-up, the peak, and what the engine reported applying."""

    status: str = "ok"
    times: list[float] = field(default_factory=list)
    peak_gib: float | None = None
    applied: dict[str, Any] = field(default_factory=dict)
    #: the row's error left the GPU unusable: no row can run after it
    fatal: bool = False


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The suite's options; unknown families or rows are argparse errors."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", type=_names(FAMILIES), default=None,
                        help=f"comma-separated, of {', '.join(FAMILIES)} (default: all)")
    parser.add_argument("--rows", type=_names(tuple(ROWS)), default=None,
                        help=f"comma-separated, of {', '.join(ROWS)} (default: every row for Flux, bare and engine "
                        "for the others)")
    parser.add_argument("--steps", type=int, default=None, help="measured steps per row, after the warm-up "
                        "(default 6 for flux, 20 for the smaller families)")
    parser.add_argument("--warmup", type=int, default=None, help="steps before measuring (default 2; 1 dry)")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--bare", type=Path, default=DEFAULT_BARE, help="the bare step script")
    parser.add_argument("--workdir", type=Path, default=None, help="where pipelines and workspaces are written "
                        "(FLUX.1-dev's random weights take 24 GB; default: the system's temporary folder)")
    parser.add_argument("--budget-s", type=float, default=None, help="start no row or step after this many "
                        "seconds: the rows left are reported skipped, the one running cut short (default 420, so "
                        "that the suite ends within about 8 minutes on one H200; none in a dry run)")
    parser.add_argument("--grace-s", type=float, default=60.0, help="a row still running this many seconds past "
                        "--budget-s is stopped and the suite ends with its table (default 60)")
    parser.add_argument("--dry-run", action="store_true", help="tiny models on the CPU: check every row's path")
    args = parser.parse_args(argv)
    args.warmup = (1 if args.dry_run else 2) if args.warmup is None else args.warmup
    if args.budget_s is None:
        args.budget_s = math.inf if args.dry_run else 420.0
    if (args.steps is not None and args.steps < 1) or args.budget_s <= 0 or args.grace_s <= 0:
        parser.error("--steps, --budget-s and --grace-s must be positive")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    if not args.bare.is_file():
        looked = ", ".join(str(path) for path in BARE_CANDIDATES)
        parser.error(f"--bare {args.bare}: no such file; pass --bare PATH to the bare step script "
                     f"(bare_lora_step.py, looked for in {looked})")
    return args


def _names(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """An argparse type: a comma-separated list of ``choices``."""

    def parse(value: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in value.split(",") if n.strip())
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            wrong = ", ".join(unknown) if unknown else repr(value)
            raise argparse.ArgumentTypeError(f"{wrong}: choose from {', '.join(choices)}")
        return names
    return parse


def family_args(args: argparse.Namespace, family: str) -> argparse.Namespace:
    """``args`` with the number of measured steps for ``family`` (``--steps``, else its default)."""
    steps = args.steps if args.steps is not None else DEFAULT_STEPS[family]
    return argparse.Namespace(**{**vars(args), "steps": steps})


def plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The (family, row) pairs to run, in order: a family's bare row first (the others' ratios need it)."""
    families = args.families or FAMILIES
    pairs = []
    for family in families:
        for row, spec in ROWS.items():
            chosen = row in args.rows if args.rows else family in spec.default_families
            if chosen:
                pairs.append((family, row))
    return pairs


class MemoryProbe:
    """Peak memory between :meth:`reset` and :meth:`peak_gib`: allocated GPU memory on a GPU; on the CPU the
    process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``), None where Linux' counters
    are unavailable."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.kind = "cuda" if cuda else ("rss" if Path("/proc/self/clear_refs").exists() else None)

    def reset(self) -> None:
        """Start a new peak."""
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        elif self.kind == "rss":
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                self.kind = None

    def peak_gib(self) -> float | None:
        """The peak since the last reset, in GiB."""
        import torch

        if self.cuda:
            return torch.cuda.max_memory_allocated() / GIB
        if self.kind == "rss":
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / GIB
        return None


class BudgetSpent(Exception):
    """Raised by a row's step listener when ``--budget-s`` has run out, to end the engine's run there."""


def cut_short(measured: Measured, args: argparse.Namespace) -> Measured:
    """``measured`` with the status of a row whose steps ended when the budget ran out."""
    measured.status = (f"cut short: --budget-s {args.budget_s:g} ran out after {len(measured.times)} of "
                       f"{args.steps} measured steps")
    return measured


def run_bare(size: Size, args: argparse.Namespace, probe: MemoryProbe, deadline: float = math.inf) -> Measured:
    """The bare step on ``size``'s transformer with the LoRA the engine attaches (peak: its steps only); no step
    starts after ``deadline`` (a ``time.perf_counter`` value)."""
    bare = bare_module(args.bare)
    step = BareStep(bare, size.family, transformer_class(size), dict(size.transformer), size.bare_shapes(),
                    rank=args.rank, gc=False, engine_optimizer={})
    probe.reset()
    times: list[float] = []
    while len(times) < args.warmup + args.steps and time.perf_counter() <= deadline:
        times.append(step.run("script"))
    measured = Measured(times=times[args.warmup:], peak_gib=probe.peak_gib())
    del step
    return measured if len(times) == args.warmup + args.steps else cut_short(measured, args)


def run_engine(workspace: Callable[[], Path], registry: Any, options: dict[str, Any], args: argparse.Namespace,
               probe: MemoryProbe, deadline: float = math.inf) -> Measured:
    """Train the ``bench`` environment of the ``workspace()`` folder with ``options`` over its base config; the peak
    covers the training steps (weights, activations, gradients, optimizer state), reset when the loop starts. The
    run ends at its first step after ``deadline`` (a ``time.perf_counter`` value)."""
    from simpletuner.core.config import load_environment
    from simpletuner.core.environments import EnvironmentStore
    from simpletuner.core.training.run import train
    from simpletuner.core.workspace import Workspace

    folder = workspace()
    config_file = folder / "configs" / "bench" / "config.json"
    base = json.loads(config_file.read_text())
    wanted = args.warmup + args.steps + 1
    config_file.write_text(json.dumps({**base, **options, "max_train_steps": wanted}))
    measured, stamps = Measured(), []

    def listener(event: dict[str, Any]) -> None:
        if event["event"] == "run_started":
            probe.reset()
        elif event["event"] == "speedups":
            measured.applied = {k: v for k, v in event.items() if k not in ("event", "time", "seq")}
        elif event["event"] == "step":
            stamps.append(time.perf_counter())
            measured.peak_gib = probe.peak_gib()
            if stamps[-1] > deadline and len(stamps) < wanted:
                raise BudgetSpent

    ws = Workspace(folder)
    spent = False
    try:
        train(load_environment(ws, EnvironmentStore(ws.configs_dir), "bench", registry), ws, registry,
              listeners=[listener])
    except BudgetSpent:
        spent = True
    finally:
        config_file.write_text(json.dumps(base))
    intervals = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    measured.times = intervals[args.warmup:]
    return cut_short(measured, args) if spent else measured


#: What CUDA reports when its context is lost: every later call fails, and freeing a tensor aborts the process.
FATAL_DEVICE_ERRORS = ("illegal memory access", "device-side assert", "unspecified launch failure")
#: Errors that left the GPU unusable, kept with their frames: freeing the GPU tensors those hold would abort.
_KEPT_ALIVE: list[BaseException] = []


def guarded(run: Callable[[], Measured]) -> Measured:
    """Run a row; the engine's refusal (a :class:`SimpleTunerError`: a config or machine check, whose message
    names the reason and the fix) or any other error becomes the row's status instead of ending the suite."""
    from simpletuner.core.errors import SimpleTunerError

    try:
        return run()
    except SimpleTunerError as exc:
        return Measured(status=f"refused: {_one_line(exc)}")
    except Exception as exc:  # noqa: BLE001 - the row reports any failure; the other rows still run
        traceback.print_exc()
        fatal = any(phrase in str(exc).lower() for phrase in FATAL_DEVICE_ERRORS)
        if fatal:
            _KEPT_ALIVE.append(exc)
        return Measured(status=f"failed: {type(exc).__name__}: {_one_line(exc)}", fatal=fatal)


def _one_line(exc: BaseException) -> str:
    return " ".join(part.strip() for part in str(exc).splitlines() if part.strip()) or type(exc).__name__


def release(cuda: bool) -> None:
    """Free what a row left behind: compiled code (which holds its modules), accelerate's process-wide state (each
    run builds its own Accelerator) and cached GPU blocks."""
    import torch
    from accelerate.state import AcceleratorState, GradientState

    torch._dynamo.reset()
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()


def row_result(family: str, row: str, measured: Measured, bare_s: float | None, probe: MemoryProbe,
               args: argparse.Namespace, elapsed: float) -> dict[str, Any]:
    """The JSON record of one row: figures, ratio to the family's bare row and the target's verdict."""
    ok = (measured.status == "ok" or measured.status.startswith("cut short")) and bool(measured.times)
    step_s = _round(statistics.median(measured.times), 5) if ok else None
    # from the printed figures, so that a reader recomputes the same ratio
    ratio = step_s / bare_s if step_s is not None and bare_s and row != "bare" else None
    spec = ROWS[row]
    target = spec.target if spec.target and family in spec.target.families else None
    met = None
    if target is not None:
        value = {"ratio": ratio, "step_s": step_s, "peak_gib": measured.peak_gib if probe.cuda else None}
        met = _verdict(target, value[target.metric], args.dry_run)
    status = measured.status if measured.times or measured.status != "ok" else "failed: no steps measured"
    return {
        "family": family, "row": row, "title": spec.title, "status": status,
        "step_s": step_s, "step_s_min": _round(min(measured.times), 5) if ok else None,
        "steps": len(measured.times), "peak_gib": _round(measured.peak_gib, 2), "memory": probe.kind,
        "ratio": _round(ratio, 3), "target": target.text() if target else None, "met": met,
        "applied": measured.applied, "elapsed_s": round(elapsed, 1),
    }


def _verdict(target: Target, value: float | None, dry_run: bool) -> str:
    """``met`` or ``not met``, or why there is no verdict (tiny models, or no figure)."""
    if dry_run:
        return "n/a (dry run)"
    if value is None:
        return "n/a"
    return "met" if target.met(value) else "not met"


def _round(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None


def table(results: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = ["| family | row | s/step | peak GiB | ratio vs bare | target | met | status |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        peak = "n/a on CPU" if r["peak_gib"] is None and r["memory"] != "cuda" else _cell(r["peak_gib"], 2)
        if r["memory"] == "rss" and r["peak_gib"] is not None:
            peak = f"{r['peak_gib']:.2f} (RSS)"
        ratio = f"{r['ratio']:.3f}×" if r["ratio"] is not None else "—"
        lines.append(f"| {r['family']} | {r['title']} | {_cell(r['step_s'], 3)} | {peak} | {ratio} | "
                     f"{r['target'] or '—'} | {r['met'] or '—'} | {r['status'].replace('|', '/')} |")
    return "\n".join(lines)


def _cell(value: float | None, decimals: int) -> str:
    return "—" if value is None else f"{value:.{decimals}f}"


class Progress:
    """The rows reported so far, the row running, and whether the GPU was lost (the rows after are skipped).

    ``watch`` starts a watchdog that ends the suite, table printed, when a row is still running ``--grace-s`` past
    the budget: the budget is checked between steps, and a compilation can take longer than the whole budget."""

    def __init__(self, args: argparse.Namespace, probe: MemoryProbe) -> None:
        self.args, self.probe = args, probe
        self.results: list[dict[str, Any]] = []
        self.running: tuple[str, str, float] | None = None  # (family, row, perf_counter at its start)
        self.lost: str | None = None  # why no row can run any more
        self._lock = threading.Lock()
        self._ended = False
        self._watchdog: threading.Timer | None = None

    def emit(self, result: dict[str, Any]) -> None:
        """Print and keep one row's record (nothing once the watchdog ended the suite)."""
        with self._lock:
            if not self._ended:
                print(json.dumps(result), flush=True)
                self.results.append(result)

    def finish(self, started: float) -> list[dict[str, Any]]:
        """Print the table of the rows reported; returns them."""
        if self._watchdog is not None and threading.current_thread() is not self._watchdog:
            self._watchdog.cancel()
        print(table(self.results), flush=True)
        print(f"gpu_suite: {len(self.results)} rows in {time.perf_counter() - started:.0f} s", flush=True)
        return self.results

    def watch(self, started: float) -> None:
        """End the suite ``--grace-s`` after the budget if a row is still running then."""
        if math.isfinite(self.args.budget_s):
            self._watchdog = threading.Timer(self.args.budget_s + self.args.grace_s - (time.perf_counter() - started),
                                             self._overrun, (started,))
            self._watchdog.daemon = True
            self._watchdog.start()

    def _overrun(self, started: float) -> None:
        if self.running is None:
            return
        family, row, row_started = self.running
        waited = time.perf_counter() - row_started
        self.emit(row_result(family, row, Measured(
            status=f"stopped: still running {waited:.0f} s after it started, {self.args.grace_s:g} s past "
                   f"--budget-s {self.args.budget_s:g}; run it alone with --families {family} --rows {row}"),
            None, self.probe, self.args, waited))
        with self._lock:
            self._ended = True
            self.finish(started)
        os._exit(0)  # the row's thread cannot be stopped from here


def family_rows(family: str, rows: list[str], size: Size, args: argparse.Namespace, root: Path, registry: Any,
                probe: MemoryProbe, progress: Progress, deadline: float) -> None:
    """Run ``rows`` of one family: its pipeline folder and workspace are built once, for its engine rows. Rows not
    started by ``deadline`` (a ``time.perf_counter`` value), or after a row lost the GPU, are reported skipped."""
    device = "cuda" if probe.cuda else "cpu"
    args = family_args(args, family)
    bare_s: float | None = None
    # built by the first engine row, inside its guard: a failed build is that row's status
    workspace = cache(partial(_workspace, size, args, root / family, device))
    for row in rows:
        started = time.perf_counter()
        spec = ROWS[row]
        progress.running = (family, row, started)
        if progress.lost:
            measured = Measured(status=f"skipped: {progress.lost}; run it alone with --families {family} --rows {row}")
        elif started > deadline:
            measured = Measured(status=f"skipped: the suite ran past --budget-s {args.budget_s:g}; run it alone "
                                f"with --families {family} --rows {row}")
        elif spec.options is None:
            measured = guarded(partial(run_bare, size, args, probe, deadline))
        else:
            measured = guarded(partial(run_engine, workspace, registry, _row_options(spec.options, args), args,
                                       probe, deadline))
        progress.running = None
        result = row_result(family, row, measured, bare_s, probe, args, time.perf_counter() - started)
        if row == "bare":
            bare_s = result["step_s"]
        progress.emit(result)
        if measured.fatal:
            progress.lost = f"the {family} {row} row left the GPU unusable"
        if not progress.lost:
            release(probe.cuda)


def _workspace(size: Size, args: argparse.Namespace, folder: Path, device: str) -> Path:
    """The family's pipeline folder and a workspace whose ``bench`` environment trains it at the size's shapes
    (in an empty ``folder``: what a failed earlier build left is removed)."""
    shutil.rmtree(folder, ignore_errors=True)
    model = build_pipeline(size, folder / "model", device)
    workspace = folder / "ws"
    write_environment(workspace, size.family, model, size.pixels, {
        "lora_rank": args.rank, "lora_alpha": args.rank, "lora_target_preset": "attention",
        "max_grad_norm": 0.0, size.layout.token_option: size.tokens, **size.layout.options,
    })
    return workspace


def _row_options(options: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """A row's engine options; a dry run without a C++ compiler compiles with ``aot_eager`` (no code generation)."""
    if args.dry_run and options.get("dynamo_backend") == "inductor" and not _cxx():
        return {**options, "dynamo_backend": "aot_eager"}
    return options


def _cxx() -> str | None:
    """The C++ compiler inductor would use on the CPU."""
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")


def header(cuda: bool, args: argparse.Namespace) -> str:
    """The machine and versions the figures belong to."""
    import diffusers
    import torch

    if cuda:
        capability = ".".join(map(str, torch.cuda.get_device_capability()))
        device = f"{torch.cuda.get_device_name()} (compute capability {capability})"
    else:
        device = f"CPU ({os.cpu_count()} cores)"
    size = "tiny dry run" if args.dry_run else "published sizes, 1024 px"
    return (f"gpu_suite: {device}; torch {torch.__version__}, diffusers {diffusers.__version__}; {size}; batch 1, "
            f"LoRA rank {args.rank}; median of {_steps_text(args)}, after {args.warmup} warm-up")


def _steps_text(args: argparse.Namespace) -> str:
    if args.steps is not None:
        return f"{args.steps} steps"
    return f"{DEFAULT_STEPS['flux']} steps for flux, {DEFAULT_STEPS['sana']} for the others"


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the planned rows, printing one JSON line per row and then the table; returns the rows."""
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model is built here: nothing may wait on the network
    if args.dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the dry run is the CPU's, on a GPU machine too
    import torch

    cuda = torch.cuda.is_available()
    if args.dry_run:
        # the dry run checks that inductor compiles the engine's blocks, not how fast they run: scalar C++ kernels
        # compile about twice as fast as vectorised ones on a small CPU
        import torch._inductor.config as inductor

        inductor.cpp.vec_isa_ok = False
    elif not cuda:
        raise SystemExit("gpu_suite needs a CUDA GPU; --dry-run runs its paths on the CPU with tiny models")
    from simpletuner.core.plugins import Registry

    print(header(cuda, args), flush=True)
    sizes = tiny_sizes() if args.dry_run else full_sizes()
    probe, registry = MemoryProbe(cuda), Registry()
    progress = Progress(args, probe)
    pairs, started = plan(args), time.perf_counter()
    progress.watch(started)
    for family in dict.fromkeys(f for f, _ in pairs):
        rows = [r for f, r in pairs if f == family]
        with tempfile.TemporaryDirectory(prefix=f"gpu-suite-{family}-", dir=args.workdir) as root:
            family_rows(family, rows, sizes[family], args, Path(root), registry, probe, progress,
                        started + args.budget_s)
    return progress.finish(started)


if __name__ == "__main__":
    main()
    if _KEPT_ALIVE:
        sys.stdout.flush()
        os._exit(0)  # the interpreter's teardown would free the lost GPU's tensors and abort
