"""One interface per plugin kind; each docstring holds a runnable example."""

from simpletuner.core.interfaces.auth_provider import (
    AccountStore,
    AuthProvider,
    ExternalIdentity,
    PasswordAuthProvider,
    RedirectAuthProvider,
    RedirectStart,
)
from simpletuner.core.interfaces.data_backend import DataBackend
from simpletuner.core.interfaces.executor import (
    Executor,
    ExecutorUnavailable,
    JobState,
    Resources,
    Submission,
    SubmitError,
    SubmittedJob,
)
from simpletuner.core.interfaces.model_family import ModelFamily, model_config
from simpletuner.core.interfaces.publisher import Publisher, PublishRequest, TokenAccount, TokenRefused
from simpletuner.core.interfaces.quantizer import Quantizer
from simpletuner.core.interfaces.tracker import RunInfo, Tracker
from simpletuner.core.interfaces.validation_method import ValidationContext, ValidationMethod, ValidationResult

__all__ = [
    "AccountStore",
    "AuthProvider",
    "DataBackend",
    "Executor",
    "ExecutorUnavailable",
    "ExternalIdentity",
    "JobState",
    "ModelFamily",
    "PasswordAuthProvider",
    "PublishRequest",
    "Publisher",
    "Quantizer",
    "RedirectAuthProvider",
    "RedirectStart",
    "Resources",
    "RunInfo",
    "SubmitError",
    "Submission",
    "SubmittedJob",
    "TokenAccount",
    "TokenRefused",
    "Tracker",
    "ValidationContext",
    "ValidationMethod",
    "ValidationResult",
    "model_config",
]
