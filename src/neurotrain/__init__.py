"""neurotrain: multi-session digital twins of visual cortex, trained with Hugging Face Accelerate."""

__version__ = "0.1.0.dev0"
