"""The frozen spec objects that plugins pass to ``register`` (see :mod:`simpletuner.core.hookspecs`).

A spec is pure metadata plus a lazy ``factory``: everything the CLI, the config checker and the web UI need to know
about a plugin is readable without importing the heavy implementation behind it. Each kind has a typed factory
protocol (what the factory is called with and returns) and a ``build`` method, the one place the engine and the server
call a factory. :func:`lazy` makes a factory from a ``"module:attribute"`` string, so an entry module imports nothing
of its implementation.
"""

from __future__ import annotations

import enum
import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import attrs

if TYPE_CHECKING:
    from simpletuner.core.interfaces import (
        AuthProvider,
        DataBackend,
        Executor,
        ModelFamily,
        Publisher,
        Quantizer,
        TokenAccount,
        Tracker,
        ValidationMethod,
    )
    from simpletuner.core.interfaces.auth_provider import AccountStore

_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")


def normalize_name(name: str) -> str:
    """The canonical form of a plugin or flavour name: lowercase, with ``_`` and spaces turned into ``-``."""
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def _valid_name(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not _NAME_PATTERN.match(normalize_name(value)):
        raise ValueError(
            f"{type(instance).__name__}.{attribute.name} must be a name of letters, digits, '-', '_' or '.', "
            f"got {value!r}"
        )


def _as_tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(value)


def _normalized_names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(normalize_name(name) if isinstance(name, str) else name for name in value)


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


def lazy(target: str) -> Callable[..., Any]:
    """A factory that imports ``"package.module:attribute"`` (the attribute may be dotted, e.g.
    ``Class.from_options``) when it is called and calls that with the same arguments; the entry module that
    registers it stays free of the implementation's imports.

    >>> make = lazy("datetime:date.fromisoformat")
    >>> make("2026-12-03")
    datetime.date(2026, 12, 3)
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"lazy() takes 'package.module:attribute', got {target!r}")

    def factory(*args: Any, **kwargs: Any) -> Any:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
        return found(*args, **kwargs)

    factory.__qualname__ = factory.__name__ = f"lazy({target!r})"
    return factory


class ModelFamilyFactory(Protocol):
    """Builds the family of one run: ``factory(spec, flavour=..., options=...)`` — usually the family class."""

    def __call__(self, spec: ModelFamilySpec, *, flavour: Flavour | None, options: Any) -> ModelFamily: ...


class QuantizerFactory(Protocol):
    """Builds a quantizer from its options instance (None when it declares none)."""

    def __call__(self, options: Any) -> Quantizer: ...


class DataBackendFactory(Protocol):
    """Builds the storage of one dataset: its root (a folder, or a key prefix of remote storage) and the entry's
    backend options as a dict."""

    def __call__(self, root: str, options: Mapping[str, Any]) -> DataBackend: ...


class TrackerFactory(Protocol):
    """Builds a tracker from its options instance."""

    def __call__(self, options: Any) -> Tracker: ...


class PublisherFactory(Protocol):
    """Builds a publisher from its options instance."""

    def __call__(self, options: Any) -> Publisher: ...


class AuthProviderFactory(Protocol):
    """Builds a login provider from its options and the server's local accounts (which most providers ignore)."""

    def __call__(self, options: Any, accounts: AccountStore) -> AuthProvider: ...


class ValidationMethodFactory(Protocol):
    """Builds a validation method from its options instance."""

    def __call__(self, options: Any) -> ValidationMethod: ...


class ExecutorFactory(Protocol):
    """Builds an executor from its options instance (the environment's values with a job's overrides)."""

    def __call__(self, options: Any) -> Executor: ...


class Kind(enum.Enum):
    """The kinds of thing a plugin can provide; each has one ``register_*`` hook."""

    MODEL_FAMILY = "model_family"
    QUANTIZER = "quantizer"
    DATA_BACKEND = "data_backend"
    TRACKER = "tracker"
    PUBLISHER = "publisher"
    AUTH_PROVIDER = "auth_provider"
    VALIDATION_METHOD = "validation_method"
    EXECUTOR = "executor"

    @property
    def hook_name(self) -> str:
        """The name of the hook that collects this kind, e.g. ``register_model_families``."""
        return _HOOK_NAMES[self]

    @property
    def plural(self) -> str:
        """Human-readable plural, e.g. ``model families``."""
        return self.hook_name.removeprefix("register_").replace("_", " ")


_HOOK_NAMES = {
    Kind.MODEL_FAMILY: "register_model_families",
    Kind.QUANTIZER: "register_quantizers",
    Kind.DATA_BACKEND: "register_data_backends",
    Kind.TRACKER: "register_trackers",
    Kind.PUBLISHER: "register_publishers",
    Kind.AUTH_PROVIDER: "register_auth_providers",
    Kind.VALIDATION_METHOD: "register_validation_methods",
    Kind.EXECUTOR: "register_executors",
}


@attrs.frozen
class Provider:
    """Where a registered spec came from: the plugin, its entry point and the distribution that installed it."""

    plugin: str
    entry_point: str | None = None
    distribution: str | None = None
    version: str | None = None

    def describe(self) -> str:
        """``distribution version`` when installed from a distribution, else the plugin's name."""
        if self.distribution:
            return f"{self.distribution} {self.version or ''}".strip()
        return f"plugin {self.plugin!r}"


@attrs.frozen(kw_only=True)
class PluginSpec:
    """What every spec has.

    Attributes:
        name: the name users write in configs (normalised: lowercase, ``-``).
        title: a short human-readable name for the UI.
        description: one or two sentences for ``plugins list`` and the UI.
        factory: (on each kind's spec) builds the implementation when it is needed; see the kind's factory
            protocol. Import heavy libraries inside it, not at module top (:func:`lazy` does that).
        options: an attrs class of this plugin's own options (built with :func:`simpletuner.core.options.option`),
            or None. Its fields become config keys, so name them with a prefix of the plugin (``wandb_entity``).
        provider: filled in by the core when the spec is registered; plugins leave it None.
    """

    name: str = attrs.field(validator=_valid_name, converter=normalize_name)
    title: str
    description: str
    options: type | None = None
    provider: Provider | None = None

    kind: ClassVar[Kind]  # set by each subclass

    def __attrs_post_init__(self) -> None:
        if self.options is not None and not attrs.has(self.options):
            raise TypeError(f"{type(self).__name__}({self.name!r}).options must be an attrs class")

    def options_or_default(self, options: Any) -> Any:
        """``options``, or an instance of the options class with every default when None is given."""
        if options is None and self.options is not None:
            return self.options()
        return options


@attrs.frozen(kw_only=True)
class Flavour:
    """A named variant of a model family: where its weights live and which settings it turns on.

    Attributes:
        name: the ``model_flavour`` value.
        pretrained: Hugging Face repository id (or local folder) of the diffusers-format weights.
        description: one line shown in the wizard.
        settings: config values this flavour pre-enables (e.g. ``{"flux_guidance_mode": "constant"}``); a user's own
            value for the same key wins.
    """

    name: str = attrs.field(validator=_valid_name, converter=normalize_name)
    pretrained: str
    description: str = ""
    settings: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping, eq=False)


@attrs.frozen(kw_only=True)
class MemoryPreset:
    """A family's memory preset (``light``, ``balanced``, ``aggressive``): the settings it changes and their cost."""

    name: str = attrs.field(validator=_valid_name, converter=normalize_name)
    tradeoff: str
    settings: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping, eq=False)


@attrs.frozen(kw_only=True)
class TinyModel:
    """A tiny random-weight pipeline of a family, built on this machine with no download: what ``simpletuner demo``,
    the web UI's onboarding and the tests train, so a family added by a plugin gets them too.

    Attributes:
        build: called with a folder; writes a diffusers pipeline folder there (``model_index.json``, components)
            that the family's ``from_pretrained`` path loads, and returns it. Usually ``lazy("pkg.tiny:build")``.
        settings: config values a run on it needs (its flavour, token limits, ...).
    """

    build: Callable[[Path], Path] = attrs.field(eq=False, repr=False)
    settings: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping, eq=False)


_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def _import_path(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not (isinstance(value, str) and _IMPORT_PATH.match(value)):
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be 'package.module:name', got {value!r}")


@attrs.frozen(kw_only=True)
class Usage:
    """How a family's trained outputs load into its stock diffusers pipeline: the code model cards and the web UI's
    job page show (see :mod:`simpletuner.core.usage`). Each entry is a ``"package.module:name"`` import path that
    users' code imports, so a loader must be a public, documented function of an installed package.

    Attributes:
        pipeline: the pipeline class, loaded with ``from_pretrained`` on the base model.
        lora: the LoRA loader, called as ``load(pipeline, source)`` (``source``: a Hub repository id, a folder or the
            file); None when the pipeline loads LoRAs itself with ``pipeline.load_lora_weights(source)``.
        lycoris: the LyCORIS loader, called the same way (diffusers reads no LyCORIS file).
        full: the class whose ``from_pretrained(source, subfolder=<component>)`` loads a fully trained component,
            which is then given to the pipeline under the component's name.

    >>> Usage(pipeline="diffusers:PixArtSigmaPipeline", lora="simpletuner.model_families.pixart:load_lora").lycoris
    'simpletuner.core.inference:load_lycoris'
    """

    pipeline: str = attrs.field(default="diffusers:DiffusionPipeline", validator=_import_path)
    lora: str | None = attrs.field(default=None, validator=_import_path)
    lycoris: str = attrs.field(default="simpletuner.core.inference:load_lycoris", validator=_import_path)
    full: str = attrs.field(default="diffusers:AutoModel", validator=_import_path)


@attrs.frozen(kw_only=True)
class ModelFamilySpec(PluginSpec):
    """Registers a model family.

    Attributes:
        flavours: the named variants; the first is the default unless ``default_flavour`` says otherwise.
        model_types: training modes the family supports (``lora``, ``full``).
        lora_types: adapter kinds supported under ``model_type: lora`` (``standard`` = PEFT LoRA, ``lycoris``).
        precisions: ``base_model_precision`` values the family accepts (``no_change`` always included).
        discouraged_precisions: precision → why it is a bad idea for this family (a warning at config check).
        memory_presets: light / balanced / aggressive presets.
        tiny: the family's tiny random-weight pipeline (for the demo and tests), if it offers one.
        usage: how its LoRA, LyCORIS and full outputs load into a stock diffusers pipeline; the default suits a
            family whose pipeline ``DiffusionPipeline`` finds and which loads LoRAs itself.
        aliases: other names a config may give the family, e.g. SimpleTuner's (``pixart_sigma``); normalised like
            the name, and, like names, never claimed by two families.
        lora_layouts: other key layouts the final LoRA can also be saved in (``lora_save_formats``), by name →
            a (lazy) converter ``(peft state dict of the trained component, the LoRA scale alpha / rank, the trained
            component) -> state dict in that layout``; e.g. ``kohya`` for the ``lora_unet_…`` keys ComfyUI, Forge
            and kohya's scripts load.
        attention_backends: whether the trained model's attention runs through diffusers' attention dispatcher,
            so that ``attention_mechanism`` can choose its kernels (FlashAttention, SageAttention, …).
        fp8_training: whether ``fp8_training`` may swap the trained model's linear layers for torchao's float8
            training layers (all but those matching its quantization exclusions); without it, a config error.
        flow_sigma_draws: whether its ``training_inputs`` draw σ with ``flow_matching.flow_sample`` and the run's
            options, so ``flow_sigmoid_scale``, ``flow_use_uniform_schedule`` and ``flow_use_beta_schedule`` act;
            without it those are config errors.
        resolution_shift: whether its flow-matching schedule can shift by each batch's image size
            (``flow_schedule_auto_shift``): its pipelines' scheduler configs give the shift range
            (``base_image_seq_len``, ``max_image_seq_len``, ``base_shift``, ``max_shift``) and its
            ``training_inputs`` pass their image token count to ``flow_matching.batch_shift``.
    """

    flavours: tuple[Flavour, ...] = attrs.field(converter=_as_tuple)
    default_flavour: str | None = None
    model_types: tuple[str, ...] = ("lora", "full")
    lora_types: tuple[str, ...] = ("standard", "lycoris")
    precisions: tuple[str, ...] = ("no_change",)
    discouraged_precisions: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping, eq=False)
    memory_presets: tuple[MemoryPreset, ...] = attrs.field(default=(), converter=_as_tuple)
    tiny: TinyModel | None = None
    usage: Usage = attrs.field(factory=Usage)
    aliases: tuple[str, ...] = attrs.field(default=(), converter=_normalized_names,
                                           validator=attrs.validators.deep_iterable(_valid_name))
    lora_layouts: Mapping[str, Callable[..., Any]] = attrs.field(factory=dict, converter=_frozen_mapping, eq=False)
    attention_backends: bool = False
    fp8_training: bool = False
    flow_sigma_draws: bool = False
    resolution_shift: bool = False

    factory: ModelFamilyFactory = attrs.field(eq=False, repr=False)

    kind = Kind.MODEL_FAMILY

    def build(self, flavour: Flavour | None, options: Any) -> ModelFamily:
        """The family for a run of ``flavour`` with the family's options instance."""
        return self.factory(self, flavour=flavour, options=self.options_or_default(options))

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if not self.flavours:
            raise ValueError(f"model family {self.name!r} must declare at least one flavour")
        names = [f.name for f in self.flavours]
        if len(set(names)) != len(names):
            raise ValueError(f"model family {self.name!r} declares a flavour twice: {names}")
        if self.default_flavour is not None and normalize_name(self.default_flavour) not in names:
            raise ValueError(f"model family {self.name!r}: default flavour {self.default_flavour!r} is not declared")
        if self.name in self.aliases or len(set(self.aliases)) != len(self.aliases):
            raise ValueError(f"model family {self.name!r} repeats a name among its aliases: {list(self.aliases)}")

    def flavour(self, name: str | None) -> Flavour | None:
        """The flavour called ``name`` (the default flavour for None), or None if the family has no such flavour."""
        wanted = normalize_name(name) if name else normalize_name(self.default_flavour or self.flavours[0].name)
        return next((f for f in self.flavours if f.name == wanted), None)

    def memory_preset(self, name: str) -> MemoryPreset | None:
        """The memory preset called ``name``, or None."""
        wanted = normalize_name(name)
        return next((p for p in self.memory_presets if p.name == wanted), None)


@attrs.frozen(kw_only=True)
class QuantizerSpec(PluginSpec):
    """Registers a quantizer; ``precisions`` are the ``base_model_precision`` values it provides."""

    precisions: tuple[str, ...] = attrs.field(converter=_as_tuple)

    factory: QuantizerFactory = attrs.field(eq=False, repr=False)

    kind = Kind.QUANTIZER

    def build(self, options: Any) -> Quantizer:
        """The quantizer, with its options instance."""
        return self.factory(self.options_or_default(options))


@attrs.frozen(kw_only=True)
class DataBackendSpec(PluginSpec):
    """Registers a data backend; a dataset entry's ``type`` names it.

    Attributes:
        local_paths: True when the factory's root is a folder on this machine: an entry's ``instance_data_dir``,
            ``cache_dir_vae`` and ``cache_dir`` are resolved against the workspace first. False for remote storage:
            they reach the factory as written (``""`` for an unset ``instance_data_dir``), and a cache whose folder
            the entry leaves unset stays on this machine, in the run's output folder.
        local_caches: True for a backend that only reads a dataset (``huggingface``): its entries' cache folders
            (``cache_dir_vae``, ``cache_dir``) are folders on this machine, resolved against the workspace and kept
            by the ``local`` backend.
    """

    local_paths: bool = True
    local_caches: bool = False

    factory: DataBackendFactory = attrs.field(eq=False, repr=False)

    kind = Kind.DATA_BACKEND

    def build(self, root: str, options: Mapping[str, Any]) -> DataBackend:
        """The storage of one dataset."""
        return self.factory(root, options)


@attrs.frozen(kw_only=True)
class TrackerSpec(PluginSpec):
    """Registers a tracker; ``report_to`` names it. ``sends_data`` is True when it sends data off this machine."""

    sends_data: bool = False

    factory: TrackerFactory = attrs.field(eq=False, repr=False)

    kind = Kind.TRACKER

    def build(self, options: Any) -> Tracker:
        """The tracker, with its options instance."""
        return self.factory(self.options_or_default(options))


@attrs.frozen(kw_only=True)
class UserToken:
    """A publisher that publishes as each user with a token of their own, which they store through the web UI: the
    server checks it with ``verify`` and hands the job owner's stored token to the training process.

    Attributes:
        title: the service, as users know it ("Hugging Face Hub").
        file_env_var: the environment variable through which a job's process receives the path of its owner's
            token file (one line).
        verify: ``verify(endpoint, token) -> TokenAccount``; raises
            :class:`~simpletuner.core.interfaces.TokenRefused` saying why it cannot publish with it.
        default_endpoint: the service's endpoint when the run's config names none.
        endpoint_option: the (privileged) option naming the service's endpoint in a config, if there is one.
    """

    title: str
    file_env_var: str
    verify: Callable[[str, str], TokenAccount] = attrs.field(eq=False, repr=False)
    default_endpoint: Callable[[], str] = attrs.field(eq=False, repr=False)
    endpoint_option: str | None = None


@attrs.frozen(kw_only=True)
class PublisherSpec(PluginSpec):
    """Registers a publisher. ``sends_data`` is True when it sends data off this machine; ``user_token`` declares
    that it publishes as each user with their own token."""

    sends_data: bool = False
    user_token: UserToken | None = None

    factory: PublisherFactory = attrs.field(eq=False, repr=False)

    kind = Kind.PUBLISHER

    def build(self, options: Any) -> Publisher:
        """The publisher, with its options instance."""
        return self.factory(self.options_or_default(options))


@attrs.frozen(kw_only=True)
class AuthProviderSpec(PluginSpec):
    """Registers a login method: ``password`` style (username + password) or ``redirect`` style (SSO)."""

    style: Literal["password", "redirect"] = attrs.field(validator=attrs.validators.in_(("password", "redirect")))

    factory: AuthProviderFactory = attrs.field(eq=False, repr=False)

    kind = Kind.AUTH_PROVIDER

    def build(self, options: Any, accounts: AccountStore) -> AuthProvider:
        """The provider, with its options instance and the server's local accounts."""
        return self.factory(self.options_or_default(options), accounts)


@attrs.frozen(kw_only=True)
class ValidationMethodSpec(PluginSpec):
    """Registers a validation method; ``validation_method`` names it."""

    factory: ValidationMethodFactory = attrs.field(eq=False, repr=False)

    kind = Kind.VALIDATION_METHOD

    def build(self, options: Any) -> ValidationMethod:
        """The validation method, with its options instance."""
        return self.factory(self.options_or_default(options))


@attrs.frozen(kw_only=True)
class ExecutorSpec(PluginSpec):
    """Registers an executor: where and how a training job runs (the server's own supervisor, a Ray cluster, Slurm).

    The environment option ``executor`` names it; a job may override it and its options when it is started.

    Attributes:
        local_gpus: True when its jobs run on the server's own GPUs: the server's queue then keeps one job per GPU
            set, first come first served. False when a cluster's scheduler places them: jobs are handed over at once.
    """

    local_gpus: bool = False

    factory: ExecutorFactory = attrs.field(eq=False, repr=False)

    kind = Kind.EXECUTOR

    def build(self, options: Any) -> Executor:
        """The executor, with its options instance."""
        return self.factory(self.options_or_default(options))


SPEC_CLASSES: Mapping[Kind, type[PluginSpec]] = MappingProxyType(
    {
        Kind.MODEL_FAMILY: ModelFamilySpec,
        Kind.QUANTIZER: QuantizerSpec,
        Kind.DATA_BACKEND: DataBackendSpec,
        Kind.TRACKER: TrackerSpec,
        Kind.PUBLISHER: PublisherSpec,
        Kind.AUTH_PROVIDER: AuthProviderSpec,
        Kind.VALIDATION_METHOD: ValidationMethodSpec,
        Kind.EXECUTOR: ExecutorSpec,
    }
)
