"""Seq2Seq with Luong attention (Sutskever et al. 2014; Luong, Pham, Manning 2015)."""
