"""Shared test settings: small thread count so two pytest workers share 2 cores fairly."""

import torch

torch.set_num_threads(1)
