"""A/B analysis and the rollout controller: decide on the challenger's accuracy against the
champion's with a sequential test that stays valid however often it looks, then promote or roll
back through an actuator (local files or the Kubernetes API), recording every step first."""
