"""Policy networks over options: MLP or small CNN encoder, optional LSTM, masked categorical and value heads.

An MLP reads hybrid and compact observations; a small CNN reads the full variant's local map block (wherever
the layout puts it, in its row-column-channel order) and joins the rest of the vector after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributions import Categorical

MASKED_LOGIT = -1e9


@dataclass(frozen=True)
class NetworkSpec:
    """Everything that fixes a network's shape (part of a checkpoint's identity).

    Attributes:
        obs_dim: Length of the flat observation vector.
        n_actions: Number of options.
        map_shape: ``(channels, height, width)`` of the map block the CNN reads (full variant), or None for
            an MLP over the whole vector.
        hidden: Width of the hidden layers.
        lstm: Whether a recurrent core sits between the encoder and the heads.
        map_start: Index of the map block in the vector (the rest of the vector joins after the CNN).
        map_order: ``"chw"`` (channel planes) or ``"hwc"`` (row, column, channel: the encoders' order).
        running_option_at: Index of the running option's one-hot in the vector (options action level), or -1.
            When set, a learned per-option *stay bias* is added to the running option's logit: the prior that
            an option, once chosen, is continued (it starts at ``stay_bias``).
        stay_bias: Initial value of the stay bias.
        decisions: ``"points"``: the policy chooses only at decision points (a semi-MDP policy, trained in the
            env's decision mode); ``"ticks"``: every living agent every tick (older checkpoints).
    """

    obs_dim: int
    n_actions: int
    map_shape: tuple[int, int, int] | None = None
    hidden: int = 128
    lstm: bool = False
    map_start: int = 0
    map_order: str = "chw"
    running_option_at: int = -1
    stay_bias: float = 0.0
    decisions: str = "ticks"

    @classmethod
    def for_layout(
        cls,
        layout: Any,
        n_actions: int,
        hidden: int = 128,
        lstm: bool = False,
        stay_bias: float | None = None,
        decisions: str = "points",
    ) -> NetworkSpec:
        """The spec for an observation layout: a CNN over the map block for ``full``, else an MLP.

        Args:
            layout: A :class:`~townlet.observations.layout.FeatureLayout` (``BatchedTowns.layout``).
            n_actions: Size of the action space.
            hidden: Width of the hidden layers.
            lstm: Add the recurrent core.
            stay_bias: Add the learned stay bias, starting at this value (options action level only).
            decisions: ``"points"`` (a semi-MDP policy) or ``"ticks"``.
        """
        from townlet.config.models import OPTION_NAMES

        extra: dict[str, Any] = {"decisions": decisions}
        if stay_bias is not None and n_actions == len(OPTION_NAMES):
            extra.update(running_option_at=layout.index(f"option.{OPTION_NAMES[0]}"), stay_bias=float(stay_bias))
        if layout.variant != "full":
            return cls(layout.size, n_actions, None, hidden, lstm, **extra)
        start, stop = layout.blocks["map"]
        c, w = len(layout.channels), layout.window
        assert (stop - start) == c * w * w, "map block size does not match window x window x channels"
        return cls(layout.size, n_actions, (c, w, w), hidden, lstm, map_start=start, map_order="hwc", **extra)


def _init(layer: nn.Module, gain: float = 2**0.5) -> nn.Module:
    if isinstance(layer, nn.Linear | nn.Conv2d):
        nn.init.orthogonal_(layer.weight, gain)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return layer


class OptionPolicyNet(nn.Module):
    """Actor-critic over options with masked logits; optional recurrent state.

    ``forward(obs, mask, state=None, reset=None)`` returns ``(logits, value, state)``; masked options get a
    logit of -1e9 so they are never sampled. ``reset`` (bool per row) zeroes the recurrent state first, for
    hard context cuts (spawn, teleport, episode start).
    """

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        h = spec.hidden
        if spec.map_shape is not None:
            c, mh, mw = spec.map_shape
            self.map_size = c * mh * mw
            self.conv: nn.Sequential | None = nn.Sequential(
                _init(nn.Conv2d(c, 16, 3, padding=1)),
                nn.ReLU(),
                _init(nn.Conv2d(16, 16, 3, stride=2, padding=1)),
                nn.ReLU(),
                nn.Flatten(),
            )
            with torch.no_grad():
                conv_out = self.conv(torch.zeros(1, c, mh, mw)).shape[1]
            rest = spec.obs_dim - self.map_size
            self.encoder = nn.Sequential(_init(nn.Linear(conv_out + rest, h)), nn.Tanh())
        else:
            self.map_size = 0
            self.conv = None
            self.encoder = nn.Sequential(
                _init(nn.Linear(spec.obs_dim, h)), nn.Tanh(), _init(nn.Linear(h, h)), nn.Tanh()
            )
        self.lstm = nn.LSTM(h, h) if spec.lstm else None
        self.actor = _init(nn.Linear(h, spec.n_actions), 0.01)
        self.critic = _init(nn.Linear(h, 1), 1.0)
        self.stay = None
        if spec.running_option_at >= 0:
            self.stay = nn.Parameter(torch.full((spec.n_actions,), float(spec.stay_bias)))

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Zero recurrent state for ``batch`` rows (None without an LSTM)."""
        if self.lstm is None:
            return None
        zeros = torch.zeros(1, batch, self.spec.hidden)
        return zeros, zeros.clone()

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """The shared features of a batch of flat observations."""
        if self.conv is None:
            return self.encoder(obs)
        start, stop = self.spec.map_start, self.spec.map_start + self.map_size
        return self.encoder(torch.cat([self.conv(self.map_grid(obs)), obs[:, :start], obs[:, stop:]], dim=1))

    def map_grid(self, obs: torch.Tensor) -> torch.Tensor:
        """The map block of a batch as ``[B, channels, height, width]`` (what the CNN reads)."""
        c, mh, mw = self.spec.map_shape  # type: ignore[misc]
        block = obs[:, self.spec.map_start : self.spec.map_start + self.map_size]
        if self.spec.map_order == "hwc":
            return block.reshape(-1, mh, mw, c).permute(0, 3, 1, 2)
        return block.reshape(-1, c, mh, mw)

    def forward(
        self,
        obs: torch.Tensor,
        mask: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        reset: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """Logits (masked), values and the next recurrent state for one step of a batch."""
        features = self.encode(obs)
        if self.lstm is not None:
            if state is None:
                state = self.initial_state(obs.shape[0])
            assert state is not None
            if reset is not None:
                keep = (~reset).float().view(1, -1, 1)
                state = (state[0] * keep, state[1] * keep)
            out, state = self.lstm(features.unsqueeze(0), state)
            features = out.squeeze(0)
        logits = self.actor(features)
        if self.stay is not None:
            at = self.spec.running_option_at
            logits = logits + self.stay * obs[:, at : at + self.spec.n_actions]
        logits = logits.masked_fill(~mask, MASKED_LOGIT)
        return logits, self.critic(features).squeeze(-1), state

    def distribution(self, logits: torch.Tensor) -> Categorical:
        """The masked categorical distribution over options."""
        return Categorical(logits=logits)
