"""Mixture of linear experts with a softmax gate (HyperLLM, Eq. 8-10)."""
import torch
from torch import nn


class MixtureOfExperts(nn.Module):
    """x = sum_k g_k(s) Expert_k(s), g = softmax(W_gate s + b_gate), Expert_k(s) = W_k s + b_k."""

    def __init__(self, input_dim, output_dim, num_experts):
        super().__init__()
        self.experts = nn.Linear(input_dim, output_dim * num_experts)  # K experts in one matmul
        self.gate = nn.Linear(input_dim, num_experts)
        self.num_experts = num_experts
        self.output_dim = output_dim

    def forward(self, s):
        weights = torch.softmax(self.gate(s), dim=-1)                              # Eq. (9)
        outputs = self.experts(s).view(-1, self.num_experts, self.output_dim)      # Eq. (10)
        return (weights.unsqueeze(-1) * outputs).sum(dim=1)                        # Eq. (8)
