"""Input: host-side tf.data pipelines (input_pipeline, preprocess) and the dataset section
they read (dataset_section), the shipped dataset (cifar10_5k), and device-side pixel
augmentation (augment, pure jax.numpy)."""
