"""How flow-matching noise levels are drawn (SimpleTuner's keys): logit-normal with ``flow_sigmoid_scale``, uniform
or Beta-distributed, every draw from the run's generator; families that draw their own way refuse the keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from simpletuner.core.config import Layer, build_schema
from simpletuner.core.config.checks import check_config
from simpletuner.core.config.core_options import CoreOptions
from simpletuner.core.plugins import Registry
from simpletuner.core.training.flow_matching import draw_sigmas, sample_sigmas

pytestmark = pytest.mark.timeout(120)


def _draw(core: CoreOptions | None, count: int = 20000) -> torch.Tensor:
    return draw_sigmas(count, torch.Generator().manual_seed(5), core)


def test_each_way_of_drawing_follows_its_options() -> None:
    normal = torch.randn(20000, generator=torch.Generator().manual_seed(5))
    assert torch.equal(_draw(None), torch.sigmoid(normal))  # the default: logit-normal, as before
    assert torch.equal(_draw(CoreOptions()), torch.sigmoid(normal))
    assert torch.equal(_draw(CoreOptions(flow_sigmoid_scale=2.0)), torch.sigmoid(2 * normal))
    assert torch.equal(_draw(CoreOptions(flow_use_uniform_schedule=True)),
                       torch.rand(20000, generator=torch.Generator().manual_seed(5)))

    beta = CoreOptions(flow_use_beta_schedule=True, flow_beta_schedule_alpha=2.0, flow_beta_schedule_beta=5.0)
    drawn = _draw(beta)
    assert abs(drawn.mean().item() - 2 / 7) < 0.01 and 0 < drawn.min() and drawn.max() < 1
    assert torch.equal(drawn, _draw(beta))  # the same generator state, the same draw: resumes repeat it
    generator = torch.Generator().manual_seed(5)
    first, second = draw_sigmas(8, generator, beta), draw_sigmas(8, generator, beta)
    assert not torch.equal(first, second)  # the generator moved on

    wide, narrow = _draw(CoreOptions(flow_sigmoid_scale=3.0)), _draw(None)
    assert ((wide < 0.05) | (wide > 0.95)).float().mean() > 2 * ((narrow < 0.05) | (narrow > 0.95)).float().mean()
    shifted = sample_sigmas(20000, torch.Generator().manual_seed(5), torch.device("cpu"), 3.0,
                            CoreOptions(flow_use_uniform_schedule=True))
    uniform = _draw(CoreOptions(flow_use_uniform_schedule=True))
    assert torch.allclose(shifted, 3 * uniform / (1 + 2 * uniform))  # then shifted as always


def test_config_check_names_the_combinations_that_cannot_act() -> None:
    registry = Registry()
    schema = build_schema(registry)

    def problems(values: dict[str, Any]) -> list[str]:
        config, _ = schema.load([Layer("env:t", values)], own_source="env:t")
        return [p for p in check_config(config, registry)[0] if "flow_" in p]

    assert problems({"model_family": "flux", "flow_use_beta_schedule": True, "flow_sigmoid_scale": 2}) == []
    assert problems({"model_family": "flux", "flow_use_beta_schedule": True, "flow_use_uniform_schedule": True}) == [
        "$.flow_use_uniform_schedule and $.flow_use_beta_schedule are both set; noise levels are drawn one way: "
        "keep one"]
    assert problems({"model_family": "flux", "flow_use_beta_schedule": True, "flow_beta_schedule_alpha": 0}) == [
        "$.flow_beta_schedule_alpha: a Beta distribution's parameters are above 0; set a positive value"]
    for family in ("sd3", "sdxl", "pixart"):
        assert problems({"model_family": family, "flow_use_uniform_schedule": True}) == [
            f"$.flow_use_uniform_schedule: {family} draws its training noise levels its own way (see its options); "
            "remove the key"], family


@pytest.mark.timeout(300)
def test_a_run_draws_from_a_beta_distribution(make_env: Callable[..., str], run_env: Callable[..., Any]) -> None:
    result = run_env(make_env("beta", max_train_steps=2, flow_use_beta_schedule=True, flow_beta_schedule_alpha=3.0,
                              flow_beta_schedule_beta=3.0))
    assert result.output.is_file()
