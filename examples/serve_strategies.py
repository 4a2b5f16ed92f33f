"""Serving strategies on a stream: speculative execution with a deadline, canary, consensus.

Run: ``python examples/serve_strategies.py`` (uses STREAMML_BOOTSTRAP_SERVERS, or starts the local cluster).

Models come from an in-memory source here (``MemorySource``) to keep the script short; with the
registry it is the same code with ``RegistrySource(settings)``.
"""

import uuid
from collections import Counter

import streamml
from streamml.kafka.admin import ensure_topic
from streamml.serve import (
    Canary,
    Consensus,
    Constant,
    MemorySource,
    Role,
    Scorer,
    ServeOptions,
    Slow,
    Speculative,
)
from streamml.serve.base import Candidate
from streamml.serve.testing import (
    fraud_events,
    onnx_candidate,
    onnx_model,
    produce_events,
    read_topic,
    train_fraud_onnx,
)

settings = streamml.connect()
settings = settings.with_(namespace=f"{settings.namespace}-strategies-{uuid.uuid4().hex[:6]}")
features = settings.topic("features", "payments")
ensure_topic(settings, features, 2)
produce_events(settings, features, fraud_events(4000, seed=3))

source = MemorySource()
forest = train_fraud_onnx(seed=1, kind="forest")
source.publish(onnx_candidate("fraud", 1, train_fraud_onnx(seed=1)))
source.publish(onnx_candidate("fraud", 2, forest, stage="canary"))
# a deliberately slow model: 300 ms per batch
source.publish(Candidate(onnx_candidate("forest", 1, forest).ref, lambda: Slow(onnx_model("forest", 1, forest), 0.3)))


def score(strategy, name):
    out = settings.topic("predictions", name)
    Scorer(settings, strategy, source, ServeOptions(features, group=name, output_topic=out, batch_size=1000)).run(
        max_records=4000)
    return read_topic(settings, out, expect=4000)


# speculative: the slow forest is preferred, the logistic regression is the second choice, 50 ms deadline
got = score(Speculative([Role("forest"), Role("fraud")], deadline_s=0.05,
                        fallback=Constant("rule", score=0.0, label=0)), "speculative")
print("speculative answered by:", Counter(r.value["model"] for r in got),
      "deadline met:", all(r.value["deadline_met"] for r in got))

# canary: 20 % of cards (by a stable hash of the key) go to version 2
got = score(Canary(Role("fraud"), Role("fraud", "canary"), share=0.2), "canary")
print("canary versions:", Counter(r.value["model_version"] for r in got))

# consensus: the average of the two models' scores, labels by vote
got = score(Consensus([Role("fraud"), Role("fraud", "canary")]), "consensus")
print("consensus members:", Counter(r.value["members"] for r in got))
