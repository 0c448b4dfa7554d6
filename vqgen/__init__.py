"""vqgen: discrete generative modeling in JAX/Flax NNX (tokenizers and priors over their codes)."""

import flax

# Parameters carry logical axis names as metadata only; vqgen places them on the mesh itself (train/sharding.py),
# so modules can be built anywhere (notebooks, tests) without an ambient mesh.
flax.config.update("flax_always_shard_variable", False)

__version__ = "0.1.0"
