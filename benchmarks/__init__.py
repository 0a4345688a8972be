"""voicebridge performance benchmarks: ``make bench`` (``python -m benchmarks``) prints one table.

Modules: ``workload`` (synthetic shard streams), ``naive`` (the deliberately naive baseline), ``counts``
(requests and DynamoDB calls per batch), ``cpu`` (handler CPU per transcript segment over in-memory fakes),
``loadgen`` (the real handler under load: moto + the emulator with latency), ``coldimport``, and
``emulator_bench`` (emulator requests/s).
"""
