"""Input: host-side tf.data pipelines (input_pipeline, preprocess), the shipped dataset
(cifar10_5k), and device-side pixel augmentation (augment, pure jax.numpy)."""
