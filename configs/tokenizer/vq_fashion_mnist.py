"""VQ tokenizer on Fashion-MNIST with the modern codebook-learning options as variants.

  python -m vqgen.main --config=configs/tokenizer/vq_fashion_mnist.py --workdir=runs/vq
  ...vq_fashion_mnist.py:gradient=rotation,codebook_size=4096       rotation trick, larger codebook
  ...vq_fashion_mnist.py:learning=ema,dead_code_threshold=0.1      EMA codebook with dead-code restarts
  ...vq_fashion_mnist.py:simvq=true                                SimVQ (frozen basis, learned map)
  ...vq_fashion_mnist.py:gradient=ibq                              IBQ
  ...vq_fashion_mnist.py:assignment=optimal_transport,cosine=false  OptVQ (Sinkhorn assignment in training)
  ...vq_fashion_mnist.py:assignment=sample,sample_temperature=0.1   stochastic code sampling in training
  ...vq_fashion_mnist.py:orthogonal_weight=10                      TIQ's orthogonal codebook regularisation
  ...vq_fashion_mnist.py:diversity_weight=0.1                      codebook diversity (batch code entropy)
  ...vq_fashion_mnist.py:cvq_anchor=closest                        CVQ's online clustered codebook
  ...vq_fashion_mnist.py:affine_lr=10,sync_nu=0.2                  straightened STE: affine codebook, synced commitment
  ...vq_fashion_mnist.py:learning=alternating                      straightened STE: alternating codebook steps
Defaults: 1024 codes, 32-channel latents looked up in an 8-dim l2-normalised space (ViT-VQGAN), k-means init.
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.tokenizer_config()
  c.quantizer = config_lib.quantizer_config("vq", dim=32, codebook_size=1024, codebook_dim=8, cosine=True,
                                            kmeans_init=True)
  config_lib.parse_variant(arg, c, {
      "codebook_size": ("quantizer.codebook_size", int),
      "gradient": ("quantizer.gradient", str),
      "learning": ("quantizer.learning", str),
      "cosine": ("quantizer.cosine", config_lib.boolean),
      "codebook_dim": ("quantizer.codebook_dim", int),
      "dead_code_threshold": ("quantizer.dead_code_threshold", float),
      "simvq": ("quantizer.simvq", config_lib.boolean),
      "kmeans_init": ("quantizer.kmeans_init", config_lib.boolean),
      "assignment": ("quantizer.assignment", str),
      "sinkhorn_iters": ("quantizer.sinkhorn_iters", int),
      "sinkhorn_temperature": ("quantizer.sinkhorn_temperature", float),
      "sample_temperature": ("quantizer.sample_temperature", float),
      "orthogonal_weight": ("quantizer.orthogonal_weight", float),
      "orthogonal_max_codes": ("quantizer.orthogonal_max_codes", int),
      "diversity_weight": ("quantizer.diversity_weight", float),
      "cvq_anchor": ("quantizer.cvq_anchor", str),
      "affine_lr": ("quantizer.affine_lr", float),
      "affine_groups": ("quantizer.affine_groups", int),
      "sync_nu": ("quantizer.sync_nu", float),
      "alternating_lr": ("quantizer.alternating_lr", float),
      "steps": ("train.steps", int),
  })
  c.lock()
  return c
