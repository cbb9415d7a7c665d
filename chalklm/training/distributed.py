"""Data-parallel training across processes (`torchrun --nproc_per_node=N -m chalklm train`).

Each process holds a full copy of the model and trains on its own micro-batches;
DistributedDataParallel averages the gradients, so every copy takes the same step.
Rank 0 alone logs and saves. Without torchrun there is one process and none of this runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"  # where reductions happen (NCCL reduces on the GPU)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str) -> Distributed:
        """Join the process group torchrun set up (RANK, WORLD_SIZE, ...), if any."""
        if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", 0))
        if device.startswith("cuda"):
            import torch

            device = f"cuda:{local}"
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), local, device)

    def max(self, value: float) -> float:
        """The largest `value` over all processes (so every process agrees, e.g. on time)."""
        return self._reduce(value, "MAX")

    def sum(self, value: float) -> float:
        return self._reduce(value, "SUM")

    def _reduce(self, value: float, op: str) -> float:
        if not self.enabled:
            return value
        import torch
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, getattr(dist.ReduceOp, op))
        return float(t.item())

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.destroy_process_group()
