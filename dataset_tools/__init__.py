"""Tools that produce the RecBole atomic files recbole-hyperllm reads."""
