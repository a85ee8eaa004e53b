"""The town's state and rules: map, agents, objects, affordances, queues, economy, jobs, ties, weather."""
