"""Declaring options once, with everything the config loader, the CLI and the web UI need to know about them.

Options are attrs fields built with :func:`option`. The field's default is the single source of the default value;
the metadata holds help text, the UI section, choices and bounds. The config loader enforces choices and bounds, and
the web UI renders forms from :func:`describe_options`, so a plugin's options appear without UI code.

Example::

    import attrs
    from simpletuner.core.options import option

    @attrs.define
    class WandbOptions:
        wandb_entity: str | None = option(None, help="W&B team or user to log under", section="publishing")
        wandb_hook: str | None = option(None, help="Command run after each log call", section="publishing",
                                        trust=PRIVILEGED)

    [info.key for info in describe_options(WandbOptions)]  # ['wandb_entity', 'wandb_hook']

Trust classes: on a shared server, configuration is written by partly trusted users. An option that runs a program,
chooses where credentials or data are sent, or loads a file that can hold code is :data:`PRIVILEGED`: only users
allowed to set privileged values may change it, and a job does not start until an admin approved the values. An
option that names a file or folder is a :data:`PATH`: it must resolve inside the workspace or an admin-allowed root.

Labels: an option without a ``label`` is shown under one derived from its key, with the acronyms and product names
of :data:`LABEL_WORDS` spelled properly (``lora_rank`` → "LoRA rank"); give a ``label`` where that still does not
read well (``num_train_epochs`` → "Training epochs").

Editors: ``editor`` names a structured editor of the web UI (see :data:`EDITORS`) for a value that a plain text
field edits badly, e.g. a prompt library as a table of named prompts.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, Union

import attrs

METADATA_KEY = "simpletuner"

#: Trust class of an ordinary value.
PLAIN = "plain"
#: Trust class of a value naming a file or folder: confined to the workspace and the admin-allowed roots.
PATH = "path"
#: Trust class of a value that runs a program, chooses where credentials or data are sent, or loads code.
PRIVILEGED = "privileged"
TRUST_CLASSES = (PLAIN, PATH, PRIVILEGED)

#: The web UI's configuration tabs, in display order, with their titles.
SECTIONS: dict[str, str] = {
    "model": "Model",
    "training": "Training",
    "memory": "Memory Optimisation",
    "dataset": "Dataset",
    "validation": "Validations & Output",
    "publishing": "Publishing",
    "environment": "Environment",
}

#: Structured editors of the web UI an option may ask for, with what each edits.
EDITORS: dict[str, str] = {
    "prompt-library": "an object of name → prompt (or prompt settings), edited as a table of named prompts",
    "lycoris": "the path of a LyCORIS config, with the config itself edited as a form with presets",
}

#: How words of option keys are written in derived labels: acronyms and product names.
LABEL_WORDS: dict[str, str] = {
    "lora": "LoRA", "lycoris": "LyCORIS", "ema": "EMA", "fsdp": "FSDP", "lr": "LR", "vae": "VAE", "t5": "T5",
    "clip": "CLIP", "deepspeed": "DeepSpeed", "fp8": "FP8", "fp16": "FP16", "bf16": "BF16", "s3": "S3", "url": "URL",
    "id": "ID", "ids": "IDs", "ip": "IP", "gpu": "GPU", "gpus": "GPUs", "cpu": "CPU", "cpus": "CPUs", "mb": "MB",
    "snr": "SNR", "hf": "HF", "wandb": "W&B", "sd3": "SD3", "sdxl": "SDXL", "pixart": "PixArt", "flux2": "FLUX.2",
    "flux": "Flux", "tensorboard": "TensorBoard", "sageattention": "SageAttention", "aws": "AWS", "api": "API",
    "json": "JSON", "ldap": "LDAP", "oidc": "OIDC", "sso": "SSO", "tls": "TLS", "dtype": "data type",
    "dir": "folder", "num": "number of", "cls": "class",
}


def derive_label(key: str) -> str:
    """A readable label from an option key: words split at ``_``, acronyms spelled as in :data:`LABEL_WORDS`,
    the first letter capitalised (``fsdp_cpu_offload`` → "FSDP CPU offload")."""
    words = [LABEL_WORDS.get(word.lower(), word) for word in key.split("_") if word]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


@attrs.frozen
class OptionMeta:
    """Metadata attached to an option field."""

    help: str
    section: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    label: str | None = None
    secret: bool = False
    #: Where the set of valid values comes from at run time, e.g. ``"model_family"`` (registered plugin names).
    choices_from: str | None = None
    #: :data:`PLAIN`, :data:`PATH` or :data:`PRIVILEGED`.
    trust: str = PLAIN
    #: A structured editor of :data:`EDITORS` the web UI uses for the value; a plain field when None.
    editor: str | None = None


def option(
    default: Any = attrs.NOTHING,
    *,
    help: str,
    section: str,
    choices: Sequence[Any] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    label: str | None = None,
    secret: bool = False,
    choices_from: str | None = None,
    trust: str = PLAIN,
    editor: str | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """An attrs field describing one config option.

    Args:
        default: the default value (or use ``factory`` for mutable defaults).
        help: one or two sentences shown in ``--help``-style listings and next to the field in the UI.
        section: one of :data:`SECTIONS`, the UI tab the option lives on.
        choices: the allowed values, if the option is an enumeration.
        minimum / maximum: inclusive numeric bounds.
        label: a short UI label; defaults to the key with spaces.
        secret: the value is never echoed back by the API (tokens, passwords).
        choices_from: a plugin kind whose registered names are the allowed values (``"model_family"``, ...).
        trust: :data:`PRIVILEGED` for a command, an endpoint that receives credentials or data, or a file that can
            hold code; :data:`PATH` for a file or folder; :data:`PLAIN` (the default) for everything else.
        editor: a structured editor of :data:`EDITORS` for the web UI (a table, a form) instead of a text field.
    """
    if section not in SECTIONS:
        raise ValueError(f"unknown option section {section!r}; expected one of {', '.join(SECTIONS)}")
    if trust not in TRUST_CLASSES:
        raise ValueError(f"unknown trust class {trust!r}; expected one of {', '.join(TRUST_CLASSES)}")
    if editor is not None and editor not in EDITORS:
        raise ValueError(f"unknown option editor {editor!r}; expected one of {', '.join(EDITORS)}")
    meta = OptionMeta(
        help=help,
        section=section,
        choices=tuple(choices) if choices is not None else None,
        minimum=minimum,
        maximum=maximum,
        label=label,
        secret=secret,
        choices_from=choices_from,
        trust=trust,
        editor=editor,
    )
    if factory is not None:
        return attrs.field(factory=factory, metadata={METADATA_KEY: meta})
    return attrs.field(default=default, metadata={METADATA_KEY: meta})


@attrs.frozen
class OptionInfo:
    """A fully described option, as listed by :func:`describe_options` and served to the web UI."""

    key: str
    type: str
    default: Any
    help: str
    section: str
    owner: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    label: str = ""
    secret: bool = False
    choices_from: str | None = None
    nullable: bool = False
    trust: str = PLAIN
    editor: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (choices as a list)."""
        data = attrs.asdict(self)
        data["choices"] = list(self.choices) if self.choices is not None else None
        return data


def bound_problems(where: str, meta: Any, value: Any) -> list[str]:
    """``where: message`` for ``value`` (or each item of a list value) outside the choices or bounds of ``meta`` (an
    option's metadata or :class:`OptionInfo`); None is always within them."""
    if value is None:
        return []
    problems = []
    for item in value if isinstance(value, list) else [value]:
        if meta.choices is not None and item not in meta.choices:
            problems.append(f"{where}: {item!r} is not one of {', '.join(map(str, meta.choices))}")
        if isinstance(item, float) and math.isnan(item):
            problems.append(f"{where}: must be a number, got nan")
        if meta.minimum is not None and isinstance(item, int | float) and item < meta.minimum:
            problems.append(f"{where}: must be at least {meta.minimum:g}, got {item!r}")
        if meta.maximum is not None and isinstance(item, int | float) and item > meta.maximum:
            problems.append(f"{where}: must be at most {meta.maximum:g}, got {item!r}")
    return problems


def type_name(tp: Any) -> str:
    """A short, user-facing name for a type annotation: ``int``, ``float``, ``str``, ``bool``, ``list[str]``."""
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(names)
    if origin in (list, tuple, Sequence):
        return f"list[{type_name(args[0])}]" if args else "list"
    if origin is dict:
        return "object"
    return getattr(tp, "__name__", str(tp))


def is_nullable(tp: Any) -> bool:
    """True when ``None`` is an allowed value of the annotation."""
    return type(None) in typing.get_args(tp)


def describe_options(cls: type, owner: str = "core") -> list[OptionInfo]:
    """Every option field of an attrs class, in declaration order."""
    hints = typing.get_type_hints(cls)
    infos = []
    for field in attrs.fields(cls):
        meta = field.metadata.get(METADATA_KEY)
        if meta is None:
            raise TypeError(f"{cls.__name__}.{field.name} is not declared with simpletuner.core.options.option()")
        if isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            default = field.default.factory()  # type: ignore[union-attr]
        elif field.default is attrs.NOTHING:
            default = None
        else:
            default = field.default
        tp = hints[field.name]
        infos.append(
            OptionInfo(
                key=field.name,
                type=type_name(tp),
                default=default,
                help=meta.help,
                section=meta.section,
                owner=owner,
                choices=meta.choices,
                minimum=meta.minimum,
                maximum=meta.maximum,
                label=meta.label or derive_label(field.name),
                secret=meta.secret,
                choices_from=meta.choices_from,
                nullable=is_nullable(tp),
                trust=meta.trust,
                editor=meta.editor,
            )
        )
    return infos
