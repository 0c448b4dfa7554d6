"""Building blocks shared by the model packages (a leaf: imports nothing of vqgen): the pre-norm transformer of
the priors and of the ViT tokenizer."""
