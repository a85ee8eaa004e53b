"""Learning: PPO over options, behaviour cloning, the anneal, evaluation, stability and promotion, Ray scale-out."""
