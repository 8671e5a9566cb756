"""Gin registrations for `tasks/real/` (short names used in gin files and --gin bindings)."""

import gin  # noqa: F401
