"""Models as data: descriptors on the compacted models topic, artifacts, formats, trust.

>>> from streamml.registry import STAGES
>>> STAGES
('candidate', 'shadow', 'canary', 'production', 'archived')
"""

from streamml.registry.descriptor import STAGES, Descriptor, diff, signed_payload
from streamml.registry.formats import Artifact, LoadedModel, export_model
from streamml.registry.registry import Follower, Registry, RegistryEvent
from streamml.registry.signing import KEY_ENV, Signer, restricted_loads
from streamml.registry.store import CHUNK_BYTES, ArtifactStore

__all__ = [
    "Registry", "RegistryEvent", "Follower", "Descriptor", "STAGES", "diff", "signed_payload", "Artifact",
    "LoadedModel", "export_model", "Signer", "KEY_ENV", "restricted_loads", "ArtifactStore", "CHUNK_BYTES",
]
