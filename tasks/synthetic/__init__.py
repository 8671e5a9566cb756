"""A procedural 3-D world that renders an analog of every task, offline."""
