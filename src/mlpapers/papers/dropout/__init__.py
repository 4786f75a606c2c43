"""Dropout (Srivastava et al., JMLR 2014)."""
