"""Id embeddings: a fixed, seeded table of unit vectors, one per identity slot of ``world.identity``.

A learned policy tells agents apart through these vectors. The table depends only on the config
(``identity.embedding_slots``, ``identity.embedding_dim``, ``observations.embedding_seed``), never on the run
seed, so a policy trained in one run recognises the same embedding in another; slots are handed out with a
reuse cooldown (see ``townlet.world.identity``) so a newcomer does not inherit a departed agent's vector.
"""

from __future__ import annotations

import numpy as np


def embedding_table(slots: int, dim: int, seed: int) -> np.ndarray:
    """``float32[slots + 1, dim]``: a random unit vector per slot, plus a last all-zero row for "nobody".

    Indexing the table with -1 therefore yields zeros, so callers need no special case for empty ties.
    """
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((slots, dim))
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    return np.vstack([table, np.zeros((1, dim))]).astype(np.float32)
