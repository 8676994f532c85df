"""Workflows that load runs, generate data from them and train new runs: the layer above `runs.py`.

- :mod:`~straightflow.pipelines.pairs`: (x0, x1 = Flow(x0)) pairs of a flow, in resumable shards;
- :mod:`~straightflow.pipelines.reflow`: the (k+1)-th rectified flow trained on the k-th one's pairs, and the
  before / after pictures of a lineage;
- :mod:`~straightflow.pipelines.distill`: a flow distilled to k Euler steps (rectified-flow distillation) or
  into a one-step MeanFlow student (teacher distillation);
- :mod:`~straightflow.pipelines.translate`: unpaired image-to-image translation with a flow from one image set to
  another: inputs read from .npy files or folders, translated, written, and scored.

The objectives these workflows train live in :mod:`straightflow.methods`; nothing there imports this package.
"""
