"""The record format: what a job's output folder holds, readable without the training stack."""
