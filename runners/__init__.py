"""The command line: the only layer that parses gin, starts Ray, or draws plots."""
