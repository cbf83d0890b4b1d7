"""Tasks: what a method adds to the one training loop (ssl_jax/train.py).

A task is a module ``ssl_jax/tasks/<name>.py``, chosen by ``config.task`` and imported by
name. It defines:

``preprocess(features, seed, config) -> dict[str, tf.Tensor]``
    Host side, inside tf.data: the decoded example (``features['image']`` uint8 [H, W, 3],
    ``features['label']``) to the arrays that travel to the devices, usually uint8 crops.
    Random ops must be stateless and use ``seed`` (a [2] int tensor unique to the example),
    so that a resumed run sees the same stream.

``views(batch, rng, config) -> dict[str, jax.Array]``
    Device side, inside the jitted step: pixel augmentation and the construction of the
    network inputs. Returns at least ``inputs`` ([M, H, W, 3] in [-1, 1]; M may be a
    multiple of the batch, e.g. 4 rotations per image) and whatever the loss reads.

``make_head(config, num_classes) -> flax.linen.Module``
    Maps the encoder's end points (of ``views['inputs']``) to the task's outputs:
    ``head(end_points, views, train=...)``; the views carry what the head needs besides
    the end points (e.g. the permutations of a jigsaw puzzle).

``loss(outputs, views, task_state, config) -> (loss, metrics)``
    Pure: a scalar averaged over the global batch, and a dict of scalar metrics.

Optionally:

``input_shape(config) -> tuple``
    The shape of one example's ``image`` after ``preprocess`` when it is not a single
    crop of ``input.image_size`` (9 patches, 8 copies); used to initialise the model.

and, for methods that carry state between steps (a MoCo queue, a BYOL target):

``init_task_state(config, params) -> pytree``
    Held in ``TrainState.task_state`` and checkpointed with it. Entries whose name is in
    the module constant ``SHARDED_STATE`` are split over the devices along their first
    axis (a queue); the rest is replicated.

``targets(task_state, views, rng, config, mesh) -> dict[str, jax.Array]``
    The outputs of a second network held in the task state (a MoCo key encoder, a BYOL
    target), computed before the loss without gradient and merged into the views, so
    that ``loss`` and ``update_task_state`` read them. ``mesh`` tells how many devices
    there are (MoCo's shuffled BN groups).

``update_task_state(task_state, params, views, step, total_steps, config) -> pytree``
    Runs after the optimiser step, inside the same jitted function, with the updated
    parameters (an EMA; an enqueue of ``views['keys']``).
"""
