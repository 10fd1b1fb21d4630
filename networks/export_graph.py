"""A network packaged for export (ONNX, TorchScript): what agents' policies and generative models hand to launch."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class ExportGraph(NamedTuple):
    """`module(*inputs.values())` returns the tensors named `outputs`; each input is batched along `batch_axes`."""

    module: nn.Module  # in eval mode
    inputs: dict[str, torch.Tensor]  # an example of each input, by name, in the order forward takes them
    outputs: list[str]
    batch_axes: dict[str, int]  # input name -> its batch axis (observations 0, LSTM states 1)
