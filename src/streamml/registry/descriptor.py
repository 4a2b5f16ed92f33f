"""The model descriptor: what the models topic says about one version of one model.

A descriptor is plain JSON. It names the model and version, the artifact's format,
SHA-256 and size, the input and output schemas, metrics, the training manifest
(offset ranges, seed, library versions...), the stage, when it was created, the
promotion decision with both scores, and where the bytes are: inline chunks on the
models topic, or a URI in an artifact store.

>>> d = Descriptor(name="fraud", version=3, format="onnx", sha256="ab" * 32, size=10,
...                input_schema=[{"name": "amount", "type": "float32"}], stage="production")
>>> Descriptor.from_json(d.to_json()) == d
True
>>> d.key, d.ref
('fraud:3', 'fraud@3')
>>> sorted(diff(d, d.with_(stage="archived", metrics={"auc": 0.9})))
['metrics.auc', 'stage']
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import orjson

from streamml.errors import ConfigError

__all__ = ["Descriptor", "STAGES", "SINGLE_STAGES", "check_name", "parse_ref", "diff", "signed_payload"]

STAGES = ("candidate", "shadow", "canary", "production", "archived")
#: Stages that hold at most one version of a model at a time.
SINGLE_STAGES = ("shadow", "canary", "production")
_NAME = re.compile(r"^[A-Za-z0-9_\-.]+$")


def check_name(name: str) -> str:
    """A model name: letters, digits, ``_``, ``-``, ``.`` (never ``:``, which separates versions)."""
    if not _NAME.match(name or ""):
        raise ConfigError(f"invalid model name {name!r}", hint="use letters, digits, '_', '-' and '.' only")
    return name


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``name@version`` or ``name:version`` -> ``(name, version)``; ``name`` -> ``(name, None)``.

    >>> parse_ref("fraud@3"), parse_ref("fraud")
    (('fraud', 3), ('fraud', None))
    >>> parse_ref("fraud@x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamml.errors.ConfigError: model reference 'fraud@x' has an invalid version 'x' (hint: ...)
    """
    for sep in ("@", ":"):
        if sep in ref:
            name, ver = ref.split(sep, 1)
            if not ver.isdigit() or int(ver) < 1:
                example = f"{name or 'fraud'}{sep}1"
                raise ConfigError(f"model reference {ref!r} has an invalid version {ver!r}",
                                  hint=f"write NAME{sep}VERSION with a whole version number, e.g. {example}")
            return check_name(name), int(ver)
    return check_name(ref), None


def check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}", hint="use one of " + ", ".join(STAGES))
    return stage


@dataclass(frozen=True)
class Descriptor:
    """One model version. ``artifact`` says where the bytes are (``kind``: inline or uri)."""

    name: str
    version: int
    format: str
    sha256: str
    size: int
    input_schema: list[dict[str, Any]] = field(default_factory=list)
    output_schema: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None
    stage: str = "candidate"
    created_at: int = 0
    decision: dict[str, Any] | None = None
    artifact: dict[str, Any] = field(default_factory=dict)
    task: str = "classifier"
    trainer: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    signer: str | None = None
    signature: str | None = None

    @property
    def key(self) -> str:
        """The record key of this descriptor on the models topic."""
        return f"{self.name}:{self.version}"

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def features(self) -> list[str]:
        """Input feature names, in the order the model expects them."""
        return [c["name"] for c in self.input_schema]

    def with_(self, **changes: Any) -> "Descriptor":
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return orjson.dumps({"type": "descriptor", **self.as_dict()}, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Descriptor":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_json(cls, data: bytes | str) -> "Descriptor":
        return cls.from_dict(orjson.loads(data))


def signed_payload(d: Descriptor) -> bytes:
    """The bytes a signature covers: identity and content, not the mutable stage or metrics."""
    core = {"name": d.name, "version": d.version, "format": d.format, "sha256": d.sha256, "size": d.size,
            "input_schema": d.input_schema, "output_schema": d.output_schema, "task": d.task,
            "created_at": d.created_at}
    return orjson.dumps(core, option=orjson.OPT_SORT_KEYS)


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def diff(a: Descriptor, b: Descriptor, *, skip: tuple[str, ...] = ("signature",)) -> dict[str, tuple[Any, Any]]:
    """Fields that differ between two descriptors, flattened (``metrics.auc``) -> ``(a, b)``."""
    fa: dict[str, Any] = {}
    fb: dict[str, Any] = {}
    _flat("", {k: v for k, v in a.as_dict().items() if k not in skip}, fa)
    _flat("", {k: v for k, v in b.as_dict().items() if k not in skip}, fb)
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}
