"""Forgetting Transformer (Lin et al., ICLR 2025)."""
