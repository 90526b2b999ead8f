"""The whole loop on one machine (`make run`): retrain, serve champion and challenger behind the
gateway, drive traffic with delayed ground truth, let the rollout controller decide and act,
drift the traffic, let the monitor trigger retraining. Every figure it prints is measured."""
