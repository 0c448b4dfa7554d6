"""Tokenizers: conv encoder/decoder, the Tokenizer module, its losses and its training stage."""

from vqgen.tokenizers.conv import Decoder, Encoder, ResBlock
from vqgen.tokenizers.losses import tokenizer_losses
from vqgen.tokenizers.tokenizer import Tokenizer, build_tokenizer

__all__ = ["Decoder", "Encoder", "ResBlock", "Tokenizer", "build_tokenizer", "tokenizer_losses"]
