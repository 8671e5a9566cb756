"""Gin registrations for the pretraining runner (short names used in gin files and --gin bindings)."""

import gin  # noqa: F401
