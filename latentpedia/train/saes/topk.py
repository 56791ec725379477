"""TopK SAE (Gao et al. 2024) with the AuxK loss: dead latents learn to explain the residual."""

from __future__ import annotations

from typing import Any

import torch

from latentpedia.train.saes.base import TrainableSAE


def top_k_mask(values: torch.Tensor, k: int) -> torch.Tensor:
    """Zeros except the k largest entries of each row (kept as they are)."""
    top = torch.topk(values, k=min(k, values.shape[-1]), dim=-1, sorted=False)
    return torch.zeros_like(values).scatter(-1, top.indices, top.values)


def auxk_loss(sae: TrainableSAE, x: torch.Tensor, pre: torch.Tensor, recon: torch.Tensor,
              dead: torch.Tensor | None) -> tuple[torch.Tensor, float]:
    """AuxK: the top-k_aux dead latents reconstruct the residual x - recon (normalised MSE)."""
    if dead is None or not bool(dead.any()):
        return pre.new_zeros(()), 0.0
    k_aux = min(sae.settings.aux_k or sae.settings.d_in // 2, int(dead.sum()))
    dead_pre = torch.where(dead, pre, torch.full_like(pre, -torch.inf))
    aux_acts = torch.relu(top_k_mask(dead_pre, k_aux).nan_to_num(neginf=0.0))
    residual = (x - recon).detach()
    aux_recon = aux_acts @ sae.W_dec
    err = (aux_recon - residual).pow(2).sum(-1).mean()
    scale = (residual - residual.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-8)
    loss = sae.settings.aux_coefficient * err / scale
    return loss, float(loss.detach())


class TopKSAE(TrainableSAE):
    """relu(top_k(pre)) per token; AuxK for dead latents."""

    name = "topk"
    saelens_architecture = "topk"

    def activate(self, pre: torch.Tensor, *, training: bool) -> torch.Tensor:
        return torch.relu(top_k_mask(pre, self.settings.k))

    def training_loss(self, x, pre, acts, recon, dead):
        loss, value = auxk_loss(self, x, pre, recon, dead)
        return loss, {"auxk": value}

    def cfg_extra(self) -> dict[str, Any]:
        return {"k": self.settings.k, "rescale_acts_by_decoder_norm": False}
