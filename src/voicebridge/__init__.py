"""voicebridge developer tooling: the CLI, the ServiceNow Voice Interaction API emulator and replay.

Nothing in this package is deployed to Lambda; the deployable code is the ``bridge`` package under
``functions/bridge``.
"""
