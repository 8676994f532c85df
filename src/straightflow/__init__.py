"""straightflow: Flow Matching, Rectified Flow and MeanFlow."""

__version__ = "0.1.0"
