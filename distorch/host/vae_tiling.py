"""A VAE that decodes in tiles: the host's own tiled decoder (``VAE.decode_tiled``, what ComfyUI's
"VAE Decode (Tiled)" node runs) behind the VAE's ordinary ``decode``, so any graph that decodes
with this VAE (the core "VAE Decode" node included) decodes tiled. The VAE it comes from is not
changed: the tiled one is a shallow copy sharing its weights.
"""
from __future__ import annotations

import copy


def tiled_vae(vae, tile_size: int, overlap: int):
    """A copy of ``vae`` whose ``decode`` runs ``decode_tiled`` with tiles of ``tile_size`` pixels
    overlapping by ``overlap`` pixels (converted to latent pixels as the core tiled node does)."""
    tiled = copy.copy(vae)
    compression = vae.spacial_compression_decode()
    tile, margin = max(1, tile_size // compression), overlap // compression

    def decode(samples, *args, **kwargs):
        return type(vae).decode_tiled(tiled, samples, tile_x=tile, tile_y=tile, overlap=margin)

    tiled.decode = decode
    return tiled
