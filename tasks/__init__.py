"""Datasets and task bindings: real readers (`tasks/real/`), the synthetic world
(`tasks/synthetic/`), task kinds (`tasks/kinds.py`), and the Task contract (`tasks/task.py`)."""

from tasks.task import Accumulator, Batch, Task

__all__ = ["Accumulator", "Batch", "Task"]
