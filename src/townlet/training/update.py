"""The PPO update over semi-MDP transitions: clipped surrogate, value loss, entropy, per-agent replay for an LSTM.

:func:`ppo_update` takes one :class:`~townlet.training.rollout.Rollout` (transitions that each span the ticks
between two of an agent's decisions), computes advantages with per-transition discounts
(:func:`~townlet.training.advantages.gae`) and runs ``update_epochs`` passes of ``minibatches`` minibatches.
A recurrent policy replays each agent's decisions in order from the state recorded before its first one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from townlet.training.advantages import gae

if TYPE_CHECKING:
    from townlet.policy.networks import OptionPolicyNet
    from townlet.training.ppo import PPOArgs
    from townlet.training.rollout import Rollout


def ppo_update(
    net: OptionPolicyNet,
    optimizer: torch.optim.Optimizer,
    ro: Rollout,
    args: PPOArgs,
    device: torch.device,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Clipped-surrogate PPO on one rollout of semi-MDP transitions; returns the update's losses and diagnostics."""
    scale = np.float32(args.reward_scale)
    adv, ret = gae(ro.rewards * scale, ro.values, ro.discounts, ro.next_values, ro.ends, ro.next_index, args.gae_lambda)
    to = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
    stats: dict[str, list[float]] = {k: [] for k in ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac")}
    n = ro.size
    if n == 0:
        return {k: float("nan") for k in (*stats, "explained_variance")}
    if net.lstm is None:
        data = [to(x) for x in (ro.obs, ro.masks, ro.actions, ro.logprobs, ro.values, adv, ret, ro.learned)]
        size = max(n // args.minibatches, 1)
        for _ in range(args.update_epochs):
            order = rng.permutation(n)
            for lo in range(0, n, size):
                mb = torch.as_tensor(order[lo : lo + size], device=device)
                obs, mask, act, old_logp, old_v, mb_adv, mb_ret, learned = (x[mb] for x in data)
                logits, value, _ = net(obs, mask)
                _step(net, optimizer, args, logits, value, act, old_logp, old_v, mb_adv, mb_ret, learned, stats)
            if args.target_kl is not None and stats["approx_kl"] and stats["approx_kl"][-1] > args.target_kl:
                break
    else:
        seq = sequences(ro)
        rows = to(seq.rows)
        valid = to(seq.valid)
        data = [to(x) for x in (ro.obs, ro.masks, ro.actions, ro.logprobs, ro.values, adv, ret, ro.learned, ro.resets)]
        assert ro.init_state is not None
        h0, c0 = (to(s[:, seq.first]) for s in ro.init_state)
        agents = seq.rows.shape[1]
        size = max(agents // args.minibatches, 1)
        for _ in range(args.update_epochs):
            order = rng.permutation(agents)
            for lo in range(0, agents, size):
                mb = torch.as_tensor(order[lo : lo + size], device=device)
                idx, keep = rows[:, mb], valid[:, mb]
                obs, mask, act, old_logp, old_v, mb_adv, mb_ret, learned, resets = (x[idx] for x in data)
                state: Any = (h0[:, mb], c0[:, mb])
                logits_t, values_t = [], []
                for t in range(idx.shape[0]):  # replay each agent's decisions so the state matches collection
                    logits, value, state = net(obs[t], mask[t], state, resets[t])
                    logits_t.append(logits)
                    values_t.append(value)
                flat = keep.reshape(-1)
                logits = torch.stack(logits_t).reshape(-1, logits_t[0].shape[-1])[flat]
                value = torch.stack(values_t).reshape(-1)[flat]
                act, old_logp, old_v, mb_adv, mb_ret, learned = (
                    x.reshape(-1)[flat] for x in (act, old_logp, old_v, mb_adv, mb_ret, learned)
                )
                _step(net, optimizer, args, logits, value, act, old_logp, old_v, mb_adv, mb_ret, learned, stats)
            if args.target_kl is not None and stats["approx_kl"] and stats["approx_kl"][-1] > args.target_kl:
                break
    var_ret = float(np.var(ret))
    explained = 1.0 - float(np.var(ret - ro.values)) / var_ret if var_ret > 0 else float("nan")
    out = {k: float(np.mean(v)) if v else float("nan") for k, v in stats.items()}
    out["explained_variance"] = explained
    out["advantage_std"] = float(np.std(adv))
    out["return_mean"] = float(np.mean(ret))
    return out


@dataclass
class Sequences:
    """Each agent chain's transitions as columns, for replaying a recurrent policy decision by decision.

    Attributes:
        rows: ``int64[L, S]`` rollout row of the t-th transition of sequence s (padding: row 0).
        valid: ``bool[L, S]`` real entries.
        first: ``int64[S]`` row of each sequence's first transition (its recorded state starts the replay).
    """

    rows: np.ndarray
    valid: np.ndarray
    first: np.ndarray


def sequences(ro: Rollout) -> Sequences:
    """Group a rollout's transitions by agent slot, in decision order (a slot's newcomers follow its leaver)."""
    order = np.lexsort((np.arange(ro.size), ro.slots))
    slots = ro.slots[order]
    starts = np.flatnonzero(np.r_[True, slots[1:] != slots[:-1]])
    lengths = np.diff(np.r_[starts, len(order)])
    rows = np.zeros((int(lengths.max()), len(starts)), dtype=np.int64)
    valid = np.zeros_like(rows, dtype=bool)
    for s, (lo, length) in enumerate(zip(starts, lengths, strict=True)):
        rows[:length, s] = order[lo : lo + length]
        valid[:length, s] = True
    return Sequences(rows, valid, order[starts])


def _step(
    net: OptionPolicyNet,
    optimizer: torch.optim.Optimizer,
    args: PPOArgs,
    logits: torch.Tensor,
    value: torch.Tensor,
    act: torch.Tensor,
    old_logp: torch.Tensor,
    old_v: torch.Tensor,
    adv: torch.Tensor,
    ret: torch.Tensor,
    learned: torch.Tensor,
    stats: dict[str, list[float]],
) -> None:
    """One gradient step: clipped policy loss on the learned rows, (clipped) value loss on all, entropy bonus."""
    dist = net.distribution(logits)
    logp = dist.log_prob(act)
    weight = learned.float()
    n = weight.sum().clamp(min=1.0)
    if args.norm_adv and learned.any():
        sel = adv[learned]
        adv = (adv - sel.mean()) / (sel.std(unbiased=False) + 1e-8)
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()
    pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef))
    policy_loss = (pg * weight).sum() / n
    entropy = (dist.entropy() * weight).sum() / n
    if args.clip_vloss:
        clipped = old_v + (value - old_v).clamp(-args.clip_coef, args.clip_coef)
        value_loss = 0.5 * torch.max((value - ret) ** 2, (clipped - ret) ** 2).mean()
    else:
        value_loss = 0.5 * ((value - ret) ** 2).mean()
    loss = policy_loss - args.ent_coef * entropy + args.vf_coef * value_loss
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(net.parameters(), args.max_grad_norm)
    optimizer.step()
    with torch.no_grad():
        stats["policy_loss"].append(float(policy_loss))
        stats["value_loss"].append(float(value_loss))
        stats["entropy"].append(float(entropy))
        stats["approx_kl"].append(float((((ratio - 1) - log_ratio) * weight).sum() / n))
        stats["clipfrac"].append(float((((ratio - 1).abs() > args.clip_coef).float() * weight).sum() / n))
