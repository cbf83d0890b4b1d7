"""Evaluators of frozen representations.

A run's ``config.evals`` holds named instances, each a section with a ``type`` (a module
``ssl_jax/evaluate/<type>.py``), ``every`` (> 0: also every N pretraining steps, on the
live encoder) and the type's own fields; so ``finetune_10`` and ``finetune_50``, or two
linear protocols, sit side by side. ``ssl_jax.config_lib.evaluator(type, **fields)`` makes
one. A type module defines:

``config() -> ConfigDict``
    The defaults of an instance (``every`` included).
``run(section, encoder, data, workdir) -> dict[str, float] | None``
    Measures ``encoder`` (:class:`ssl_jax.evaluate.context.Encoder`: module and frozen
    variables) on ``data`` (:class:`ssl_jax.evaluate.context.DataSpec`: the dataset and
    the run's evaluation preprocessing); results keyed ``<layer>/<metric>``, which the
    caller prefixes with the instance's name. An evaluator that trains (linear, mlp,
    finetune) runs its steps through ssl_jax/loop.py, checkpointing in ``workdir``
    (``WORKDIR/evals/<name>``), and returns None when SIGTERM stopped it.
``validate(section)`` (optional)
    Raises ValueError naming the field and the fix.
"""
