"""recbole-hyperllm: HyperLLM (SIGIR 2025) and hyperbolic backbones as a RecBole plugin."""
__version__ = "0.1.0"
