"""Trust for Python-object artifacts: HMAC-signed descriptors and a restricted unpickler.

Unpickling runs code, so a pickled model is loaded only when **both** hold:

1. the descriptor carries an HMAC-SHA256 signature over its identity and content
   (name, version, format, SHA-256 and size of the artifact, schemas, task, created-at —
   see :func:`~streamml.registry.descriptor.signed_payload`) made with a key the loader
   trusts: ``STREAMML_MODEL_SIGNING_KEY`` (or keys passed to the registry); and
2. the artifact's bytes hash to the signed SHA-256.

Anyone can write to a topic they have ACLs for; only holders of the key can produce a
descriptor that passes (1), and (2) binds the bytes to it. An unsigned descriptor, an
unknown signer or a bad signature raises :class:`~streamml.errors.IntegrityError` before
a single byte is unpickled. As a second line, the unpickler resolves only classes from an
allow-list of modules (River, NumPy, scikit-learn, a few standard containers).

>>> s = Signer("a-secret-key")
>>> sig = s.sign(b"payload")
>>> s.verify(b"payload", sig), s.verify(b"tampered", sig)
(True, False)
>>> len(s.key_id)
16
>>> restricted_loads(pickle.dumps({"a": [1, 2.0]}))
{'a': [1, 2.0]}
>>> import subprocess
>>> restricted_loads(pickle.dumps(subprocess.Popen))
Traceback (most recent call last):
...
streamml.errors.IntegrityError: refusing to unpickle subprocess.Popen: not an allowed model class
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import pickle
from typing import Any, Iterable

from streamml.errors import IntegrityError

__all__ = ["Signer", "KEY_ENV", "signers_from_env", "restricted_loads", "ALLOWED_MODULES"]

KEY_ENV = "STREAMML_MODEL_SIGNING_KEY"
#: Extra keys accepted for verification only (comma-separated), e.g. during key rotation.
TRUSTED_ENV = "STREAMML_MODEL_TRUSTED_KEYS"

#: Module prefixes whose classes a signed pickle may name.
ALLOWED_MODULES = ("river.", "numpy.", "sklearn.", "scipy.", "collections.", "copyreg.", "_codecs.", "math.",
                   "datetime.", "fractions.", "decimal.", "streamml.train.")
_ALLOWED_GLOBALS = {("functools", "partial"), ("random", "Random"), ("operator", "itemgetter"),
                    ("operator", "attrgetter")}
_SAFE_BUILTINS = {"float", "int", "complex", "bool", "str", "bytes", "bytearray", "list", "tuple", "dict", "set",
                  "frozenset", "slice", "range", "object", "type", "NoneType"}


class Signer:
    """An HMAC-SHA256 key. ``key_id`` (16 hex chars of the key's SHA-256) names it in descriptors."""

    def __init__(self, key: str | bytes) -> None:
        raw = key.encode() if isinstance(key, str) else bytes(key)
        if len(raw) < 8:
            raise IntegrityError("the model signing key is too short", hint="use at least 16 random bytes")
        self._key = raw
        self.key_id = hashlib.sha256(b"streamml-signer:" + raw).hexdigest()[:16]

    def sign(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()

    def verify(self, payload: bytes, signature: str) -> bool:
        return hmac.compare_digest(self.sign(payload), signature or "")

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"


def signers_from_env(env: dict[str, str] | None = None) -> tuple[Signer | None, list[Signer]]:
    """The signing key (``STREAMML_MODEL_SIGNING_KEY``) and every key trusted for verification."""
    env = dict(os.environ) if env is None else env
    main = Signer(env[KEY_ENV]) if env.get(KEY_ENV) else None
    trusted = [main] if main else []
    trusted += [Signer(k.strip()) for k in env.get(TRUSTED_ENV, "").split(",") if k.strip()]
    return main, trusted


class _Restricted(pickle.Unpickler):
    def __init__(self, data: bytes, allowed: Iterable[str]) -> None:
        super().__init__(io.BytesIO(data))
        self._allowed = tuple(allowed)

    def find_class(self, module: str, name: str) -> Any:
        ok = ((module == "builtins" and name in _SAFE_BUILTINS) or (module, name) in _ALLOWED_GLOBALS
              or any(module == p.rstrip(".") or module.startswith(p) for p in self._allowed))
        if not ok:
            raise IntegrityError(f"refusing to unpickle {module}.{name}: not an allowed model class")
        return super().find_class(module, name)


def restricted_loads(data: bytes, allowed: Iterable[str] = ALLOWED_MODULES) -> Any:
    """Unpickle with an allow-list of modules (call only after the signature checked out)."""
    return _Restricted(data, allowed).load()
