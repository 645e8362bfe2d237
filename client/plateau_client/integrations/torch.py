"""PyTorch: the stop request agreed by every torch.distributed rank, for plain training loops.

    import plateau_client
    from plateau_client.integrations.torch import should_stop

    for epoch in range(epochs):
        ...
        if rank == 0:
            plateau_client.report(step, val_loss=val_loss)
        if should_stop():  # on every rank, at the same point of the loop
            save_checkpoint()
            break

Each pod sees the request in its own file, written by its kubelet when it gets to it, so ranks
see it at different times; one rank leaving the loop alone would leave the others waiting in a
collective. Needs torch (`pip install torch`, or this client's `torch` extra:
plateau-client[torch]).
"""

from __future__ import annotations

try:
    import torch
    import torch.distributed as dist
except ImportError as e:
    raise ImportError(
        "plateau_client.integrations.torch needs PyTorch: pip install torch (or the extra plateau-client[torch])"
    ) from e

import plateau_client


def should_stop(device: torch.device | str | None = None) -> bool:
    """`plateau_client.should_stop()`, True on every rank once any rank sees the request.

    Without an initialised process group it is `plateau_client.should_stop()`. With one, it is a
    collective: call it on every rank at the same point. `device` holds the one-number tensor the
    ranks reduce; by default the current CUDA device under NCCL, else the CPU."""
    asked = plateau_client.should_stop()
    if not (dist.is_available() and dist.is_initialized()):
        return asked
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    flag = torch.tensor([int(asked)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())
