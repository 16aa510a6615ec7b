"""The hooks through which every plugin — built-in or third-party — extends SimpleTuner.

A plugin is a module (or object) exposed through the ``simpletuner`` entry-point group whose functions are marked
with :data:`hookimpl`. Each hook receives a ``register`` callable owned by the core; the plugin calls it once per
thing it provides, with a frozen spec object from :mod:`simpletuner.core.specs`. The spec carries a name, a title, a
description, the attrs class of the plugin's own options and a *lazy* factory: the plugin module itself must import
nothing heavy (torch, diffusers, transformers, peft), so that listing plugins and serving the web UI stay cheap.

Hooks are called once, when the registry first needs them (not at import). ``register`` normalises names
(lowercase, ``_`` and spaces become ``-``) and records which distribution provided each spec; registering a name that
another plugin already registered for the same kind is an error naming both distributions.

A minimal third-party package::

    # pyproject.toml
    [project.entry-points.simpletuner]
    my_family = "my_package.plugin"

    # my_package/plugin.py
    from simpletuner.core.hookspecs import hookimpl
    from simpletuner.core.specs import ModelFamilySpec, Flavour

    @hookimpl
    def register_model_families(register):
        register(ModelFamilySpec(
            name="my-family", title="My family", description="What it trains.",
            flavours=(Flavour(name="base", pretrained="me/my-model"),),
            factory=lambda: __import__("my_package.family", fromlist=["MyFamily"]).MyFamily,
        ))

Nothing outside ``simpletuner.core`` calls these hooks: the typed :class:`simpletuner.core.plugins.Registry` does.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT_NAME = "simpletuner"
ENTRY_POINT_GROUP = "simpletuner"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: The callable each hook receives: takes one spec of that hook's kind, returns nothing.
Register = Callable[..., None]


@hookspec
def register_model_families(register: Register) -> None:
    """Provide model families: the architectures SimpleTuner can train (Flux, Sana, PixArt, ...).

    When: the first time anything asks the registry for model families (config checks, the wizard, training).

    Parameters:
        register: call ``register(ModelFamilySpec(...))`` once per family. The spec declares flavours (name →
            weights location and the settings the flavour pre-enables), the adapter types and base-model precisions
            the family supports, its memory presets, and a factory returning the
            :class:`~simpletuner.core.interfaces.ModelFamily` implementation (import torch inside the factory).

    Returns: nothing; only calls to ``register`` count.

    Example::

        @hookimpl
        def register_model_families(register):
            register(ModelFamilySpec(name="flux", title="FLUX.1", description="Black Forest Labs' rectified-flow DiT",
                                     flavours=(Flavour(name="dev", pretrained="black-forest-labs/FLUX.1-dev"),),
                                     factory=load_flux_family))
    """


@hookspec
def register_quantizers(register: Register) -> None:
    """Provide quantizers: ways to store a frozen base model in fewer bits (``int8-quanto``, ``fp8-quanto``, ...).

    When: the first time the registry is asked for quantizers or which precisions exist (config check, training).

    Parameters:
        register: call ``register(QuantizerSpec(...))`` once per quantizer. ``precisions`` lists the
            ``base_model_precision`` values it provides; two quantizers may not provide the same precision.
            The factory returns a :class:`~simpletuner.core.interfaces.Quantizer`.

    Returns: nothing.

    Example::

        @hookimpl
        def register_quantizers(register):
            register(QuantizerSpec(name="quanto", title="optimum-quanto", description="Weight-only quantisation",
                                   precisions=("int8-quanto", "int4-quanto"), factory=make_quanto_quantizer))
    """


@hookspec
def register_data_backends(register: Register) -> None:
    """Provide data backends: where images, captions and caches are stored (local folders, S3-compatible storage).

    When: the first time a datasets file is validated or datasets are built for training.

    Parameters:
        register: call ``register(DataBackendSpec(...))`` once per backend. A dataset entry's ``type`` field names
            the backend, and the spec's ``options`` fields are the extra keys such an entry may carry. The factory
            takes the dataset's root location and a dict of those extra keys and returns a
            :class:`~simpletuner.core.interfaces.DataBackend`.

    Returns: nothing.

    Example::

        @hookimpl
        def register_data_backends(register):
            register(DataBackendSpec(name="local", title="Local folder", description="Files on this machine",
                                     factory=LocalBackend))
    """


@hookspec
def register_trackers(register: Register) -> None:
    """Provide experiment trackers that receive metrics and images during training (wandb, tensorboard, local).

    When: the first time the registry is asked for trackers (config check of ``report_to``, training start).

    Parameters:
        register: call ``register(TrackerSpec(...))`` once per tracker; ``report_to`` names it. The factory takes
            the tracker's options instance and returns a :class:`~simpletuner.core.interfaces.Tracker`.

    Returns: nothing.

    Example::

        @hookimpl
        def register_trackers(register):
            register(TrackerSpec(name="jsonl", title="JSON lines", description="Metrics in a file",
                                 factory=JsonlTracker))
    """


@hookspec
def register_publishers(register: Register) -> None:
    """Provide publishers that ship the trained model somewhere (Hugging Face Hub, a local folder).

    When: the first time the registry is asked for publishers (config check, end of training).

    Parameters:
        register: call ``register(PublisherSpec(...))`` once per publisher. The factory takes the publisher's
            options instance and returns a :class:`~simpletuner.core.interfaces.Publisher`.

    Returns: nothing.

    Example::

        @hookimpl
        def register_publishers(register):
            register(PublisherSpec(name="folder", title="Folder", description="Copy outputs to a folder",
                                   options=FolderOptions, factory=FolderPublisher))
    """


@hookspec
def register_auth_providers(register: Register) -> None:
    """Provide ways to log in to the web UI (local passwords, LDAP, OIDC single sign-on).

    When: the first time the server lists or uses authentication providers.

    Parameters:
        register: call ``register(AuthProviderSpec(...))`` once per provider type. ``style`` is ``"password"`` for
            providers that check a username and password, ``"redirect"`` for browser-redirect flows. The factory
            takes the provider's options instance and returns an :class:`~simpletuner.core.interfaces.AuthProvider`.

    Returns: nothing.

    Example::

        @hookimpl
        def register_auth_providers(register):
            register(AuthProviderSpec(name="ldap", title="LDAP", description="Directory login", style="password",
                                      options=LdapOptions, factory=LdapProvider))
    """


@hookspec
def register_validation_methods(register: Register) -> None:
    """Provide validation methods run during training (image generation, an external script, ...).

    When: the first time the registry is asked for validation methods (config check of ``validation_method``,
    training start).

    Parameters:
        register: call ``register(ValidationMethodSpec(...))`` once per method; ``validation_method`` names it.
            The factory takes the method's options instance and returns a
            :class:`~simpletuner.core.interfaces.ValidationMethod`.

    Returns: nothing.

    Example::

        @hookimpl
        def register_validation_methods(register):
            register(ValidationMethodSpec(name="webhook", title="Webhook", description="POST each checkpoint",
                                          options=WebhookOptions, factory=WebhookValidation))
    """
