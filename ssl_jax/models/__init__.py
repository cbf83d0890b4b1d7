"""Encoders. Each module ``ssl_jax/models/<name>.py`` defines ``build(model_config, *,
bn_groups) -> flax.linen.Module``; the module maps images [N, H, W, 3] in [-1, 1] to a dict
of end points (``after_root``, ``block1``..``block4``, ``pre_logits``). The training loop
finds the module by ``config.model.name`` with importlib."""
