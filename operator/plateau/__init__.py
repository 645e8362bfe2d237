"""Plateau: stop ML training jobs as soon as going on no longer pays."""
