"""Registers every gin configurable of the project, in one place, under short names.

Library code (`walt/`, `readouts/`, `tasks/`) never imports gin; the `runners/gin_*.py`
modules wrap its constructors with `gin.external_configurable`. Importing this module in a
process (the CLI, every Ray trial) makes all names available before any gin file is parsed.
"""

import gin

from runners import settings

# Commands build their settings through this wrapped class so gin bindings apply.
Run = gin.external_configurable(settings.Run, "Run")

# One registration module per library folder, each owned by that folder's maintainers.
from runners import gin_walt, gin_readouts, gin_tasks, gin_tasks_real, gin_runners  # noqa: E402,F401
from runners import gin_pretrain  # noqa: E402,F401
