"""Ray Tune search spaces: gin binding string -> tune spec. Imports only ray.tune."""
