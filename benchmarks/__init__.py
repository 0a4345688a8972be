"""voicebridge performance benchmarks: ``make bench`` (``python -m benchmarks``) prints one table; with
``--results benchmarks/RESULTS.md`` it also saves it (command, machine line and date) for the README.

Modules: ``workload`` (synthetic shard streams, wall-clock arrival stamps), ``naive`` (the deliberately naive
baseline), ``counts`` (requests and DynamoDB calls per batch), ``wire`` (the real ServiceNow and DynamoDB clients on
a stubbed in-process wire), ``cpu`` (handler CPU per transcript: over fakes, and with real clients on the stubbed
wire), ``loadgen`` (the real handler under load: the emulator with latency, AWS in moto or moto-free),
``coldimport``, and ``emulator_bench`` (emulator requests/s).
"""
