"""The one error tree of streamml.

Every error streamml raises on purpose derives from :class:`StreamMLError`.
The command line turns these into a one-line message and a non-zero exit code,
never a traceback::

    StreamMLError
    ├── ConfigError                 bad setting, file or flag
    ├── ProvisioningError           local Kafka cannot be set up or started
    │   ├── MissingToolError        no Java 17+, no Maven
    │   ├── PortInUseError          a port the broker needs is taken
    │   └── BrokerStartError        a broker process died or never became ready
    ├── KafkaError                  a failure talking to Kafka, classified:
    │   ├── RetriableError          try the same call again (timeouts, leader moves)
    │   ├── AbortableError          abort the transaction, then retry the batch
    │   ├── FatalError              the client is unusable (fenced, auth): stop
    │   │   └── AuthorizationError  a principal lacks an ACL
    │   └── BrokerUnavailableError  no broker answered in time
    ├── SchemaError                 a schema cannot be built or evolved
    │   └── ValidationError         a record does not match its schema
    ├── VerificationError           the verifier found lost or duplicated records (exit 3)
    ├── PipelineError               a stream pipeline is ill-formed or failed
    ├── QueryError                  a query cannot be parsed, resolved or deployed
    ├── ModelError                  a model cannot be trained, stored or loaded
    │   └── IntegrityError          a hash or chunk does not match
    └── ServingError                a scorer cannot serve a request

The command line's exit codes are named here, once (see :data:`EXIT_CODES`): 0 success,
1 a runtime failure, 2 a usage or configuration error (a bad flag, setting, file or schema),
3 the verifier found lost or duplicated records (``streamml verify``, ``streamml soak``).
Each error class carries its code as ``exit_code``.

>>> issubclass(AuthorizationError, KafkaError)
True
>>> ConfigError("x").exit_code, SchemaError("x").exit_code, KafkaError("x").exit_code
(2, 2, 1)
>>> str(ConfigError("bootstrap servers are empty", hint="set STREAMML_BOOTSTRAP_SERVERS"))
'bootstrap servers are empty (hint: set STREAMML_BOOTSTRAP_SERVERS)'
"""

from __future__ import annotations

__all__ = [
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "EXIT_DATA_LOSS",
    "EXIT_CODES",
    "StreamMLError",
    "ConfigError",
    "MissingExtraError",
    "ProvisioningError",
    "MissingToolError",
    "PortInUseError",
    "BrokerStartError",
    "KafkaError",
    "RetriableError",
    "AbortableError",
    "FatalError",
    "AuthorizationError",
    "BrokerUnavailableError",
    "SchemaError",
    "ValidationError",
    "VerificationError",
    "PipelineError",
    "QueryError",
    "ModelError",
    "IntegrityError",
    "ServingError",
]


EXIT_OK = 0
EXIT_FAILURE = 1      # a runtime failure: Kafka unreachable, a model that cannot load, a crash
EXIT_USAGE = 2        # a usage or configuration error: fix the command line, settings or input files
EXIT_DATA_LOSS = 3    # the verifier found lost or duplicated records (streamml verify, streamml soak)

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILURE: "runtime failure",
    EXIT_USAGE: "usage or configuration error",
    EXIT_DATA_LOSS: "the verifier found lost or duplicated records",
}


class StreamMLError(Exception):
    """Base of every error streamml raises on purpose.

    ``hint`` tells the user what to do about it; the CLI prints it after the message and
    exits with ``exit_code``.
    """

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class MissingExtraError(StreamMLError, ImportError):
    """An optional integration is not installed; the hint names the extra that installs it.

    It is also an ``ImportError``, so code that tolerates a missing module keeps working.
    """

    def __init__(self, message: str, *, hint: str | None = None, name: str | None = None) -> None:
        StreamMLError.__init__(self, message, hint=hint)
        self.name = name


class ConfigError(StreamMLError):
    """A setting, config file or command-line flag is wrong."""

    exit_code = EXIT_USAGE


class ProvisioningError(StreamMLError):
    """The local Kafka cluster cannot be provisioned, started or stopped."""


class MissingToolError(ProvisioningError):
    """A tool the provisioning needs (Java 17+, Maven) is not installed."""


class PortInUseError(ProvisioningError):
    """A port the local broker needs is already taken by another process."""


class BrokerStartError(ProvisioningError):
    """A broker process exited or did not become ready; carries its log's tail."""


class KafkaError(StreamMLError):
    """A failure talking to Kafka. Subclasses say what the caller must do.

    ``code`` is librdkafka's error name (e.g. ``_TIMED_OUT``) when there is one.
    """

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class RetriableError(KafkaError):
    """Transient: the same call may succeed if tried again."""


class AbortableError(KafkaError):
    """The current transaction must be aborted; the batch can then be retried."""


class FatalError(KafkaError):
    """The client cannot go on (fenced producer, bad credentials): create a new one or stop."""


class AuthorizationError(FatalError):
    """The principal lacks an ACL for a topic, group or transactional id."""


class BrokerUnavailableError(KafkaError):
    """No broker answered within the timeout."""


class SchemaError(StreamMLError):
    """A schema cannot be built, loaded or evolved as asked."""

    exit_code = EXIT_USAGE


class ValidationError(SchemaError):
    """A record does not match its schema. ``field`` names where, when known."""

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.field = field


class VerificationError(StreamMLError):
    """The independent verifier found lost, duplicated or unexpected records (or open
    transactions): ``streamml verify`` and ``streamml soak`` exit with :data:`EXIT_DATA_LOSS`."""

    exit_code = EXIT_DATA_LOSS


class PipelineError(StreamMLError):
    """A stream pipeline is ill-formed, or failed while running."""


class QueryError(StreamMLError):
    """A SQL statement or topic query cannot be parsed, resolved, run or deployed."""


class ModelError(StreamMLError):
    """A model cannot be trained, published, found or loaded."""


class IntegrityError(ModelError):
    """An artifact's hash, size or chunk sequence does not match its descriptor."""


class ServingError(StreamMLError):
    """A scorer cannot serve: no model, bad input, or deadline exceeded without fallback."""
