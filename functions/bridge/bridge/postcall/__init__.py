"""Historical mode from Contact Lens post-call analysis files (S3) to ``POST /cs/voice-interactions/transcript``.

``keys`` (which S3 keys are analysis files), ``mapping`` (the pure file -> transcript mapping), ``s3events``
(EventBridge and classic S3 notification shapes), ``importer`` (one file's import, idempotent through the contact
item), ``wiring`` (real adapters from the environment, shared by ``bridge.postcall_handler`` and
``voicebridge backfill``).
"""
