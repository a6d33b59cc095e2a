"""CoT distillation stages: verification of sampled chains and the selection of SFT data."""
