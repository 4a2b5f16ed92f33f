"""Reproducible benchmarks: every figure is a ratio to the raw confluent-kafka client, same broker, same run."""
