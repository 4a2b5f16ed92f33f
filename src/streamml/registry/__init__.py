"""Models as data: descriptors on the compacted ``<ns>.models`` topic, artifacts, formats, trust.

Publishing and promoting::

    reg = Registry(settings)
    d = reg.publish(fitted_model, name="fraud", features=["amount", "velocity"], metrics={"roc_auc": 0.93})
    reg.promote("fraud", d.version, "production")      # the previous production version is archived
    reg.rollback("fraud")                              # back to the version before
    reg.list("fraud"); reg.diff("fraud@1", "fraud@2")

Serving (what a scorer does to hot-swap without restarting)::

    d = reg.latest("fraud")                            # the production descriptor, or None
    model = reg.load(d)                                # signature, size and SHA-256 checked
    scores = model.score(batch)                        # NumPy / Polars / pandas / Arrow / dicts -> float per row
    out = model.predict(matrix)                        # float32 matrix -> Scores (what the scorer calls)
    for d in reg.watch_stage("fraud", "production"):   # now, then on every change
        model = reg.load(d)
    follower = reg.follow("fraud", on_change)          # the same from a background thread; .stop()
    for ev in reg.watch(from_offset=...):              # every catalog record (RegistryEvent), committed only

Every loaded model honours one contract, :class:`LoadedModel` (:mod:`streamml.registry.base`):
``name``, ``version``, ``input_columns``, ``predict(x) -> Scores``, ``score(X)``. Every fitted
model becomes bytes through one export path, :func:`export_model` (:mod:`streamml.registry.formats`).

Keys on the models topic (2 partitions, compacted) — see :mod:`streamml.registry.registry`:
partition 0 holds ``<name>:<version>`` -> descriptor and ``<name>`` -> stage pointer (production /
canary / shadow versions and the production history that rollback walks back); partition 1
holds ``<name>:<version>:chunk:<i>`` -> up to 900 kB of artifact bytes. Unique keys per version
mean compaction never removes a version, only superseded copies of its descriptor.

Trust — see :mod:`streamml.registry.signing`: ONNX artifacts are data, checked by SHA-256 and
size; pickled Python models (River) are code, loaded only when the descriptor carries a valid
HMAC-SHA256 signature by a trusted key (``STREAMML_MODEL_SIGNING_KEY``, plus
``STREAMML_MODEL_TRUSTED_KEYS`` for verification-only keys) *and* the bytes match the signed
hash, and then only through an allow-listing unpickler. Nothing from a topic is unpickled
before that; ``Registry(require_signature=True)`` extends the signature check to every format.

>>> from streamml.registry import STAGES
>>> STAGES
('candidate', 'shadow', 'canary', 'production', 'archived')
"""

from streamml.registry.base import LoadedModel, Model, Scores, as_matrix
from streamml.registry.descriptor import STAGES, Descriptor, diff, signed_payload
from streamml.registry.formats import Artifact, export_model, load_artifact
from streamml.registry.models import OnnxModel, PythonModel, load_model
from streamml.registry.registry import Follower, Registry, RegistryEvent
from streamml.registry.signing import KEY_ENV, Signer, restricted_loads
from streamml.registry.store import CHUNK_BYTES, ArtifactStore

__all__ = [
    "Registry", "RegistryEvent", "Follower", "Descriptor", "STAGES", "diff", "signed_payload", "Artifact",
    "LoadedModel", "Model", "Scores", "as_matrix", "OnnxModel", "PythonModel", "load_model", "load_artifact",
    "export_model", "Signer", "KEY_ENV", "restricted_loads", "ArtifactStore", "CHUNK_BYTES",
]
