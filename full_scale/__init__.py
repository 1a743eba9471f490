"""Tier 3: any Hugging Face causal LM (SmolLM2-135M-Instruct embedded for CPUs, Mistral-7B on a GPU)."""

from full_scale.task import FullScaleTask

__all__ = ["FullScaleTask"]
