"""Readers for the real evaluation datasets in their standard on-disk formats."""
