"""Options, scripted controllers, action masks and the policies that choose options."""
