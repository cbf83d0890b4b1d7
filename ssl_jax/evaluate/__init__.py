"""Evaluators of frozen representations. Each module ``ssl_jax/evaluate/<name>.py`` named
in ``config.evals`` defines ``run(config, workdir, devices=None) -> dict`` that reads the
encoder from the workdir and returns results keyed ``<name>/<layer>/<metric>``."""
