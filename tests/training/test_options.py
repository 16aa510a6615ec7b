"""Options that change what is trained: init_lora starts from a LoRA file, use_ema saves the moving average."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simpletuner.core.training.outputs import read_lora
from simpletuner.core.training.saving import EMA_FILE


def test_init_lora_starts_from_the_given_weights(make_env: Callable[..., str], run_env: Callable[..., Any]) -> None:
    first = run_env(make_env("first", max_train_steps=2, learning_rate=1e-2))
    frozen = run_env(make_env("second", max_train_steps=1, learning_rate=0.0, init_lora=str(first.output),
                              adam_weight_decay=0.0))
    before, _ = read_lora(first.output, "transformer")
    after, _ = read_lora(frozen.output, "transformer")
    assert before.keys() == after.keys()
    assert all((before[k] - after[k]).abs().max().item() < 1e-7 for k in before)


def test_ema_is_checkpointed_and_becomes_the_final_model(make_env: Callable[..., str],
                                                         run_env: Callable[..., Any]) -> None:
    plain = run_env(make_env("plain", max_train_steps=4, learning_rate=1e-2))
    averaged = run_env(make_env("ema", max_train_steps=4, learning_rate=1e-2, use_ema=True, ema_decay=0.9,
                                checkpointing_steps=2))
    assert (averaged.output.parent / "checkpoint-2" / EMA_FILE).is_file()  # beside the final model
    live, _ = read_lora(plain.output, "transformer")
    ema, _ = read_lora(averaged.output, "transformer")
    key = next(k for k in live if "lora_B" in k)
    # lora_B starts at zero: the average lags behind the live weights, so it is smaller but not zero
    assert 0 < ema[key].abs().sum().item() < live[key].abs().sum().item()


def test_ema_update_interval_skips_updates_between_its_steps(make_env: Callable[..., str],
                                                            run_env: Callable[..., Any]) -> None:
    every = run_env(make_env("every", max_train_steps=4, learning_rate=1e-2, use_ema=True, ema_decay=0.9))
    never = run_env(make_env("never", max_train_steps=4, learning_rate=1e-2, use_ema=True, ema_decay=0.9,
                             ema_update_interval=5))
    averaged, _ = read_lora(every.output, "transformer")
    untouched, _ = read_lora(never.output, "transformer")
    key = next(k for k in averaged if "lora_B" in k)
    # no update fell within the 4 steps: the average is still the starting LoRA, whose lora_B is zero
    assert averaged[key].abs().sum().item() > 0 and untouched[key].abs().sum().item() == 0


def test_the_batch_readers_memory_follows_batch_memory_cache_mb(make_env: Callable[..., str],
                                                                 run_env: Callable[..., Any],
                                                                 monkeypatch: Any) -> None:
    import simpletuner.core.training.loop as loop

    budgets: list[int] = []
    stream = loop.BatchStream

    def recording(*args: Any, **kwargs: Any) -> Any:
        budgets.append(kwargs["memory_budget"])
        return stream(*args, **kwargs)

    monkeypatch.setattr(loop, "BatchStream", recording)
    run_env(make_env("no-memory", max_train_steps=1, batch_memory_cache_mb=0))
    run_env(make_env("some-memory", max_train_steps=1, batch_memory_cache_mb=3))
    assert budgets == [0, 3 << 20]
