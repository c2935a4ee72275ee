"""Generation engines shared by augment and evaluate (local HF models, OpenAI-compatible endpoints)."""
