"""Pretraining of the tokenizer and of I-WALT / V-WALT: the training loop (loop.py), the data
stream (data.py, synthetic.py), the stages (stages.py) and run artifacts (artifacts.py).
Plain Python; `walt-probe pretrain` (runners/pretrain.py) configures it from gin."""
