"""The probing engine: feature cache (cache.py), extraction (extract.py: one backbone pass per t
for all blocks), the probe run (probe.py: `Probe`, `FeatureSource`, `fit_readout`, `evaluate`,
`run`) and the one result schema (result.py: `ProbeResult`). Plain Python, no gin, no Ray."""
