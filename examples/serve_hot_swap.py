"""Score a features stream with a model from the registry, and swap in a new version without restarting.

Run: ``python examples/serve_hot_swap.py`` (uses STREAMML_BOOTSTRAP_SERVERS, or starts the local cluster).

The scorer follows the models topic: promoting version 2 while events flow makes it load and
verify v2 in the background and swap between two micro-batches. Every event is scored once,
by v1 or by v2, and the versions never go backwards. The same loaded models answer
``POST /v1/models/fraud/predict``.
"""

import threading
import time
import uuid

import numpy as np
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

import streamml
from streamml.kafka.admin import ensure_topic
from streamml.registry import Registry
from streamml.serve import Role, Scorer, ServeOptions, Single
from streamml.serve.http import create_app
from streamml.serve.registry_source import RegistrySource
from streamml.serve.testing import FRAUD_FEATURES, fraud_events, fraud_frame, produce_events, read_topic

settings = streamml.connect()
settings = settings.with_(namespace=f"{settings.namespace}-serve-{uuid.uuid4().hex[:6]}")  # a clean run each time

# 1. a model in production: trained on fraud-like features, published to the models topic as ONNX
train = fraud_frame(5000, seed=1)
x, y = train.select(FRAUD_FEATURES).to_numpy().astype(np.float32), train["is_fraud"].to_numpy()
registry = Registry(settings)
registry.publish(LogisticRegression(max_iter=500).fit(x, y), name="fraud", features=list(FRAUD_FEATURES),
                 stage="production")

# 2. a scorer on <ns>.features.payments, exactly-once, in a background thread
features = settings.topic("features", "payments")
ensure_topic(settings, features, 3)
scorer = Scorer(settings, Single([Role("fraud")]), RegistrySource(settings), ServeOptions(features))
scorer.start()
threading.Thread(target=scorer.run, daemon=True).start()

# 3. events flow; halfway, version 2 is published and promoted
events = fraud_events(10_000, seed=2)
produce_events(settings, features, events[:5000])
v2 = registry.publish(LogisticRegression(C=0.1, max_iter=500).fit(x, y), name="fraud",
                      features=list(FRAUD_FEATURES))
registry.promote("fraud", v2.version)
while scorer.host.slots[Role("fraud")].newest < v2.version:  # loaded and verified in the background
    time.sleep(0.05)
produce_events(settings, features, events[5000:])

# 4. an independent read_committed reader checks the predictions
got = read_topic(settings, scorer.output_topic, expect=10_000)
ids = [r.value["event_id"] for r in got]
print("predictions:", len(got), "unique events:", len(set(ids)))
print("by version:", {v: sum(r.value["model_version"] == v for r in got) for v in (1, 2)})
print("one prediction:", got[-1].value, got[-1].headers)
assert len(got) == len(set(ids)) == 10_000

# 5. request/response from the same loaded models
client = TestClient(create_app(scorer.host))
answer = client.post("/v1/models/fraud/predict", json={"instances": [
    {"amount": 12.0, "log_amount": 2.56, "hour": 14, "merchant_risk": 0.1, "tx_count_1h": 1, "amount_ratio": 1.0},
    {"amount": 900.0, "log_amount": 6.8, "hour": 3, "merchant_risk": 0.8, "tx_count_1h": 7, "amount_ratio": 30.0},
]}).json()
print("HTTP:", answer)
assert answer["version"] == v2.version
print("bad input:", client.post("/v1/models/fraud/predict", json={"instances": [{"amount": "a lot"}]}).json())
scorer.stop_event.set()
