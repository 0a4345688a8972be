"""Soaking the bridge: ``chaos`` (concurrent synthetic calls under faults) and the call synthesizer ``synth``."""
