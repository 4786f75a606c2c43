"""One folder per paper. Each registers itself with a ``pipeline.yaml`` (see ``mlpapers.pipeline``)."""

# the papers in the pipeline, in README order
PAPERS = ("dropout", "fox", "seq2seq", "transformer", "mamba", "lora")
