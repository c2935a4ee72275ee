"""LLM augmentation: an OpenAI-compatible generator for Ray Data actors, and the strategies built on it.

- :mod:`.generator`: :class:`~augscale.augment.llm.generator.LLMGenerator` (rate limits, budget,
  usage and cost) around :class:`augscale.llm.endpoint.ChatClient` (retries).
- :mod:`.prompts`: prompt templates (``augscale/prompts/*.txt``) and output parsing.
- :mod:`.base`: :class:`~augscale.augment.llm.base.LLMStrategy`, what every endpoint strategy shares.
- :mod:`.gsm8k`, :mod:`.viggo`, :mod:`.sql`: the strategies per task; :mod:`.self_sample`:
  rejection sampling from a local checkpoint (RFT) for any task.
"""
