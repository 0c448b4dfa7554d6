"""Tokenizers: conv encoder/decoder, the Tokenizer module and its losses. Imports only vqgen.quantizers."""

from vqgen.tokenizers.conv import Decoder, Encoder, ResBlock, depth_to_space, space_to_depth
from vqgen.tokenizers.losses import tokenizer_losses
from vqgen.tokenizers.tokenizer import Tokenizer

__all__ = ["Decoder", "Encoder", "ResBlock", "Tokenizer", "depth_to_space", "space_to_depth", "tokenizer_losses"]
