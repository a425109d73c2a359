"""The milter service: pymilter glue, socket handling, reload, metrics, workers.

`cli_serve` is the entry point (`aclmilter serve`); `glue` maps libmilter callbacks onto the
sans-I/O `session.Session`; `reply`/`edits` hold the pure mapping rules so they can be unit
tested without libmilter.
"""
