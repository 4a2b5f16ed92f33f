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
    ├── PipelineError               a stream pipeline is ill-formed or failed
    ├── QueryError                  a query cannot be parsed, resolved or deployed
    ├── ModelError                  a model cannot be trained, stored or loaded
    │   └── IntegrityError          a hash or chunk does not match
    └── ServingError                a scorer cannot serve a request

>>> issubclass(AuthorizationError, KafkaError)
True
>>> str(ConfigError("bootstrap servers are empty", hint="set STREAMML_BOOTSTRAP_SERVERS"))
'bootstrap servers are empty (hint: set STREAMML_BOOTSTRAP_SERVERS)'
"""

from __future__ import annotations

__all__ = [
    "StreamMLError",
    "ConfigError",
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
    "PipelineError",
    "QueryError",
    "ModelError",
    "IntegrityError",
    "ServingError",
]


class StreamMLError(Exception):
    """Base of every error streamml raises on purpose.

    ``hint`` tells the user what to do about it; the CLI prints it after the message.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class ConfigError(StreamMLError):
    """A setting, config file or command-line flag is wrong."""


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


class ValidationError(SchemaError):
    """A record does not match its schema. ``field`` names where, when known."""

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.field = field


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
