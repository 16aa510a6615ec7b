"""The hooks through which every plugin — built-in or third-party — extends SimpleTuner.

A plugin is a module (or object) exposed through the ``simpletuner`` entry-point group whose functions are marked
with :data:`hookimpl`. Each hook receives a ``register`` callable owned by the core: a :class:`Register` of that
hook's spec class, which the plugin calls once per thing it provides. The spec (:mod:`simpletuner.core.specs`) carries
a name, a title, a description, the attrs class of the plugin's own options and a factory of the kind's typed factory
protocol; :func:`~simpletuner.core.specs.lazy` makes one from a ``"module:attribute"`` string, so the plugin module
imports nothing heavy (torch, diffusers, transformers, peft) and listing plugins and serving the web UI stay cheap.

Hooks are called once, when the registry first needs them (not at import). ``register`` normalises names
(lowercase, ``_`` and spaces become ``-``) and records which distribution provided each spec; registering a name that
another plugin already registered for the same kind is an error naming both distributions.

A minimal third-party package::

    # pyproject.toml
    [project.entry-points.simpletuner]
    my_family = "my_package.plugin"

    # my_package/plugin.py
    from simpletuner.core.hookspecs import RegisterModelFamily, hookimpl
    from simpletuner.core.specs import Flavour, ModelFamilySpec, lazy

    @hookimpl
    def register_model_families(register: RegisterModelFamily) -> None:
        register(ModelFamilySpec(
            name="my-family", title="My family", description="What it trains.",
            flavours=(Flavour(name="base", pretrained="me/my-model"),),
            factory=lazy("my_package.family:MyFamily"),
        ))

Each hook's example below runs as a test, calling the spec's ``build`` exactly as the engine or the server does.
Nothing outside ``simpletuner.core`` calls these hooks: the typed :class:`simpletuner.core.plugins.Registry` does.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

import pluggy

from simpletuner.core.specs import (
    AuthProviderSpec,
    DataBackendSpec,
    ExecutorSpec,
    ModelFamilySpec,
    PluginSpec,
    PublisherSpec,
    QuantizerSpec,
    TrackerSpec,
    ValidationMethodSpec,
)

PROJECT_NAME = "simpletuner"
ENTRY_POINT_GROUP = "simpletuner"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

SpecT_contra = TypeVar("SpecT_contra", bound=PluginSpec, contravariant=True)


class Register(Protocol[SpecT_contra]):
    """The callable a hook receives: ``register(spec)`` once per thing the plugin provides."""

    def __call__(self, spec: SpecT_contra, /) -> None: ...


RegisterModelFamily = Register[ModelFamilySpec]
RegisterQuantizer = Register[QuantizerSpec]
RegisterDataBackend = Register[DataBackendSpec]
RegisterTracker = Register[TrackerSpec]
RegisterPublisher = Register[PublisherSpec]
RegisterAuthProvider = Register[AuthProviderSpec]
RegisterValidationMethod = Register[ValidationMethodSpec]
RegisterExecutor = Register[ExecutorSpec]


@hookspec
def register_model_families(register: RegisterModelFamily) -> None:
    """Provide model families: the architectures SimpleTuner can train (Flux, Sana, PixArt, ...).

    When: the first time anything asks the registry for model families (config checks, the wizard, training).

    Parameters:
        register: call ``register(ModelFamilySpec(...))`` once per family. The spec declares flavours (name →
            weights location and the settings the flavour pre-enables), the adapter types and base-model precisions
            the family supports, its memory presets, and a factory returning the
            :class:`~simpletuner.core.interfaces.ModelFamily` implementation (import torch inside the factory).

    Returns: nothing; only calls to ``register`` count.

    Example::

        >>> from simpletuner.core.plugins import Registry
        >>> from simpletuner.core.specs import Flavour, ModelFamilySpec, lazy
        >>> class Tiny:
        ...     @hookimpl
        ...     def register_model_families(self, register: RegisterModelFamily) -> None:
        ...         register(ModelFamilySpec(
        ...             name="my-flux", title="My Flux", description="Flux under another name",
        ...             flavours=(Flavour(name="dev", pretrained="black-forest-labs/FLUX.1-dev"),),
        ...             factory=lazy("simpletuner.model_families.flux.family:FluxFamily")))
        >>> registry = Registry(load_entry_points=False)
        >>> registry.register_plugin(Tiny(), "tiny")
        >>> spec = registry.model_family("my_flux")                   # names are normalised
        >>> family = spec.build(spec.flavour(None), options=None)     # as a training run does
        >>> (type(family).__name__, family.flavour.name)
        ('FluxFamily', 'dev')
    """


@hookspec
def register_quantizers(register: RegisterQuantizer) -> None:
    """Provide quantizers: ways to store a frozen base model in fewer bits (``int8-quanto``, ``fp8-quanto``, ...).

    When: the first time the registry is asked for quantizers or which precisions exist (config check, training).

    Parameters:
        register: call ``register(QuantizerSpec(...))`` once per quantizer. ``precisions`` lists the
            ``base_model_precision`` values it provides; two quantizers may not provide the same precision.
            The factory returns a :class:`~simpletuner.core.interfaces.Quantizer`.

    Returns: nothing.

    Example::

        >>> from simpletuner.core.plugins import Registry
        >>> from simpletuner.core.specs import QuantizerSpec, lazy
        >>> class Quanto8:
        ...     @hookimpl
        ...     def register_quantizers(self, register: RegisterQuantizer) -> None:
        ...         register(QuantizerSpec(name="my-quanto", title="int8 only", description="Weight-only int8",
        ...                                precisions=("int8-mine",),
        ...                                factory=lazy("simpletuner.plugins.quantizers.quanto:QuantoQuantizer")))
        >>> registry = Registry(load_entry_points=False)
        >>> registry.register_plugin(Quanto8(), "quanto8")
        >>> spec = registry.quantizer_for("int8-mine")
        >>> type(spec.build(None)).__name__                           # as a training run does
        'QuantoQuantizer'
    """


@hookspec
def register_data_backends(register: RegisterDataBackend) -> None:
    """Provide data backends: where images, captions and caches are stored (local folders, S3-compatible storage).

    When: the first time a datasets file is validated or datasets are built for training.

    Parameters:
        register: call ``register(DataBackendSpec(...))`` once per backend. A dataset entry's ``type`` field names
            the backend, and the spec's ``options`` fields are the extra keys such an entry may carry. The factory
            takes the dataset's root location and a dict of those extra keys and returns a
            :class:`~simpletuner.core.interfaces.DataBackend`.

    Returns: nothing.

    Example::

        >>> import tempfile
        >>> from simpletuner.core.plugins import Registry
        >>> from simpletuner.core.specs import DataBackendSpec, lazy
        >>> class Folder:
        ...     @hookimpl
        ...     def register_data_backends(self, register: RegisterDataBackend) -> None:
        ...         register(DataBackendSpec(name="folder", title="Folder", description="Files on this machine",
        ...                                  factory=lazy("simpletuner.plugins.data_backends.local:LocalDataBackend")))
        >>> registry = Registry(load_entry_points=False)
        >>> registry.register_plugin(Folder(), "folder")
        >>> backend = registry.data_backends()["folder"].build(tempfile.mkdtemp(), {})  # as a dataset does
        >>> backend.write("a.txt", b"hi"); backend.read("a.txt")
        b'hi'
    """


@hookspec
def register_trackers(register: RegisterTracker) -> None:
    """Provide experiment trackers that receive metrics and images during training (wandb, tensorboard, local).

    When: the first time the registry is asked for trackers (config check of ``report_to``, training start).

    Parameters:
        register: call ``register(TrackerSpec(...))`` once per tracker; ``report_to`` names it. The factory takes
            the tracker's options instance and returns a :class:`~simpletuner.core.interfaces.Tracker`.

    Returns: nothing.

    Example::

        >>> from simpletuner.core.plugins import Registry
        >>> from simpletuner.core.specs import TrackerSpec, lazy
        >>> from simpletuner.trackers.local import LocalTrackerOptions
        >>> class JsonLines:
        ...     @hookimpl
        ...     def register_trackers(self, register: RegisterTracker) -> None:
        ...         register(TrackerSpec(name="jsonl", title="JSON lines", description="Metrics in a file",
        ...                              options=LocalTrackerOptions,
        ...                              factory=lazy("simpletuner.trackers.local.tracker:JsonlTracker")))
        >>> registry = Registry(load_entry_points=False)
        >>> registry.register_plugin(JsonLines(), "jsonl")
        >>> type(registry.trackers()["jsonl"].build(None)).__name__   # default options; as training does
        'JsonlTracker'
    """


@hookspec
def register_publishers(register: RegisterPublisher) -> None:
    """Provide publishers that ship the trained model somewhere (Hugging Face Hub, a local folder).

    When: the first time the registry is asked for publishers (config check, end of training).

    Parameters:
        register: call ``register(PublisherSpec(...))`` once per publisher. The factory takes the publisher's
            options instance and returns a :class:`~simpletuner.core.interfaces.Publisher`.

    Returns: nothing.

    Example::

        >>> from simpletuner.core.plugins import Registry
        >>> from simpletuner.core.specs import PublisherSpec, lazy
        >>> from simpletuner.publishers.local import LocalPublisherOptions
        >>> class Folder:
        ...     @hookimpl
        ...     def register_publishers(self, register: RegisterPublisher) -> None:
        ...         register(PublisherSpec(name="folder", title="Folder", description="Copy outputs to a folder",
        ...                                options=LocalPublisherOptions,
        ...                                factory=lazy("simpletuner.publishers.local.publisher:LocalPublisher")))
        >>> registry = Registry(load_entry_points=False)
        >>> registry.register_plugin(Folder(), "folder")
        >>> type(registry.publishers()["folder"].build(LocalPublisherOptions())).__name__
        'LocalPublisher'
    """


@hookspec
def register_auth_providers(register: RegisterAuthProvider) -> None:
    """Provide ways to log in to the web UI (local passwords, LDAP, OIDC single sign-on).

    When: the first time the server lists or uses authentication providers.

    Parameters:
        register: call ``register(AuthProviderSpec(...))`` once per provider type. ``style`` is ``"password"`` for
            providers that check a username and password, ``"redirect"`` for browser-redirect flows. The factory
            takes the provider's options instance and the server's local accounts
            (:class:`~simpletuner.core.interfaces.AccountStore`, which most providers ignore) and returns an
            :class:`~simpletuner.core.interfaces.AuthProvider`.

    Returns: nothing.

    Example::

        >>> from simpletuner.core.interfaces import ExternalIdentity, PasswordAuthProvider
        >>> from simpletuner.core.plugins import Registry
        >>> from simpletuner.core.specs import AuthProviderSpec
        >>> class OnePassword(PasswordAuthProvider):
        ...     def __init__(self, options, accounts): self.accounts = accounts
        ...     def authenticate(self, username, password):
        ...         return ExternalIdentity(username=username) if password == "open sesame" else None
        >>> class Plugin:
        ...     @hookimpl
        ...     def register_auth_providers(self, register: RegisterAuthProvider) -> None:
        ...         register(AuthProviderSpec(name="one-password", title="One password", description="For demos",
        ...                                   style="password", factory=OnePassword))
        >>> registry = Registry(load_entry_points=False)
        >>> registry.register_plugin(Plugin(), "plugin")
        >>> provider = registry.auth_providers()["one-password"].build(None, accounts=None)  # as the server does
        >>> provider.authenticate("ada", "open sesame").username
        'ada'
    """


@hookspec
def register_validation_methods(register: RegisterValidationMethod) -> None:
    """Provide validation methods run during training (image generation, an external script, ...).

    When: the first time the registry is asked for validation methods (config check of ``validation_method``,
    training start).

    Parameters:
        register: call ``register(ValidationMethodSpec(...))`` once per method; ``validation_method`` names it.
            The factory takes the method's options instance and returns a
            :class:`~simpletuner.core.interfaces.ValidationMethod`.

    Returns: nothing.

    Example::

        >>> from simpletuner.core.plugins import Registry
        >>> from simpletuner.core.specs import ValidationMethodSpec, lazy
        >>> from simpletuner.plugins.validation import ExternalScriptOptions
        >>> class Script:
        ...     @hookimpl
        ...     def register_validation_methods(self, register: RegisterValidationMethod) -> None:
        ...         register(ValidationMethodSpec(
        ...             name="my-script", title="My script", description="Run a command per checkpoint",
        ...             options=ExternalScriptOptions,
        ...             factory=lazy("simpletuner.plugins.validation.external_script:ExternalScriptValidation")))
        >>> registry = Registry(load_entry_points=False)
        >>> registry.register_plugin(Script(), "script")
        >>> options = ExternalScriptOptions(validation_external_script="python eval.py {global_step}")
        >>> type(registry.validation_methods()["my-script"].build(options)).__name__   # as training does
        'ExternalScriptValidation'
    """


@hookspec
def register_executors(register: RegisterExecutor) -> None:
    """Provide executors: where and how training jobs run (the server's own supervisor, a Ray or Slurm cluster).

    When: the first time the registry is asked for executors (config check of ``executor``, a job's start, the
    server's job supervisor).

    Parameters:
        register: call ``register(ExecutorSpec(...))`` once per executor; the environment option ``executor`` (or a
            job's start request) names it. Its ``options`` are config keys like any plugin's (declare addresses and
            credentials ``trust=PRIVILEGED``); ``local_gpus`` says whether its jobs use the server's own GPUs (and
            so wait in the server's per-GPU-set queue). The factory takes the options instance and returns an
            :class:`~simpletuner.core.interfaces.Executor`.

    Returns: nothing.

    Example::

        >>> from simpletuner.core.plugins import Registry
        >>> from simpletuner.core.specs import ExecutorSpec, lazy
        >>> class OnThisMachine:
        ...     @hookimpl
        ...     def register_executors(self, register: RegisterExecutor) -> None:
        ...         register(ExecutorSpec(name="here", title="Here", description="Child processes of the server",
        ...                               local_gpus=True,
        ...                               factory=lazy("simpletuner.plugins.executors.local:LocalExecutor")))
        >>> registry = Registry(load_entry_points=False)
        >>> registry.register_plugin(OnThisMachine(), "here")
        >>> spec = registry.executors()["here"]
        >>> (type(spec.build(None)).__name__, spec.local_gpus)     # as the job supervisor does
        ('LocalExecutor', True)
    """
