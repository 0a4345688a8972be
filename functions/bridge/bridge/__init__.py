"""voicebridge Lambda: Contact Lens real-time segments (Kinesis) -> ServiceNow voice interactions.

Layers: ``handler`` (thin Powertools wiring) -> ``processor`` (a batch) -> ``runner`` (one contact's I/O,
driven by the pure ``planner``) -> ``ports`` (ServiceNow, contact store, Connect, parking) implemented by
``adapters`` and, in tests, by in-memory fakes.
"""
