"""What a run records when it starts, so that it travels: sampling needs nothing but the run folder, and
evaluation finds its data again and knows them when it sees them.

- The config's paths are made absolute (:func:`absolute_paths`): data and source files, ``folder:`` image
  sets, ``data.data_dir`` of image sets read from disk, ``data.pairs``, ``train.init_from`` and
  ``method.teacher``. config.json then names the same files from any working directory, and so do the
  configs of runs made from it (reflow, distillation, resume).
- The checkpoint's metadata gets (:func:`run_provenance`):

  - ``shape``: one sample's shape D, e.g. [2] or [3, 32, 32];
  - ``data``: the training data's record (:func:`straightflow.data.fingerprint.data_record`): spec, kind,
    absolute path and SHA-256 of a file (a manifest hash for a folder), checked before evaluation uses them;
  - ``source``: the source p0's record; a Gaussian (the usual case) is rebuilt from ``shape`` alone, and only a
    data-to-data source is read (and checked) to sample;
  - ``class_names``: the names of labelled data's classes;
  - ``data_transform`` is the place of the data's normalisation statistics (written by the standardisation
    step when the data are standardised; not by this module).

Runs saved before these entries existed still load: their config's relative paths resolve against the
working directory, as they always did, and nothing is checked.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from straightflow.data.fingerprint import DATA_DIR_IMAGE_SETS, absolute_dir, absolute_spec, data_record
from straightflow.data.images import default_data_dir
from straightflow.training.config import RunConfig

__all__ = ["absolute_paths", "run_provenance"]


def absolute_paths(cfg: RunConfig) -> RunConfig:
    """cfg with every path it holds absolute (relative ones against the working directory); names unchanged.

    ``data.data_dir`` is made absolute too, and filled with the default folder
    (:func:`~straightflow.data.images.default_data_dir`) when an image set is read from disk without one."""
    d = cfg.data
    data_dir = d.data_dir
    if not data_dir and d.data in DATA_DIR_IMAGE_SETS:
        data_dir = str(default_data_dir())
    data = replace(d, data=absolute_spec(d.data), source=absolute_spec(d.source), data_dir=absolute_dir(data_dir),
                   pairs=absolute_dir(d.pairs))
    return replace(cfg, data=data, train=replace(cfg.train, init_from=absolute_dir(cfg.train.init_from)),
                   method=replace(cfg.method, teacher=absolute_dir(cfg.method.teacher)))


def run_provenance(cfg: RunConfig, data: Any) -> dict[str, Any]:
    """The metadata entries above for a run of `cfg` (paths already absolute) on `data` (a DataSource, or any
    object with ``shape``); hashes the data and source files once."""
    meta: dict[str, Any] = {
        "shape": [int(n) for n in data.shape],
        "data": data_record(cfg.data.data, cfg.data.data_dir),
        "source": data_record(cfg.data.source, cfg.data.data_dir),
    }
    names = list(getattr(data, "class_names", None) or [])
    if names:
        meta["class_names"] = names
    return meta
