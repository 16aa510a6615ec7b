"""Every option of the core and of every installed plugin has a label a person can read: acronyms and product names
spelled as they are written (LoRA, EMA, FSDP, VAE, ...), no abbreviations left from the key ("lr", "num", "dir"),
and help text; editors named in option metadata exist."""

from __future__ import annotations

import re

import attrs
import pytest

from simpletuner.core.config.core_options import CoreOptions
from simpletuner.core.options import EDITORS, OptionInfo, derive_label, describe_options, option
from simpletuner.core.plugins import Registry
from simpletuner.core.specs import Kind

#: Words that must not appear in a label as written here (case-sensitive: "LoRA" is right, "Lora" and "lora" are
#: not), each with how it should read.
MISSPELT = {
    "Lora": "LoRA", "lora": "LoRA", "Lycoris": "LyCORIS", "lycoris": "LyCORIS", "Ema": "EMA", "ema": "EMA",
    "Fsdp": "FSDP", "fsdp": "FSDP", "Vae": "VAE", "vae": "VAE", "Lr": "learning rate", "lr": "learning rate",
    "t5": "T5", "Clip": "CLIP", "Deepspeed": "DeepSpeed", "deepspeed": "DeepSpeed", "Fp8": "FP8", "fp8": "FP8",
    "s3": "S3", "Url": "URL", "url": "URL", "Id": "ID", "id": "ID", "Ip": "IP", "ip": "IP", "Gpu": "GPU",
    "gpu": "GPU", "gpus": "GPUs", "Gpus": "GPUs", "Cpu": "CPU", "cpu": "CPU", "cpus": "CPUs", "Cpus": "CPUs",
    "mb": "MB", "Mb": "MB", "Snr": "SNR", "snr": "SNR", "Wandb": "W&B", "wandb": "W&B", "Sd3": "SD3", "sd3": "SD3",
    "Pixart": "PixArt", "pixart": "PixArt", "Tensorboard": "TensorBoard", "tensorboard": "TensorBoard",
    "Sageattention": "SageAttention", "Num": "a word", "num": "a word", "Dir": "folder", "dir": "folder",
    "cls": "class", "Dtype": "data type", "dtype": "data type", "Tread": "TREAD", "tread": "TREAD",
}
_WORD = re.compile(r"[A-Za-z0-9]+")


def label_problems(info: OptionInfo) -> list[str]:
    """What reads badly in an option's label and help."""
    problems = [f"{info.owner} {info.key}: label {info.label!r} writes {word!r}, write {MISSPELT[word]}"
                for word in _WORD.findall(info.label) if word in MISSPELT]
    if "_" in info.label:
        problems.append(f"{info.owner} {info.key}: label {info.label!r} is a key, not words")
    if not info.label[:1].isupper() and not info.label.startswith("torch."):
        problems.append(f"{info.owner} {info.key}: label {info.label!r} starts in lower case")
    if len(info.help.strip()) < 10:
        problems.append(f"{info.owner} {info.key}: help {info.help!r} says nothing")
    return problems


def every_option(registry: Registry) -> list[OptionInfo]:
    """The core's options and those of every plugin of every kind that is installed."""
    infos = describe_options(CoreOptions)
    for kind in Kind:
        for name, spec in registry.specs(kind).items():
            options = getattr(spec, "options", None)
            if options is not None:
                infos += describe_options(options, f"{kind.value}:{name}")
    return infos


def test_every_installed_option_has_a_readable_label_and_help() -> None:
    registry = Registry()
    infos = every_option(registry)
    owners = {info.owner.split(":")[0] for info in infos}
    assert {"core", "model_family", "data_backend", "tracker", "auth_provider", "validation_method"} <= owners
    problems = [problem for info in infos for problem in label_problems(info)]
    assert problems == [], "\n".join(problems)


def test_the_check_catches_labels_derived_badly_or_written_badly() -> None:
    @attrs.define
    class Careless:
        fsdp_cpu_offload: bool = option(False, help="Offload the shards to the CPU.", section="memory",
                                        label="Fsdp cpu offload")
        lr_num_cycles: int = option(1, help="Cycles of the learning-rate schedule.", section="training",
                                    label="Lr num cycles")
        use_ema: bool = option(False, help="x", section="training", label="use_ema")

    problems = [p for info in describe_options(Careless, "careless") for p in label_problems(info)]
    assert any("'Fsdp'" in p for p in problems) and any("'cpu'" in p for p in problems)
    assert any("'Lr'" in p for p in problems) and any("'num'" in p for p in problems)
    assert any("is a key" in p for p in problems) and any("says nothing" in p for p in problems)


@pytest.mark.parametrize(("key", "label"), [
    ("lora_rank", "LoRA rank"), ("fsdp_cpu_offload", "FSDP CPU offload"), ("vae_batch_size", "VAE batch size"),
    ("aws_endpoint_url", "AWS endpoint URL"), ("gpu_ids", "GPU IDs"), ("logging_dir", "Logging folder"),
    ("wandb_entity", "W&B entity"), ("sd3_use_t5", "SD3 use T5"), ("my_new_option", "My new option"),
])
def test_derived_labels_spell_acronyms(key: str, label: str) -> None:
    assert derive_label(key) == label


def test_an_editor_must_be_one_the_ui_has() -> None:
    with pytest.raises(ValueError, match="unknown option editor 'spreadsheet'"):
        option(None, help="A table of things.", section="model", editor="spreadsheet")
    editors = {info.key: info.editor for info in every_option(Registry()) if info.editor}
    assert editors == {"lycoris_config": "lycoris", "validation_prompts": "prompt-library"}
    assert set(editors.values()) <= set(EDITORS)
